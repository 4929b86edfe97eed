"""The lab hosts of local labs, as the worker sees them: start one and wait for it, tell its state, kill a lab.

A lab host (``labhost.py``) runs detached from the worker, in its own
session, and is known by the pid and start time kept in the lab's
``state.json``: any worker process (after a restart, too) can manage it.

This module does not import Django or XBlock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
from collections.abc import Mapping
from typing import Any

from ... import timing
from ..base import ProviderError, TransientProviderError
from . import cgroups, processes, statedir
from .statedir import LabDir

log = logging.getLogger("hastexo_xblock.providers.local.provider")

# The lab host runs with "python -I" and only this source tree on sys.path:
# none of the worker's environment (settings modules, PYTHONPATH) reaches it.
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
LABHOST_BOOTSTRAP = (
    f"import sys; sys.path.insert(0, {_SOURCE_ROOT!r}); "
    "from hastexo_xblock.providers.local import labhost; sys.exit(labhost.main())"
)


class LabHosts:
    """Starts, watches and kills lab hosts; safe to use from several threads."""

    def __init__(self, python: str, start_timeout: float, setup_timeout: float) -> None:
        self.python = python
        self.start_timeout = start_timeout
        self.setup_timeout = setup_timeout
        # Lab hosts this process started: kept to reap them (no zombies).
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._children_lock = threading.Lock()

    def _reap_children(self) -> None:
        with self._children_lock:
            for name, popen in list(self._children.items()):
                if popen.poll() is not None:
                    del self._children[name]

    def alive(self, state: Mapping[str, Any]) -> bool:
        """Whether the lab host recorded in ``state`` runs (a recycled pid does not count)."""
        self._reap_children()
        return processes.alive(state.get("pid"), state.get("started"))

    @staticmethod
    def suspended(state: Mapping[str, Any]) -> bool:
        """Whether the lab is frozen (its cgroup) or stopped (its lab host's tree)."""
        if cgroups.LabCgroup.from_state(state.get("cgroups")).frozen():
            return True
        return processes.stopped(state.get("pid"), state.get("started"))

    def kill(self, lab: LabDir, state: Mapping[str, Any]) -> None:
        """Kill every process of the lab and wait until none is left."""
        group = cgroups.LabCgroup.from_state(state.get("cgroups"))
        try:
            group.kill()
        except cgroups.CgroupError as error:
            raise TransientProviderError(f"the lab's processes did not exit ({error}); try again") from None
        if state.get("version", 1) < statedir.STATE_VERSION:
            kill_legacy_host(lab, state)
        elif not processes.kill_tree(state.get("pid") or 0, state.get("started")):
            raise TransientProviderError("the lab's processes did not exit; try again")
        with self._children_lock:
            popen = self._children.pop(lab.name, None)
        if popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(processes.SETTLE_SECONDS)

    def start(self, lab: LabDir, state: dict[str, Any], setup: bool, port: int | None) -> dict[str, Any]:
        """Start the lab's lab host and wait until it listens (or its setup failed).

        Records the new pid in ``state`` (on disk) as soon as it exists, so
        that a crash while waiting leaves nothing untracked.  Returns the
        lab host's ``server.json``; raises :class:`ProviderError` when it dies
        or times out (after killing the lab).
        """
        server_file = lab.file(statedir.SERVER_FILE)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(server_file)
        # A minimal environment: the worker's holds settings, database URLs
        # and secrets that the lab host (let alone the lab) must never see.
        env = {"PATH": os.environ.get("PATH") or "/usr/bin:/bin", "LANG": os.environ.get("LANG") or "C.UTF-8"}
        cmd = [self.python, "-I", "-c", LABHOST_BOOTSTRAP, lab.path]
        if port:
            cmd += ["--port", str(port)]
        if setup:
            cmd.append("--setup")
        log_fd = os.open(lab.file(statedir.LABHOST_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(log_fd, "ab") as logf:
            popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
                cwd=lab.path,
            )
        with self._children_lock:
            self._children[lab.name] = popen
        state.update(version=statedir.STATE_VERSION, pid=popen.pid, started=processes.create_time(popen.pid))
        state.pop("start_time", None)
        lab.write_state(state)

        timeout = self.start_timeout + (self.setup_timeout if setup else 0.0)

        def listening() -> dict[str, Any] | None:
            server = lab.read_server()
            if (
                server
                and server.get("pid") == popen.pid
                and (server.get("setup_status") not in (None, 0) or server.get("port"))
            ):
                return server
            if popen.poll() is not None:
                log.error(
                    "local lab %s: lab host exited with status %s: %s",
                    lab.name,
                    popen.returncode,
                    statedir.tail(lab.file(statedir.LABHOST_LOG), 2000),
                )
                raise ProviderError("the lab host failed to start")
            return None

        try:
            return timing.poll(listening, timing.Deadline.after(timeout), timing.LOCAL_START, what=f"lab {lab.name}")
        except timing.Timeout:
            self.kill(lab, state)
            if setup and lab.read_server() is None:
                raise TransientProviderError(
                    f"the setup script did not finish within {self.setup_timeout:g} seconds"
                ) from None
            raise TransientProviderError(f"the lab host did not start within {timeout:g} seconds") from None


def kill_legacy_host(lab: LabDir, state: Mapping[str, Any]) -> None:
    """Kill the lab host of a lab made by an earlier version (its pid is checked by command line)."""
    pid = state.get("pid")
    if not pid or not processes.alive(pid):
        return
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        if lab.path.encode() in argv and any(a.endswith(b"labhost.py") for a in argv):
            processes.kill_tree(pid)
