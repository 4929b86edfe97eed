"""What this machine lets a local provider enforce: the sandbox, egress, home images, cgroups.

:func:`probe` finds out once per process (it runs a real sandbox, as a lab's
user would) and :class:`Capabilities` says what is missing -- then labs are
refused -- and which limits go unenforced -- then the provider says so once.

This module does not import Django or XBlock.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

from . import cgroups, homefs
from .config import SandboxSettings
from .sandbox import (
    LAB_GID,
    LAB_UID,
    REQUIRED_OPTIONS,
    TUN_DEVICE,
    bwrap_options,
    namespace_args,
    system_binds,
    tmpfs,
)


@dataclass(frozen=True)
class Capabilities:
    """What this machine and this worker can enforce (see :func:`probe`)."""

    #: Path of a working bwrap, or ``None`` (then ``bwrap_problem`` says why).
    bwrap: str | None
    bwrap_problem: str | None
    #: The options of that bwrap (``sandbox.bwrap_options``).
    bwrap_features: frozenset[str]
    slirp4netns: str | None
    #: Why slirp4netns could not open the tun device for labs, or ``None``.
    tun_problem: str | None
    homefs_problem: str | None
    cgroups: cgroups.Placement = field(default_factory=cgroups.Placement)

    def missing(self, settings: SandboxSettings) -> list[str]:
        """What is missing for the isolation the settings ask for (launches must be refused)."""
        if settings.mode == "none":
            return []
        problems = []
        if self.bwrap is None:
            problems.append(f"bubblewrap cannot build a lab sandbox here: {self.bwrap_problem}")
        if settings.network == "egress":
            if self.slirp4netns is None:
                problems.append("network 'egress' needs slirp4netns (apt-get install slirp4netns)")
            if self.tun_problem:
                problems.append(f"network 'egress' needs {TUN_DEVICE}: {self.tun_problem}")
        return problems

    def enforced(self, settings: SandboxSettings) -> list[str]:
        """The isolation and limits this machine gives labs under ``settings``, for operators to read."""
        if settings.mode == "none" or self.missing(settings):
            return []
        mib = 1024 * 1024
        found = ["namespaces of their own (user, PID, mount, IPC, UTS, network, cgroup)"]
        found.append("no network" if settings.network == "none" else "outbound network only (slirp4netns)")
        found.append(f"a /tmp of {settings.tmp_limit // mib} MiB in memory")
        if settings.pids_limit:
            found.append(f"{settings.pids_limit} processes")
        if settings.memory_limit and "memory" in self.cgroups.parents:
            found.append(f"{settings.memory_limit // mib} MiB of memory")
        if settings.cpu_limit and "cpu" in self.cgroups.parents:
            found.append(f"{settings.cpu_limit:g} CPU")
        if settings.disk_limit and not self.homefs_problem:
            found.append(f"a home of {settings.disk_limit // mib} MiB")
        if "freeze" in self.cgroups.parents:
            found.append("suspend by freezing the lab's cgroup")
        return found

    def unenforced(self, settings: SandboxSettings) -> list[str]:
        """Limits the settings ask for that this machine does not enforce, each with the reason."""
        if settings.mode == "none":
            return ["every limit and all isolation (sandbox 'none')"]
        found = []
        wanted = {
            "memory": settings.memory_limit,
            "cpu": settings.cpu_limit,
            "freeze": True,
        }
        for feature, value in wanted.items():
            if value and feature not in self.cgroups.parents:
                reason = self.cgroups.problems.get(feature, "no cgroup")
                what = {
                    "memory": "the memory limit",
                    "cpu": "the CPU limit",
                    "freeze": "freezing a suspended lab in one step (labs are stopped process by process)",
                }[feature]
                found.append(f"{what}: {reason}")
        if settings.pids_limit and "pids" not in self.cgroups.parents:
            found.append(
                "the process limit through a cgroup (RLIMIT_NPROC still limits the lab's processes): "
                + self.cgroups.problems.get("pids", "no cgroup")
            )
        if settings.disk_limit and self.homefs_problem:
            found.append(f"the home size limit: {self.homefs_problem}")
        if self.bwrap and "--disable-userns" not in self.bwrap_features:
            found.append("keeping labs from creating user namespaces: this bubblewrap is older than 0.8")
        if self.bwrap and "--size" not in self.bwrap_features:
            found.append("the sizes of /tmp, /dev/shm and /run: this bubblewrap is older than 0.7")
        return found


_probes: dict[tuple[Any, ...], Capabilities] = {}
_probe_lock = threading.Lock()


def _ids_for_probe(settings: SandboxSettings) -> tuple[int, int] | None:
    return (settings.uid_base, settings.uid_base) if os.geteuid() == 0 else None


def probe(settings: SandboxSettings) -> Capabilities:
    """Find out, once per process and settings, what isolation and limits this machine gives.

    Runs a real sandbox (as a lab's user would: not root), looks for
    slirp4netns, tries a home image and plans the cgroups.  Never raises.
    """
    key = (settings.mode, settings.cgroup_root, settings.uid_base, os.geteuid())
    with _probe_lock:
        if key not in _probes:
            _probes[key] = _probe(settings)
        return _probes[key]


def _probe(settings: SandboxSettings) -> Capabilities:
    placement = cgroups.plan(cgroup_root=settings.cgroup_root) if settings.mode != "none" else cgroups.Placement()
    bwrap = shutil.which("bwrap")
    problem = None
    if settings.mode == "none":
        bwrap, problem = None, "sandbox 'none'"
    elif bwrap is None:
        problem = "bwrap is not installed (apt-get install bubblewrap)"
    else:
        options = bwrap_options(bwrap)
        lacking = sorted(REQUIRED_OPTIONS - options)
        if lacking:
            problem = f"this bubblewrap is too old: it lacks {', '.join(lacking)} (0.5 or later is needed)"
        else:
            problem = _try_bwrap(bwrap, _ids_for_probe(settings))
        if problem:
            bwrap = None
    return Capabilities(
        bwrap=bwrap,
        bwrap_problem=problem,
        bwrap_features=bwrap_options(bwrap) if bwrap else frozenset(),
        slirp4netns=shutil.which("slirp4netns"),
        tun_problem=_tun_problem(),
        homefs_problem=homefs.probe() if settings.disk_limit else None,
        cgroups=placement,
    )


def tun_open_to_all() -> bool:
    """Whether anyone may use the tun device (its usual mode, 0666), the labs' users included."""
    try:
        return os.stat(TUN_DEVICE).st_mode & 0o006 == 0o006
    except OSError:
        return False


def _tun_problem() -> str | None:
    if not os.path.exists(TUN_DEVICE):
        return "the device does not exist"
    if tun_open_to_all() or os.geteuid() == 0:
        # A root worker runs slirp4netns as root when the device is closed to others.
        return None
    return "only root may use it (its usual mode is 0666: chmod 0666 " + TUN_DEVICE + ")"


def _try_bwrap(bwrap: str, ids: tuple[int, int] | None) -> str | None:
    """``None`` if bwrap builds a complete lab sandbox here (as ``ids`` when given), else why not."""
    with tempfile.TemporaryDirectory(prefix="hastexo-sandbox-probe-") as scratch:
        os.chmod(scratch, 0o755)  # noqa: S103 - the lab's user must be able to start in it
        argv = [
            bwrap,
            *namespace_args(bwrap_options(bwrap)),
            "--as-pid-1",
            "--uid",
            str(LAB_UID),
            "--gid",
            str(LAB_GID),
            *system_binds(),
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            *tmpfs(bwrap_options(bwrap), 1024**2, "/tmp"),  # noqa: S108 - the sandbox's own, empty /tmp
            "--remount-ro",
            "/",
            "--",
            "/bin/sh",
            "-c",
            'test "$(id -u)" = 1000 && test ! -e /proc/2 && touch /tmp/ok && ! touch /x 2>/dev/null',
        ]
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                timeout=30,
                env={"PATH": "/usr/bin:/bin"},
                cwd=scratch,
                user=ids[0] if ids else None,
                group=ids[1] if ids else None,
                extra_groups=[] if ids else None,
            )
        except (OSError, subprocess.SubprocessError) as error:
            return str(error)
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip()
        return detail or f"the probe sandbox exited with status {result.returncode}"
    return None
