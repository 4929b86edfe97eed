"""A local lab on disk: its directory, its state file, its keys and its lock.

Everything needed to manage a lab is on disk, so a new provider instance
(after a worker restart) finds and manages the labs that exist::

    <root>/<name>/state.json       status, port, lab host pid + start time, sandbox, cgroups
    <root>/<name>/server.json      written by the lab host once it listens (pid, port, the lab's init)
    <root>/<name>/host_key         the lab host's SSH host key (0600), host_key.pub
    <root>/<name>/id_ed25519       the generated client key (0600), unless the caller passed ``public_key``
    <root>/<name>/authorized_keys  the client public key
    <root>/<name>/home/            the learner's home (a mounted image when its size is limited)
    <root>/<name>/home.img         that image
    <root>/<name>/etc/             passwd, group, hosts, hostname, resolv.conf of the lab (read-only in it)
    <root>/<name>/labhost.log      the lab host's log; setup.log: the setup script's output;
                                   desktop.log: the desktop's (desktop labs)
    <root>/.locks/<name>.lock      serialises operations on one lab across threads and processes
    <root>/.uids                   the next lab uid (root workers)

The lab directory is the worker's, mode 0711: the lab's (outside) user may
pass through it to its home and ``etc/`` files, which bubblewrap binds into
the lab, but may not list it; keys, state and logs are 0600.  A lab's
processes never see any of it but their home and those ``etc/`` files.

This module does not import Django or XBlock; the lab host imports it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ... import names

#: Stack names (names.py): they are directory names here.
NAME_RE = names.NAME_PATTERN

STATE_FILE = "state.json"
SERVER_FILE = "server.json"
SETUP_FILE = "setup.json"
SETUP_LOG = "setup.log"
LABHOST_LOG = "labhost.log"
DESKTOP_LOG = "desktop.log"
HOST_KEY_FILE = "host_key"
HOST_PUBLIC_KEY_FILE = "host_key.pub"
PRIVATE_KEY_FILE = "id_ed25519"
AUTHORIZED_KEYS_FILE = "authorized_keys"
HOME_DIR = "home"
HOME_IMAGE = "home.img"
ETC_DIR = "etc"
LOCK_DIR = ".locks"
UID_FILE = ".uids"

#: The version of ``state.json`` this code writes.  Version 1 labs (before
#: the sandbox had its own namespaces) are restarted in a sandbox on resume.
STATE_VERSION = 2


def atomic_write_json(path: str, data: Mapping[str, Any], mode: int = 0o600) -> None:
    """Write ``data`` as JSON to ``path`` so that readers never see a partial file."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: str) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` if it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_private(path: str, data: bytes | str, mode: int = 0o600) -> None:
    """Create ``path`` with ``mode`` from the start (no window where a key is world-readable)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def tail(path: str, limit: int = 400) -> str:
    """The last ``limit`` bytes of a log file, as text."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return data.strip()


def remove_tree(path: str) -> None:
    """Remove a lab's directory, also where a learner made parts of their home read-only."""

    def onerror(func: Any, failed: str, _exc_info: Any) -> None:
        try:
            os.chmod(os.path.dirname(failed), stat.S_IRWXU)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, stat.S_IRWXU)
            func(failed)
        except OSError:
            pass

    shutil.rmtree(path, onerror=onerror)


class LabDir:
    """The directory of lab ``name`` under ``root`` (see the module docstring for its layout)."""

    def __init__(self, root: str, name: str) -> None:
        self.root = root
        self.name = name
        self.path = os.path.join(root, name)

    def file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    @property
    def home(self) -> str:
        return self.file(HOME_DIR)

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def read_state(self) -> dict[str, Any] | None:
        return read_json(self.file(STATE_FILE))

    def write_state(self, state: dict[str, Any]) -> None:
        state["updated"] = time.time()
        atomic_write_json(self.file(STATE_FILE), state)

    def read_server(self) -> dict[str, Any] | None:
        return read_json(self.file(SERVER_FILE))

    # -- locks -----------------------------------------------------------------

    def _lock_path(self) -> str:
        return os.path.join(self.root, LOCK_DIR, f"{self.name}.lock")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the lab's lock (an flock: across threads and processes)."""
        os.makedirs(os.path.dirname(self._lock_path()), mode=0o700, exist_ok=True)
        fd = os.open(self._lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def locked_elsewhere(self) -> bool:
        """Whether another thread or process holds the lab's lock right now."""
        try:
            fd = os.open(self._lock_path(), os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


def allocate_uid(root: str, base: int, count: int) -> int:
    """The next lab uid of a root worker: ``base + 1``, ``base + 2``, … (kept in ``<root>/.uids``).

    Each lab gets its own, so that no two labs share an owner outside their
    namespaces.  Wraps around after ``count - 1`` labs (by then the first
    ones are long deleted).
    """
    path = os.path.join(root, UID_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.read(fd, 64).decode("ascii", "replace").strip()
        offset = int(raw) if raw.isdigit() else 0
        offset = offset % (count - 1) + 1
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, str(offset).encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return base + offset
