"""The local provider: sandboxed labs on the worker's own machine.

A local lab is a directory (``statedir.py``) plus a long-lived lab host
process (``labhost.py``: an asyncssh server on ``127.0.0.1``, ephemeral port)
that accepts only the lab's client key, starts the lab's sandbox
(``sandbox.py``) and runs every session inside it.

Status, as :meth:`LocalProvider.get` reports it:

* no directory: ``DELETE_COMPLETE``;
* create under way (another thread/process holds the lab's lock):
  ``CREATE_IN_PROGRESS``; interrupted or failed: ``CREATE_FAILED``;
* lab host alive and running: ``CREATE_COMPLETE`` or ``RESUME_COMPLETE``,
  whichever completed last;
* suspended (frozen), **or** lab host dead (e.g. the machine rebooted):
  ``SUSPEND_COMPLETE`` -- the files survive and :meth:`resume` starts a new
  lab host and sandbox on them (on the same port when it is free).

Suspend freezes the lab's cgroup (or, without one, stops the lab host and
every process below it); resume thaws it; delete kills everything in it.

Operators: the lab host runs in its own session and survives the worker, but
a service manager that kills the worker's whole cgroup (systemd's default
``KillMode=control-group``) kills the labs too.

This module does not import Django or XBlock.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from ... import states
from ..base import (
    Provider,
    ProviderConfigError,
    ProviderError,
    ProviderStack,
    StackOutputs,
    TemplateError,
    TransientProviderError,
)
from . import cgroups, homefs, launcher, processes, sandbox, statedir
from .config import UID_RANGE, SandboxSettings
from .probe import Capabilities, probe
from .statedir import LabDir
from .template import LocalTemplate, parse_parameters, parse_template, place_files

log = logging.getLogger(__name__)

DEFAULT_START_TIMEOUT = 15.0
DEFAULT_SETUP_TIMEOUT = 300.0


_UP_OR_SUSPENDED = states.UP | {states.SUSPEND_COMPLETE}

NOSANDBOX_WARNING = (
    "local provider %s runs labs WITHOUT A SANDBOX (sandbox: none): learners can reach the host, "
    "its services and other labs. Use this for development only."
)
REFUSAL = "Labs cannot be started safely on this server right now; the operators have been told why."


class SandboxUnavailableError(ProviderConfigError):
    """This machine cannot isolate labs as configured.  ``str()`` is for learners, ``detail`` for operators."""

    def __init__(self, detail: str) -> None:
        super().__init__(REFUSAL)
        self.detail = detail


def _default_root() -> str:
    if os.environ.get("HASTEXO_LOCAL_ROOT"):
        return os.environ["HASTEXO_LOCAL_ROOT"]
    if os.geteuid() == 0:
        # Not under /root (0700): the labs' own users must be able to reach their homes.
        return "/var/lib/hastexo_xblock/labs"
    return os.path.join(os.path.expanduser("~"), ".local", "share", "hastexo_xblock", "labs")


def _unreachable_parent(path: str) -> str | None:
    """The first directory on the way to ``path`` that other users cannot pass through, if any."""
    current = os.path.dirname(path)
    while True:
        try:
            if not os.stat(current).st_mode & stat.S_IXOTH:
                return current
        except FileNotFoundError:
            pass
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


class LocalProvider(Provider):
    """Labs as SSH-reachable sandboxed shells on this machine.

    Config keys (all optional besides ``type``): ``root``, ``sandbox``,
    ``network``, ``memory_limit``, ``pids_limit``, ``cpu_limit``,
    ``disk_limit``, ``tmp_limit``, ``readonly_paths``, ``hidden_paths``,
    ``uid_base``, ``cgroup_root`` (see ``SandboxSettings`` and the
    README), ``setup_timeout`` / ``start_timeout`` (seconds allowed for a
    template's setup script, default 300, and for the lab host to listen,
    default 15) and ``python`` (the interpreter of the lab host, default the
    worker's).

    Every operation is synchronous and returns a final status.
    ``ProviderStack.extra`` holds ``host_key`` (the lab host's public key,
    one OpenSSH line, to pin), ``home`` and ``stack_dir``.
    """

    type_name = "local"

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        """Build the provider from a validated config; raises :class:`ProviderConfigError`."""
        super().__init__(name, config)
        self.validate_config(name, config)
        self.root = os.path.realpath(os.path.expanduser(config.get("root") or _default_root()))
        self.settings = SandboxSettings.from_config(config)
        self.setup_timeout = float(config.get("setup_timeout", DEFAULT_SETUP_TIMEOUT))
        self.start_timeout = float(config.get("start_timeout", DEFAULT_START_TIMEOUT))
        self.hosts = launcher.LabHosts(config.get("python") or sys.executable, self.start_timeout, self.setup_timeout)
        self._capabilities: Capabilities | None = None
        self._capabilities_lock = threading.Lock()

    @classmethod
    def validate_config(cls, name: str, config: Mapping[str, Any]) -> None:
        """Raise :class:`ProviderConfigError` naming the key that is wrong.

        Checks the keys only: whether this machine can sandbox labs is found
        out where labs run (the workers), not where settings are read.
        """
        root = config.get("root")
        if root is not None and (not isinstance(root, str) or not root):
            raise ProviderConfigError(f"provider {name!r}: 'root' must be a non-empty string (a directory)")
        try:
            SandboxSettings.from_config(config)
        except ValueError as error:
            raise ProviderConfigError(f"provider {name!r}: {error}") from None
        for key in ("setup_timeout", "start_timeout"):
            value = config.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ProviderConfigError(f"provider {name!r}: {key!r} must be a positive number of seconds")
        python = config.get("python")
        if python is not None and (not isinstance(python, str) or not python):
            raise ProviderConfigError(f"provider {name!r}: 'python' must be a path to a Python interpreter")

    # -- what this machine can do ----------------------------------------------

    @property
    def sandbox_mode(self) -> str:
        """``bwrap`` when labs run sandboxed, ``none`` when they do not (development)."""
        return "none" if self.settings.mode == "none" else "bwrap"

    def capabilities(self) -> Capabilities:
        """What this machine enforces; found out (and logged, once) on first use."""
        with self._capabilities_lock:
            if self._capabilities is None:
                caps = probe(self.settings)
                for problem in caps.missing(self.settings):
                    log.error("local provider %s cannot launch labs: %s", self.name, problem)
                unenforced = caps.unenforced(self.settings)
                if unenforced and self.settings.mode != "none":
                    log.warning(
                        "local provider %s does not enforce on this machine: %s",
                        self.name,
                        "; ".join(unenforced),
                    )
                self._capabilities = caps
            return self._capabilities

    def _ready_to_launch(self) -> Capabilities:
        """The capabilities, if labs may be launched; else :class:`SandboxUnavailableError`."""
        if self.settings.mode == "none":
            log.warning(NOSANDBOX_WARNING, self.name)
            return self.capabilities()
        caps = self.capabilities()
        missing = caps.missing(self.settings)
        if os.geteuid() == 0:
            # Root workers run each lab as its own user, which must reach its home under the root.
            blocked = _unreachable_parent(self.root)
            if blocked:
                missing = [
                    *missing,
                    f"the labs' users cannot reach the provider root {self.root}: {blocked} is not executable "
                    "by others (chmod o+x it, or set 'root' to a place such as /var/lib/hastexo_xblock/labs)",
                ]
        if missing:
            detail = "; ".join(missing)
            log.error("local provider %s refused to launch a lab: %s", self.name, detail)
            raise SandboxUnavailableError(detail)
        return caps

    # -- paths, state --------------------------------------------------------

    def _make_root(self) -> None:
        """Create the root: others may pass through it (to their own home) but not list it."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        mode = stat.S_IMODE(os.stat(self.root).st_mode)
        if self.settings.mode != "none" and not mode & stat.S_IXOTH:
            os.chmod(self.root, (mode | 0o711) & ~0o066)

    def _lab(self, name: str) -> LabDir:
        if not isinstance(name, str) or not statedir.NAME_RE.match(name):
            raise ProviderError(f"invalid stack name {name!r}")
        return LabDir(self.root, name)

    def _cgroup_name(self, lab: LabDir) -> str:
        # Lab names repeat across providers and roots on one machine; the path does not.
        return f"{lab.name}-{hashlib.sha256(lab.path.encode()).hexdigest()[:10]}"

    def _new_sandbox(self, lab: LabDir, caps: Capabilities) -> sandbox.LabSandbox:
        if self.settings.mode == "none":
            return sandbox.LabSandbox(mode="none", uid=os.geteuid(), gid=os.getegid())
        if os.geteuid() == 0:
            uid = statedir.allocate_uid(self.root, self.settings.uid_base, UID_RANGE)
            gid = uid
        else:
            uid, gid = os.geteuid(), os.getegid()
        return sandbox.LabSandbox(
            mode="bwrap",
            network=self.settings.network,
            uid=uid,
            gid=gid,
            tmp_limit=self.settings.tmp_limit,
            pids_limit=self.settings.pids_limit,
            readonly_paths=self.settings.readonly_paths,
            hidden_paths=self.settings.hidden_paths,
            bwrap=caps.bwrap,
            slirp4netns=caps.slirp4netns if self.settings.network == "egress" else None,
        )

    def _prepare_cgroup(self, lab: LabDir, state: dict[str, Any], caps: Capabilities) -> cgroups.LabCgroup:
        """The lab's cgroup, created (or refreshed: the limits may have changed) and thawed."""
        group = cgroups.LabCgroup.from_state(state.get("cgroups"))
        if not group.dirs and caps.cgroups.parents:
            group = cgroups.LabCgroup.for_lab(caps.cgroups, self._cgroup_name(lab))
        if group.dirs:
            group.create(
                cgroups.Limits(
                    memory=self.settings.memory_limit, pids=self.settings.pids_limit, cpu=self.settings.cpu_limit
                )
            )
            if group.frozen():
                group.thaw()
        state["cgroups"] = group.to_state()
        return group

    def _prepare_home(self, lab: LabDir, state: dict[str, Any], caps: Capabilities, create: bool) -> None:
        """Make (or mount again) the lab's home, owned by the lab's user."""
        record = sandbox.LabSandbox.from_state(state.get("sandbox"))
        image = lab.file(statedir.HOME_IMAGE)
        if create:
            os.makedirs(lab.home, mode=0o700)
            if self.settings.mode != "none" and self.settings.disk_limit and caps.homefs_problem is None:
                homefs.create(image, lab.home, self.settings.disk_limit, record.uid, record.gid)
            elif record.mode == "bwrap":
                os.chown(lab.home, record.uid, record.gid)
        elif os.path.exists(image):
            homefs.mount(image, lab.home)

    # -- views ---------------------------------------------------------------

    def _stack(
        self, lab: LabDir, status: str, reason: str = "", state: Mapping[str, Any] | None = None
    ) -> ProviderStack:
        outputs = None
        extra: dict[str, Any] = {}
        if state is not None:
            extra = {"stack_dir": lab.path, "home": lab.home}
            host_key = statedir.read_text(lab.file(statedir.HOST_PUBLIC_KEY_FILE))
            if host_key:
                extra["host_key"] = host_key.strip()
            if state.get("desktop"):
                # Reached through the lab host (direct-streamlocal), from inside the lab.
                extra["vnc"] = f"unix:{sandbox.DESKTOP_SOCKET}"
            if status in _UP_OR_SUSPENDED and state.get("port"):
                outputs = StackOutputs(
                    public_ip="127.0.0.1",
                    private_key=statedir.read_text(lab.file(statedir.PRIVATE_KEY_FILE)) or "",
                    ssh_port=int(state["port"]),
                )
        return ProviderStack(name=lab.name, status=status, status_reason=reason, outputs=outputs, extra=extra)

    def _current(self, lab: LabDir) -> ProviderStack:
        if not lab.exists():
            return ProviderStack(name=lab.name, status=states.DELETE_COMPLETE)
        state = lab.read_state()
        status = (state or {}).get("status")
        if state is None or status == states.CREATE_IN_PROGRESS:
            if lab.locked_elsewhere():
                return self._stack(lab, states.CREATE_IN_PROGRESS, state=state)
            return self._stack(lab, states.CREATE_FAILED, "the lab's creation was interrupted", state)
        if status in states.UP:
            if state.get("version", 1) < statedir.STATE_VERSION or not self.hosts.alive(state):
                return self._stack(
                    lab, states.SUSPEND_COMPLETE, "the lab host is not running; resuming restarts it", state
                )
            if self.hosts.suspended(state):
                return self._stack(lab, states.SUSPEND_COMPLETE, state=state)
            return self._stack(lab, status, state=state)
        return self._stack(lab, status or states.CREATE_FAILED, state.get("status_reason", ""), state)

    # -- operations ----------------------------------------------------------

    def create(
        self,
        name: str,
        template: str,
        environment: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> ProviderStack:
        """Create lab ``name`` from a local lab template and wait until it is up.

        ``template`` is the YAML text (see ``template.parse_template``);
        ``environment`` is ignored.  ``parameters`` are exported to the setup
        script as ``HASTEXO_PARAM_<NAME>``; ``public_key`` (OpenSSH) is
        authorized instead of generating a key pair (``outputs.private_key``
        is then empty).  Returns ``CREATE_COMPLETE`` with outputs, or
        ``CREATE_FAILED`` with a reason (setup script failed, lab host did
        not start).  Idempotent: if the lab exists and is up it is returned
        as it is; if it was created but is suspended or its lab host is dead,
        it is resumed (``RESUME_COMPLETE``); a half-created or failed lab is
        removed and created again.  Raises :class:`TemplateError` for an
        invalid template or parameters, :class:`ProviderError` for an invalid
        name and :class:`SandboxUnavailableError` when this machine cannot
        isolate labs as configured.
        """
        lab = self._lab(name)
        spec = parse_template(template)
        param_env, public_key = parse_parameters(parameters)
        if spec.desktop:
            lacking = [program for program in sandbox.DESKTOP_PROGRAMS if not shutil.which(program)]
            if self.settings.mode == "none":
                raise TemplateError("desktop labs need the sandbox; this provider runs labs without one")
            if lacking:
                needs = ", ".join(lacking)
                raise TemplateError(f"desktop labs need {needs} here (apt-get install tigervnc-standalone-server)")
        caps = self._ready_to_launch()
        self._make_root()
        with lab.lock():
            if lab.exists():
                state = lab.read_state()
                if state and state.get("status") in _UP_OR_SUSPENDED:
                    current = self._current(lab)
                    if current.status in states.UP:
                        return current
                    return self._resume_locked(lab, state, caps)
                log.info("local lab %s: removing a failed or half-created lab before creating it", name)
                self._remove(lab, state)
            return self._create_locked(lab, spec, param_env, public_key, caps)

    def _create_locked(
        self,
        lab: LabDir,
        spec: LocalTemplate,
        param_env: dict[str, str],
        public_key: str | None,
        caps: Capabilities,
    ) -> ProviderStack:
        import asyncssh

        # 0711: the lab's user passes through to its home and etc/ files; the
        # keys, the state and the logs are the worker's alone (0600).
        os.makedirs(lab.path, mode=0o711)
        os.chmod(lab.path, 0o711)  # noqa: S103 - traverse only, see above
        record = self._new_sandbox(lab, caps)
        state: dict[str, Any] = {
            "version": statedir.STATE_VERSION,
            "name": lab.name,
            "status": states.CREATE_IN_PROGRESS,
            "status_reason": "",
            "created": time.time(),
            "description": spec.description,
            "pid": None,
            "started": None,
            "port": None,
            "generated_key": public_key is None,
            "sandbox": record.to_state(),
            "cgroups": {},
            "desktop": spec.desktop.__dict__.copy() if spec.desktop else None,
        }
        lab.write_state(state)
        try:
            self._prepare_home(lab, state, caps, create=True)
            if record.mode == "bwrap":
                self._prepare_cgroup(lab, state, caps)
                lab.write_state(state)
            host_key = asyncssh.generate_private_key("ssh-ed25519")
            statedir.write_private(lab.file(statedir.HOST_KEY_FILE), host_key.export_private_key("openssh"))
            statedir.write_private(
                lab.file(statedir.HOST_PUBLIC_KEY_FILE), host_key.export_public_key("openssh"), 0o644
            )
            if public_key is None:
                client_key = asyncssh.generate_private_key("ssh-ed25519", comment=f"hastexo-{lab.name}")
                statedir.write_private(lab.file(statedir.PRIVATE_KEY_FILE), client_key.export_private_key("openssh"))
                public_key = client_key.export_public_key("openssh").decode("ascii").strip()
            statedir.write_private(lab.file(statedir.AUTHORIZED_KEYS_FILE), public_key + "\n", 0o644)
            place_files(lab.home, spec.files, (record.uid, record.gid) if record.mode == "bwrap" else None)
            if spec.setup:
                statedir.atomic_write_json(lab.file(statedir.SETUP_FILE), {"script": spec.setup, "env": param_env})
            try:
                server = self.hosts.start(lab, state, setup=bool(spec.setup), port=None)
            except ProviderError as exc:
                return self._fail(lab, state, str(exc))
            if server.get("setup_status") not in (None, 0):
                tail = statedir.tail(lab.file(statedir.SETUP_LOG))
                reason = f"the setup script exited with status {server['setup_status']}"
                if tail:
                    reason += f": {tail}"
                return self._fail(lab, state, reason)
        except Exception:
            with contextlib.suppress(Exception):
                self._fail(lab, state, "the lab could not be created")
            raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lab.file(statedir.SETUP_FILE))
        state.update(status=states.CREATE_COMPLETE, status_reason="", port=server["port"])
        lab.write_state(state)
        log.info("local lab %s: created, listening on 127.0.0.1:%s", lab.name, server["port"])
        return self._stack(lab, states.CREATE_COMPLETE, state=state)

    def _fail(self, lab: LabDir, state: dict[str, Any], reason: str) -> ProviderStack:
        """Kill what runs, record CREATE_FAILED (the directory stays for inspection)."""
        log.warning("local lab %s: creation failed: %s", lab.name, reason)
        with contextlib.suppress(ProviderError):
            self.hosts.kill(lab, state)
        state.update(status=states.CREATE_FAILED, status_reason=reason, pid=None, started=None)
        lab.write_state(state)
        return self._stack(lab, states.CREATE_FAILED, reason, state)

    def get(self, name: str) -> ProviderStack:
        """Return the lab's status from disk and process liveness (see the module docstring).

        ``DELETE_COMPLETE`` when absent.  ``outputs`` are set whenever the
        lab was created successfully (also while suspended: the port is the
        last one used).  Raises :class:`ProviderError` for an invalid name.
        """
        return self._current(self._lab(name))

    def suspend(self, name: str) -> ProviderStack:
        """Freeze every process of the lab; return ``SUSPEND_COMPLETE``.

        Absent labs are reported as ``DELETE_COMPLETE``; a lab whose lab host
        is dead is just marked suspended.  Raises :class:`ProviderError` for
        a lab that was never created successfully.
        """
        lab = self._lab(name)
        with lab.lock():
            if not lab.exists():
                return ProviderStack(name=name, status=states.DELETE_COMPLETE)
            state = lab.read_state()
            if not state or state.get("status") not in _UP_OR_SUSPENDED:
                raise ProviderError(f"lab {name} cannot be suspended: it was not created successfully")
            if state.get("version", 1) >= statedir.STATE_VERSION and self.hosts.alive(state):
                group = cgroups.LabCgroup.from_state(state.get("cgroups"))
                frozen = False
                if group.can_freeze:
                    try:
                        group.freeze()
                        frozen = True
                        log.info("local lab %s: frozen", name)
                    except cgroups.CgroupError as error:
                        log.warning("local lab %s: could not freeze it (%s); stopping its processes", name, error)
                if not frozen:
                    tree = processes.stop_tree(state["pid"])
                    log.info("local lab %s: stopped (%d processes)", name, len(tree) + 1)
            state.update(status=states.SUSPEND_COMPLETE, status_reason="")
            lab.write_state(state)
            return self._stack(lab, states.SUSPEND_COMPLETE, state=state)

    def resume(self, name: str) -> ProviderStack:
        """Thaw the lab (or start a new lab host and sandbox on its files); return ``RESUME_COMPLETE``.

        A restarted lab host listens on the previous port when it is free,
        else on a new one: use the returned ``outputs.ssh_port``.  Raises
        :class:`ProviderError` when the lab does not exist, was never created
        successfully, or its lab host cannot be started.
        """
        lab = self._lab(name)
        caps = self._ready_to_launch()
        with lab.lock():
            if not lab.exists():
                raise ProviderError(f"lab {name} does not exist")
            state = lab.read_state()
            if not state or state.get("status") not in _UP_OR_SUSPENDED:
                raise ProviderError(f"lab {name} cannot be resumed: it was not created successfully")
            return self._resume_locked(lab, state, caps)

    def _resume_locked(self, lab: LabDir, state: dict[str, Any], caps: Capabilities) -> ProviderStack:
        legacy = state.get("version", 1) < statedir.STATE_VERSION
        if not legacy and self.hosts.alive(state):
            group = cgroups.LabCgroup.from_state(state.get("cgroups"))
            if group.frozen():
                try:
                    group.thaw()
                except cgroups.CgroupError as error:
                    raise TransientProviderError(f"the lab could not be thawed ({error})") from None
            if processes.stopped(state["pid"], state.get("started")):
                processes.continue_tree(state["pid"])
        else:
            log.info("local lab %s: the lab host is not running; starting a new one", lab.name)
            if legacy:
                self._adopt_legacy(lab, state, caps)
            self.hosts.kill(lab, state)  # leftovers of the old lab host, if any
            self._prepare_home(lab, state, caps, create=False)
            if sandbox.LabSandbox.from_state(state.get("sandbox")).mode == "bwrap":
                self._prepare_cgroup(lab, state, caps)
            server = self.hosts.start(lab, state, setup=False, port=state.get("port"))
            state["port"] = server["port"]
        state.update(status=states.RESUME_COMPLETE, status_reason="")
        lab.write_state(state)
        return self._stack(lab, states.RESUME_COMPLETE, state=state)

    def _adopt_legacy(self, lab: LabDir, state: dict[str, Any], caps: Capabilities) -> None:
        """Move a lab made before labs had their own namespaces into a sandbox (its home is kept)."""
        launcher.kill_legacy_host(lab, state)
        record = self._new_sandbox(lab, caps)
        if record.mode == "bwrap" and (record.uid, record.gid) != (os.geteuid(), os.getegid()):
            for dirpath, dirnames, filenames in os.walk(lab.home):
                for entry in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                    os.lchown(entry, record.uid, record.gid)
        state.update(sandbox=record.to_state(), cgroups={}, version=statedir.STATE_VERSION, started=None)
        state.pop("start_time", None)

    def _remove(self, lab: LabDir, state: Mapping[str, Any] | None) -> None:
        """Kill the lab, unmount and remove its home, its cgroup and its directory."""
        state = state or {}
        self.hosts.kill(lab, state)
        try:
            homefs.unmount(lab.home)
        except homefs.HomeFsError as error:
            raise TransientProviderError(f"the lab's home could not be unmounted ({error})") from None
        with contextlib.suppress(cgroups.CgroupError):
            cgroups.LabCgroup.from_state(state.get("cgroups")).remove()
        statedir.remove_tree(lab.path)

    def delete(self, name: str) -> ProviderStack:
        """Kill every process of the lab and remove it; return ``DELETE_COMPLETE``.

        An absent lab counts as deleted.  Raises
        :class:`TransientProviderError` if processes do not exit in time.
        """
        lab = self._lab(name)
        with lab.lock():
            if not lab.exists():
                return ProviderStack(name=name, status=states.DELETE_COMPLETE)
            self._remove(lab, lab.read_state())
            log.info("local lab %s: deleted", name)
        # The lock file stays: unlinking it while another thread waits on it
        # would let two holders in.
        return ProviderStack(name=name, status=states.DELETE_COMPLETE)

    def stop(self, name: str) -> ProviderStack:
        """Kill the lab's processes but keep its files; it then reads as ``SUSPEND_COMPLETE``.

        For shutting a machine (or the demo) down: :meth:`resume` starts a new
        lab host on the same home directory later.  Background processes of
        the learner are lost, files are kept.
        """
        lab = self._lab(name)
        with lab.lock():
            if not lab.exists():
                return ProviderStack(name=name, status=states.DELETE_COMPLETE)
            state = lab.read_state()
            if state:
                self.hosts.kill(lab, state)
                with contextlib.suppress(homefs.HomeFsError):
                    homefs.unmount(lab.home)
                if state.get("status") in _UP_OR_SUSPENDED:
                    state.update(status=states.SUSPEND_COMPLETE, status_reason="")
                    lab.write_state(state)
            log.info("local lab %s: lab host stopped", name)
        return self._current(lab)

    def list(self) -> list[str]:
        """Names of the lab directories under the root (sorted)."""
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(e for e in entries if statedir.NAME_RE.match(e) and os.path.isdir(os.path.join(self.root, e)))
