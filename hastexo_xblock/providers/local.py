"""The local provider: labs that run on the worker's own machine.

A local stack is a directory ``<root>/<name>/`` plus a long-lived lab host
process (``labhost.py``: an asyncssh server on ``127.0.0.1``, ephemeral port)
that accepts only the stack's client key and gives the learner a shell whose
home is ``<root>/<name>/home``.  Everything needed to manage a stack is on
disk, so a new provider instance (after a worker restart) finds and manages
the stacks that exist::

    <root>/<name>/state.json       status, port, lab host pid + start time, sandbox
    <root>/<name>/host_key         the lab host's SSH host key (0600), host_key.pub
    <root>/<name>/id_ed25519       the generated client key (0600), unless the
                                   caller passed ``public_key``
    <root>/<name>/authorized_keys  the client public key
    <root>/<name>/home/            the learner's home (survives suspend/resume)
    <root>/<name>/labhost.log      the lab host's log; setup.log: the setup script's output
    <root>/.locks/<name>.lock      serialises operations on one stack across
                                   threads and processes (names start with a
                                   letter, so ".locks" is never a stack)

Status, as :meth:`LocalProvider.get` reports it:

* no directory: ``DELETE_COMPLETE``;
* create under way (another thread/process holds the stack's lock):
  ``CREATE_IN_PROGRESS``; interrupted or failed: ``CREATE_FAILED``;
* lab host alive and running: ``CREATE_COMPLETE`` or ``RESUME_COMPLETE``,
  whichever completed last;
* lab host stopped (suspended) **or dead** (e.g. the machine rebooted):
  ``SUSPEND_COMPLETE`` -- the files survive and :meth:`resume` starts a new
  lab host (on the same port when it is free).

Suspend sends SIGSTOP to the lab host and every process below it; the lab
host is a child subreaper, so a learner's background jobs stay below it.

Operators: the lab host runs in its own session and survives the worker, but
a service manager that kills the worker's whole cgroup (systemd's default
``KillMode=control-group``) kills the labs too.  The bwrap sandbox keeps the
lab away from the provider root, other labs and ``hidden_paths`` and makes
the host file system read-only, but it shares the pid namespace and runs as
the worker's user: run workers that use this provider as a dedicated,
unprivileged user.

This module does not import Django or XBlock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from .. import states
from . import labhost
from .base import (
    Provider,
    ProviderConfigError,
    ProviderError,
    ProviderStack,
    StackOutputs,
    TemplateError,
    TransientProviderError,
)

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,254}$")
PARAM_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
MODE_RE = re.compile(r"^0?[0-7]{3,4}$")

SANDBOX_MODES = ("auto", "bwrap", "none")
TEMPLATE_KEYS = frozenset({"description", "files", "setup"})
FILE_KEYS = frozenset({"path", "content", "mode"})

#: ``bash -c`` takes the script as one argument; Linux caps one argument at 128 KiB.
MAX_SETUP_BYTES = 100_000

DEFAULT_START_TIMEOUT = 15.0
DEFAULT_SETUP_TIMEOUT = 300.0
KILL_TIMEOUT = 5.0

PRIVATE_KEY_FILE = "id_ed25519"
HOST_PUBLIC_KEY_FILE = "host_key.pub"
LABHOST_LOG = "labhost.log"

# Run labhost.py by path with "python -I": importing it as
# hastexo_xblock.providers.labhost would import the package's __init__ (and
# with it XBlock and Django) in a process that needs neither.
LABHOST_SCRIPT = os.path.abspath(labhost.__file__)

_UP_OR_SUSPENDED = states.UP | {states.SUSPEND_COMPLETE}


# --------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateFile:
    """A file the template places in the learner's home (``path`` is relative to it)."""

    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class LocalTemplate:
    """A parsed local lab template."""

    description: str = ""
    files: tuple[TemplateFile, ...] = field(default_factory=tuple)
    setup: str = ""


def parse_template(text: str) -> LocalTemplate:
    """Parse and strictly validate a local lab template (YAML text).

    Returns a :class:`LocalTemplate`.  An empty document (only comments) is
    a lab with no files and no setup.  Raises :class:`TemplateError` naming
    the offending key or element for invalid YAML, a document that is not a
    mapping, unknown keys, a file path that is absolute or leaves the home
    directory, a mode that is not an octal string, or a setup that is not a
    string (or is too long).
    """
    if not isinstance(text, str):
        raise TemplateError("the local lab template must be YAML text")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"the local lab template is not valid YAML: {exc}") from None
    if doc is None:
        return LocalTemplate()
    if not isinstance(doc, dict):
        raise TemplateError("the local lab template must be a YAML mapping (with description, files, setup)")
    unknown = sorted(str(k) for k in doc if k not in TEMPLATE_KEYS)
    if unknown:
        raise TemplateError(
            f"unknown key(s) in the local lab template: {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(TEMPLATE_KEYS))})"
        )
    description = doc.get("description")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise TemplateError("template key 'description' must be a string")
    setup = doc.get("setup")
    if setup is None:
        setup = ""
    if not isinstance(setup, str):
        raise TemplateError("template key 'setup' must be a string (a shell script)")
    if "\0" in setup:
        raise TemplateError("template key 'setup' must not contain NUL characters")
    if len(setup.encode("utf-8")) > MAX_SETUP_BYTES:
        raise TemplateError(f"template key 'setup' is longer than {MAX_SETUP_BYTES} bytes")
    files_doc = doc.get("files")
    if files_doc is None:
        files_doc = []
    if not isinstance(files_doc, list):
        raise TemplateError("template key 'files' must be a list")
    files: list[TemplateFile] = []
    seen: set[str] = set()
    for index, entry in enumerate(files_doc):
        where = f"files[{index}]"
        if not isinstance(entry, dict):
            raise TemplateError(f"template element {where} must be a mapping with path, content, mode")
        unknown = sorted(str(k) for k in entry if k not in FILE_KEYS)
        if unknown:
            raise TemplateError(f"unknown key(s) in template element {where}: {', '.join(unknown)}")
        path = _check_relative_path(entry.get("path"), f"{where}.path")
        if path in seen:
            raise TemplateError(f"template element {where}.path: {path!r} is listed twice")
        seen.add(path)
        content = entry.get("content", "")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise TemplateError(f"template element {where}.content must be a string")
        mode = entry.get("mode", "0644")
        if not isinstance(mode, str) or not MODE_RE.match(mode):
            raise TemplateError(f'template element {where}.mode must be a quoted octal string such as "0644"')
        files.append(TemplateFile(path=path, content=content, mode=int(mode, 8) & 0o7777))
    return LocalTemplate(description=description, files=tuple(files), setup=setup)


def _check_relative_path(path: Any, where: str) -> str:
    if not isinstance(path, str) or not path.strip():
        raise TemplateError(f"template element {where} must be a non-empty string")
    if "\0" in path:
        raise TemplateError(f"template element {where} must not contain NUL characters")
    if path.startswith("/"):
        raise TemplateError(f"template element {where} must be relative to the home directory, not absolute")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise TemplateError(f"template element {where} must stay inside the home directory (no '..')")
    return "/".join(parts)


def _parse_parameters(parameters: Mapping[str, Any] | None) -> tuple[dict[str, str], str | None]:
    """Return ``(environment for the setup script, public key or None)``."""
    env: dict[str, str] = {}
    public_key = None
    for key, value in (parameters or {}).items():
        if not isinstance(key, str) or not PARAM_NAME_RE.match(key):
            raise TemplateError(f"parameter name {key!r} may only contain letters, digits and '_'")
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            text = str(value)
        else:
            raise TemplateError(f"parameter {key!r} must be a string or a number")
        if "\0" in text:
            raise TemplateError(f"parameter {key!r} must not contain NUL characters")
        if key == "public_key" and text:
            public_key = _check_public_key(text)
            text = public_key
        env[f"HASTEXO_PARAM_{key.upper()}"] = text
    return env, public_key


def _check_public_key(text: str) -> str:
    import asyncssh

    try:
        key = asyncssh.import_public_key(text.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise TemplateError(f"parameter 'public_key' is not an OpenSSH public key: {exc}") from None
    return key.export_public_key("openssh").decode("ascii").strip()


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _default_root() -> str:
    return os.environ.get("HASTEXO_LOCAL_ROOT") or os.path.join(
        os.path.expanduser("~"), ".local", "share", "hastexo_xblock", "labs"
    )


def _write_private(path: str, data: bytes | str, mode: int = 0o600) -> None:
    """Create ``path`` with ``mode`` from the start (no window where a key is world-readable)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def _tail(path: str, limit: int = 400) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return data.strip()


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_state(pids: list[int], wanted: str, timeout: float) -> bool:
    """Wait until every pid is in state ``wanted`` (or gone); return whether they all are."""
    deadline = time.monotonic() + timeout
    while True:
        pending = []
        for pid in pids:
            info = labhost.read_proc_stat(pid)
            if info is None or info[0] in ("Z", "X", "x"):
                continue
            if wanted == "gone" or info[0] not in wanted:
                pending.append(pid)
        if not pending:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def _stop_tree(pid: int) -> list[int]:
    """SIGSTOP ``pid`` and every descendant; return the descendants, parents first.

    The root is stopped first so that it cannot start anything new; then
    each pass over ``/proc`` stops the descendants not yet seen, until a pass
    finds none (a process that was forking when it got SIGSTOP shows its
    child in the next pass: the kernel aborts a fork while a signal is pending).
    """
    _signal(pid, signal.SIGSTOP)
    seen: list[int] = []
    while True:
        new = [p for p in labhost.descendants(pid) if p not in seen]
        if not new:
            # Make sure the stops have landed before the final look.
            if _wait_state([pid, *seen], "Tt", 2.0):
                new = [p for p in labhost.descendants(pid) if p not in seen]
                if not new:
                    return seen
            else:
                return seen
        for p in new:
            _signal(p, signal.SIGSTOP)
            seen.append(p)


def _rmtree(path: str) -> None:
    def onerror(func: Any, failed: str, exc_info: Any) -> None:
        # A learner may have made a directory read-only; make it writable and retry.
        try:
            parent = os.path.dirname(failed)
            os.chmod(parent, stat.S_IRWXU)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, stat.S_IRWXU)
            func(failed)
        except OSError:
            pass

    shutil.rmtree(path, onerror=onerror)


_bwrap_probe: dict[str, str | None] = {}
_bwrap_probe_lock = threading.Lock()


def _probe_bwrap(path: str) -> str | None:
    """Return ``None`` if bwrap can build a sandbox here, else why not (cached per path)."""
    with _bwrap_probe_lock:
        if path not in _bwrap_probe:
            try:
                result = subprocess.run(
                    [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-ipc", "true"],
                    capture_output=True,
                    timeout=10,
                    env={"PATH": labhost.DEFAULT_PATH},
                )
                _bwrap_probe[path] = (
                    None if result.returncode == 0 else result.stderr.decode("utf-8", "replace").strip()
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                _bwrap_probe[path] = str(exc)
        return _bwrap_probe[path]


# --------------------------------------------------------------------------
# The provider
# --------------------------------------------------------------------------


class LocalProvider(Provider):
    """Labs as SSH-reachable sandboxed shells on this machine.

    Config keys (all optional besides ``type``):

    ``root``
        Directory holding the stacks (default ``$HASTEXO_LOCAL_ROOT`` or
        ``~/.local/share/hastexo_xblock/labs``).
    ``sandbox``
        ``"auto"`` (default: bwrap when installed and working, else no
        sandbox with a WARNING), ``"bwrap"`` or ``"none"``.
    ``hidden_paths``
        Absolute paths hidden inside the sandbox (directories become empty,
        files read as empty), e.g. the worker's settings and secrets.
    ``setup_timeout`` / ``start_timeout``
        Seconds allowed for a template's setup script (default 300) and for
        the lab host to start listening (default 15).
    ``python``
        Interpreter that runs the lab host (default ``sys.executable``).

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
        self.hidden_paths = [os.path.normpath(p) for p in config.get("hidden_paths") or ()]
        self.setup_timeout = float(config.get("setup_timeout", DEFAULT_SETUP_TIMEOUT))
        self.start_timeout = float(config.get("start_timeout", DEFAULT_START_TIMEOUT))
        self.python = config.get("python") or sys.executable
        self.bwrap: str | None = None
        mode = config.get("sandbox", "auto")
        if mode in ("auto", "bwrap"):
            self.bwrap = shutil.which("bwrap")
            if mode == "auto" and self.bwrap:
                problem = _probe_bwrap(self.bwrap)
                if problem:
                    log.warning("local provider %s: bwrap does not work here (%s)", name, problem)
                    self.bwrap = None
        self.sandbox_mode = "bwrap" if self.bwrap else "none"
        if self.sandbox_mode == "none":
            log.warning("%s (provider %s)", labhost.NOSANDBOX_WARNING, name)
        # Lab hosts this process started: kept to reap them (no zombies).
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._children_lock = threading.Lock()

    @classmethod
    def validate_config(cls, name: str, config: Mapping[str, Any]) -> None:
        """Raise :class:`ProviderConfigError` naming the key that is wrong.

        Checks ``root`` (string), ``sandbox`` (one of auto, bwrap, none;
        "bwrap" needs bwrap installed), ``hidden_paths`` (list of absolute
        paths), ``setup_timeout``/``start_timeout`` (positive numbers) and
        ``python`` (string).  Other keys are ignored.
        """
        root = config.get("root")
        if root is not None and (not isinstance(root, str) or not root):
            raise ProviderConfigError(f"provider {name!r}: 'root' must be a non-empty string (a directory)")
        sandbox = config.get("sandbox", "auto")
        if sandbox not in SANDBOX_MODES:
            raise ProviderConfigError(
                f"provider {name!r}: 'sandbox' must be one of {', '.join(SANDBOX_MODES)}, not {sandbox!r}"
            )
        if sandbox == "bwrap" and not shutil.which("bwrap"):
            raise ProviderConfigError(f"provider {name!r}: 'sandbox' is 'bwrap' but bwrap is not installed")
        hidden = config.get("hidden_paths")
        if hidden is not None:
            if not isinstance(hidden, (list, tuple)):
                raise ProviderConfigError(f"provider {name!r}: 'hidden_paths' must be a list of absolute paths")
            for index, path in enumerate(hidden):
                if not isinstance(path, str) or not path.startswith("/"):
                    raise ProviderConfigError(
                        f"provider {name!r}: 'hidden_paths'[{index}] must be an absolute path, not {path!r}"
                    )
        for key in ("setup_timeout", "start_timeout"):
            value = config.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ProviderConfigError(f"provider {name!r}: {key!r} must be a positive number of seconds")
        python = config.get("python")
        if python is not None and (not isinstance(python, str) or not python):
            raise ProviderConfigError(f"provider {name!r}: 'python' must be a path to a Python interpreter")

    # -- paths, state, locks --------------------------------------------------

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ProviderError(f"invalid stack name {name!r}")

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _path(self, name: str, *parts: str) -> str:
        return os.path.join(self.root, name, *parts)

    def _read_state(self, name: str) -> dict[str, Any] | None:
        return labhost.read_json(self._path(name, labhost.STATE_FILE))

    def _write_state(self, name: str, state: dict[str, Any]) -> None:
        state["updated"] = time.time()
        labhost.atomic_write_json(self._path(name, labhost.STATE_FILE), state)

    def _lock_path(self, name: str) -> str:
        return os.path.join(self.root, ".locks", f"{name}.lock")

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        """Hold the stack's lock (an flock: across threads and processes)."""
        os.makedirs(os.path.dirname(self._lock_path(name)), mode=0o700, exist_ok=True)
        fd = os.open(self._lock_path(name), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _locked_elsewhere(self, name: str) -> bool:
        try:
            fd = os.open(self._lock_path(name), os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def _sandbox_state(self) -> dict[str, Any]:
        return {
            "mode": self.sandbox_mode,
            "bwrap": self.bwrap,
            "root": self.root,
            "hidden_paths": list(self.hidden_paths),
        }

    # -- processes -----------------------------------------------------------

    def _reap_children(self) -> None:
        with self._children_lock:
            for name, popen in list(self._children.items()):
                if popen.poll() is not None:
                    del self._children[name]

    def _server_alive(self, state: Mapping[str, Any]) -> bool:
        self._reap_children()
        return labhost.process_alive(state.get("pid"), state.get("start_time"))

    def _server_stopped(self, state: Mapping[str, Any]) -> bool:
        info = labhost.read_proc_stat(state.get("pid") or 0)
        return info is not None and info[0] in ("T", "t")

    def _kill_tree(self, state: Mapping[str, Any]) -> None:
        """SIGKILL the lab host and every descendant; wait until they are gone."""
        pid = state.get("pid")
        if not pid or not labhost.process_alive(pid, state.get("start_time")):
            return
        # Freeze the tree first: once the lab host is dead its children
        # would be re-parented out of reach.  SIGKILL works on stopped processes.
        tree = _stop_tree(pid)
        for p in reversed(tree):
            _signal(p, signal.SIGKILL)
        _signal(pid, signal.SIGKILL)
        with self._children_lock:
            for name, popen in list(self._children.items()):
                if popen.pid == pid:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        popen.wait(KILL_TIMEOUT)
                    del self._children[name]
        if not _wait_state([pid, *tree], "gone", KILL_TIMEOUT):
            raise TransientProviderError("the lab's processes did not exit; try again")

    def _spawn(self, name: str, state: dict[str, Any], setup: bool, port: int | None) -> dict[str, Any]:
        """Start the lab host and wait until it listens (or its setup failed).

        Records the new pid in ``state`` (on disk) as soon as it exists, so
        that a crash while waiting leaves nothing untracked.  Returns the
        lab host's ``server.json`` (``pid``, ``port``, ``setup_status``);
        raises :class:`ProviderError` when it dies or times out (after
        killing it).
        """
        stack_dir = self._dir(name)
        server_file = os.path.join(stack_dir, labhost.SERVER_FILE)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(server_file)
        # A minimal environment: the worker's holds settings, database URLs
        # and secrets that the lab must never see.
        env = {
            "PATH": os.environ.get("PATH") or labhost.DEFAULT_PATH,
            "LANG": os.environ.get("LANG") or "C.UTF-8",
            "HOME": os.path.join(stack_dir, labhost.HOME_DIR),
        }
        cmd = [self.python, "-I", LABHOST_SCRIPT, stack_dir]
        if port:
            cmd += ["--port", str(port)]
        if setup:
            cmd.append("--setup")
        state["sandbox"] = self._sandbox_state()
        self._write_state(name, state)
        with open(os.path.join(stack_dir, LABHOST_LOG), "ab") as logf:
            popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
                cwd=stack_dir,
            )
        with self._children_lock:
            self._children[name] = popen
        info = labhost.read_proc_stat(popen.pid)
        state["pid"] = popen.pid
        state["start_time"] = info[2] if info else None
        self._write_state(name, state)

        timeout = self.start_timeout + (self.setup_timeout if setup else 0.0)
        deadline = time.monotonic() + timeout
        while True:
            server = labhost.read_json(server_file)
            if (
                server
                and server.get("pid") == popen.pid
                and (server.get("setup_status") not in (None, 0) or server.get("port"))
            ):
                return server
            if popen.poll() is not None:
                log.error(
                    "local lab %s: lab host exited with status %s: %s",
                    name,
                    popen.returncode,
                    _tail(os.path.join(stack_dir, LABHOST_LOG), 2000),
                )
                raise ProviderError("the lab host failed to start")
            if time.monotonic() > deadline:
                self._kill_tree(state)
                if setup and labhost.read_json(server_file) is None:
                    raise TransientProviderError(
                        f"the setup script did not finish within {self.setup_timeout:g} seconds"
                    )
                raise TransientProviderError(f"the lab host did not start within {timeout:g} seconds")
            time.sleep(0.05)

    # -- views ---------------------------------------------------------------

    def _stack(self, name: str, status: str, reason: str = "", state: Mapping[str, Any] | None = None) -> ProviderStack:
        outputs = None
        extra: dict[str, Any] = {}
        if state is not None:
            extra = {
                "stack_dir": self._dir(name),
                "home": self._path(name, labhost.HOME_DIR),
            }
            host_key = _read_text(self._path(name, HOST_PUBLIC_KEY_FILE))
            if host_key:
                extra["host_key"] = host_key.strip()
            if status in _UP_OR_SUSPENDED and state.get("port"):
                outputs = StackOutputs(
                    public_ip="127.0.0.1",
                    private_key=_read_text(self._path(name, PRIVATE_KEY_FILE)) or "",
                    ssh_port=int(state["port"]),
                )
        return ProviderStack(name=name, status=status, status_reason=reason, outputs=outputs, extra=extra)

    def _current(self, name: str) -> ProviderStack:
        if not os.path.isdir(self._dir(name)):
            return ProviderStack(name=name, status=states.DELETE_COMPLETE)
        state = self._read_state(name)
        status = (state or {}).get("status")
        if state is None or status == states.CREATE_IN_PROGRESS:
            if self._locked_elsewhere(name):
                return self._stack(name, states.CREATE_IN_PROGRESS, state=state)
            return self._stack(name, states.CREATE_FAILED, "the lab's creation was interrupted", state)
        if status in states.UP:
            if not self._server_alive(state):
                return self._stack(
                    name, states.SUSPEND_COMPLETE, "the lab host is not running; resuming restarts it", state
                )
            if self._server_stopped(state):
                return self._stack(name, states.SUSPEND_COMPLETE, state=state)
            return self._stack(name, status, state=state)
        return self._stack(name, status or states.CREATE_FAILED, state.get("status_reason", ""), state)

    # -- operations ----------------------------------------------------------

    def create(
        self,
        name: str,
        template: str,
        environment: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> ProviderStack:
        """Create stack ``name`` from a local lab template and wait until it is up.

        ``template`` is the YAML text (see :func:`parse_template`);
        ``environment`` is ignored.  ``parameters`` are exported to the setup
        script as ``HASTEXO_PARAM_<NAME>``; ``public_key`` (OpenSSH) is
        authorized instead of generating a key pair (``outputs.private_key``
        is then empty).  Returns ``CREATE_COMPLETE`` with outputs, or
        ``CREATE_FAILED`` with a reason (setup script failed, lab host did
        not start).  Idempotent: if the stack exists and is up it is
        returned as it is; if it was created but is suspended or its lab
        host is dead, it is resumed (``RESUME_COMPLETE``); a half-created or
        failed stack is removed and created again.  Raises
        :class:`TemplateError` for an invalid template or parameters and
        :class:`ProviderError` for an invalid name.
        """
        self._check_name(name)
        spec = parse_template(template)
        param_env, public_key = _parse_parameters(parameters)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        with self._lock(name):
            if os.path.isdir(self._dir(name)):
                state = self._read_state(name)
                if state and state.get("status") in _UP_OR_SUSPENDED:
                    current = self._current(name)
                    if current.status in states.UP:
                        return current
                    return self._resume_locked(name, state)
                log.info("local lab %s: removing a failed or half-created stack before creating it", name)
                if state:
                    self._kill_tree(state)
                _rmtree(self._dir(name))
            return self._create_locked(name, spec, param_env, public_key)

    def _create_locked(
        self, name: str, spec: LocalTemplate, param_env: dict[str, str], public_key: str | None
    ) -> ProviderStack:
        import asyncssh

        stack_dir = self._dir(name)
        home = self._path(name, labhost.HOME_DIR)
        os.makedirs(stack_dir, mode=0o700)
        os.makedirs(home, mode=0o700)
        now = time.time()
        state: dict[str, Any] = {
            "version": 1,
            "name": name,
            "status": states.CREATE_IN_PROGRESS,
            "status_reason": "",
            "created": now,
            "description": spec.description,
            "pid": None,
            "start_time": None,
            "port": None,
            "generated_key": public_key is None,
            "sandbox": self._sandbox_state(),
        }
        self._write_state(name, state)
        try:
            host_key = asyncssh.generate_private_key("ssh-ed25519")
            _write_private(self._path(name, labhost.HOST_KEY_FILE), host_key.export_private_key("openssh"))
            _write_private(self._path(name, HOST_PUBLIC_KEY_FILE), host_key.export_public_key("openssh"), 0o644)
            if public_key is None:
                client_key = asyncssh.generate_private_key("ssh-ed25519", comment=f"hastexo-{name}")
                _write_private(self._path(name, PRIVATE_KEY_FILE), client_key.export_private_key("openssh"))
                public_key = client_key.export_public_key("openssh").decode("ascii").strip()
            _write_private(self._path(name, labhost.AUTHORIZED_KEYS_FILE), public_key + "\n", 0o644)
            self._place_files(home, spec.files)
            if spec.setup:
                labhost.atomic_write_json(
                    self._path(name, labhost.SETUP_FILE), {"script": spec.setup, "env": param_env}
                )
            try:
                server = self._spawn(name, state, setup=bool(spec.setup), port=None)
            except ProviderError as exc:
                return self._fail(name, state, str(exc))
            if server.get("setup_status") not in (None, 0):
                tail = _tail(self._path(name, labhost.SETUP_LOG))
                reason = f"the setup script exited with status {server['setup_status']}"
                if tail:
                    reason += f": {tail}"
                return self._fail(name, state, reason)
        except Exception:
            with contextlib.suppress(Exception):
                self._fail(name, state, "the lab could not be created")
            raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(name, labhost.SETUP_FILE))
        state.update(status=states.CREATE_COMPLETE, status_reason="", port=server["port"])
        self._write_state(name, state)
        log.info("local lab %s: created, listening on 127.0.0.1:%s", name, server["port"])
        return self._stack(name, states.CREATE_COMPLETE, state=state)

    def _fail(self, name: str, state: dict[str, Any], reason: str) -> ProviderStack:
        """Kill what runs, record CREATE_FAILED (the directory stays for inspection)."""
        log.warning("local lab %s: creation failed: %s", name, reason)
        with contextlib.suppress(ProviderError):
            self._kill_tree(state)
        state.update(status=states.CREATE_FAILED, status_reason=reason, pid=None, start_time=None)
        self._write_state(name, state)
        return self._stack(name, states.CREATE_FAILED, reason, state)

    @staticmethod
    def _place_files(home: str, files: tuple[TemplateFile, ...]) -> None:
        for item in files:
            target = os.path.join(home, item.path)
            # The template was checked for ".."; this guards against anything
            # (a symlink created by an earlier entry's directory) leading out.
            parent = os.path.dirname(target)
            os.makedirs(parent, mode=0o755, exist_ok=True)
            if os.path.commonpath([os.path.realpath(parent), os.path.realpath(home)]) != os.path.realpath(home):
                raise TemplateError(f"file {item.path!r} would be placed outside the home directory")
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, item.mode)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(item.content)
            os.chmod(target, item.mode)

    def get(self, name: str) -> ProviderStack:
        """Return the stack's status from disk and process liveness (see the module docstring).

        ``DELETE_COMPLETE`` when absent.  ``outputs`` are set whenever the
        stack was created successfully (also while suspended: the port is
        the last one used).  Raises :class:`ProviderError` for an invalid name.
        """
        self._check_name(name)
        return self._current(name)

    def suspend(self, name: str) -> ProviderStack:
        """SIGSTOP the lab host and all its descendants; return ``SUSPEND_COMPLETE``.

        Absent stacks are reported as ``DELETE_COMPLETE``; a stack whose lab
        host is dead is just marked suspended.  Raises :class:`ProviderError`
        for a stack that was never created successfully.
        """
        self._check_name(name)
        with self._lock(name):
            if not os.path.isdir(self._dir(name)):
                return ProviderStack(name=name, status=states.DELETE_COMPLETE)
            state = self._read_state(name)
            if not state or state.get("status") not in _UP_OR_SUSPENDED:
                raise ProviderError(f"lab {name} cannot be suspended: it was not created successfully")
            if self._server_alive(state):
                tree = _stop_tree(state["pid"])
                log.info("local lab %s: suspended (%d processes)", name, len(tree) + 1)
            state.update(status=states.SUSPEND_COMPLETE, status_reason="")
            self._write_state(name, state)
            return self._stack(name, states.SUSPEND_COMPLETE, state=state)

    def resume(self, name: str) -> ProviderStack:
        """SIGCONT the stack's processes (or restart a dead lab host); return ``RESUME_COMPLETE``.

        A restarted lab host listens on the previous port when it is free,
        else on a new one: use the returned ``outputs.ssh_port``.  Raises
        :class:`ProviderError` when the stack does not exist, was never
        created successfully, or its lab host cannot be started.
        """
        self._check_name(name)
        with self._lock(name):
            if not os.path.isdir(self._dir(name)):
                raise ProviderError(f"lab {name} does not exist")
            state = self._read_state(name)
            if not state or state.get("status") not in _UP_OR_SUSPENDED:
                raise ProviderError(f"lab {name} cannot be resumed: it was not created successfully")
            return self._resume_locked(name, state)

    def _resume_locked(self, name: str, state: dict[str, Any]) -> ProviderStack:
        if self._server_alive(state):
            pid = state["pid"]
            # Children before parents: a parent that runs again before its
            # child would see the child as stopped (a shell would report the
            # job as "Stopped" and take the terminal back).
            for p in reversed(labhost.descendants(pid)):
                _signal(p, signal.SIGCONT)
            _signal(pid, signal.SIGCONT)
        else:
            log.info("local lab %s: lab host is not running; starting a new one", name)
            server = self._spawn(name, state, setup=False, port=state.get("port"))
            state["port"] = server["port"]
        state.update(status=states.RESUME_COMPLETE, status_reason="")
        self._write_state(name, state)
        return self._stack(name, states.RESUME_COMPLETE, state=state)

    def delete(self, name: str) -> ProviderStack:
        """Kill the stack's processes and remove its directory; return ``DELETE_COMPLETE``.

        An absent stack counts as deleted.  Raises
        :class:`TransientProviderError` if processes do not exit in time.
        """
        self._check_name(name)
        with self._lock(name):
            if not os.path.isdir(self._dir(name)):
                return ProviderStack(name=name, status=states.DELETE_COMPLETE)
            state = self._read_state(name)
            if state:
                self._kill_tree(state)
            _rmtree(self._dir(name))
            log.info("local lab %s: deleted", name)
        # The lock file stays: unlinking it while another thread waits on it
        # would let two holders in.
        return ProviderStack(name=name, status=states.DELETE_COMPLETE)

    def stop(self, name: str) -> ProviderStack:
        """Kill the stack's processes but keep its files; it then reads as ``SUSPEND_COMPLETE``.

        For shutting a machine (or the demo) down: :meth:`resume` starts a new
        lab host on the same home directory later.  Background processes of
        the learner are lost, files are kept.
        """
        self._check_name(name)
        with self._lock(name):
            if not os.path.isdir(self._dir(name)):
                return ProviderStack(name=name, status=states.DELETE_COMPLETE)
            state = self._read_state(name)
            if state:
                self._kill_tree(state)
                if state.get("status") in _UP_OR_SUSPENDED:
                    state.update(status=states.SUSPEND_COMPLETE, status_reason="")
                    self._write_state(name, state)
            log.info("local lab %s: lab host stopped", name)
        return self._current(name)

    def list(self) -> list[str]:
        """Names of the stack directories under the root (sorted)."""
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(e for e in entries if NAME_RE.match(e) and os.path.isdir(os.path.join(self.root, e)))
