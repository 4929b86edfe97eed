"""A size-limited home directory for a local lab: an ext4 image, loop-mounted on the lab's home.

A learner who fills the home gets "No space left on device" inside the lab;
the host's disk is untouched.  The image is sparse (it takes the space the
learner uses, up to the limit) and lives in the lab's directory, so suspend,
resume and a worker restart keep it; after a reboot the provider mounts it
again before the lab starts.

Mounting needs root (and loop devices, ``mkfs.ext4``, ``mount``): a worker
that is not root cannot limit the home's size this way, and :func:`probe`
says so.

This module does not import Django or XBlock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading

#: The smallest home a lab may be given (ext4 needs room for its own structures).
MIN_SIZE = 16 * 1024 * 1024
COMMAND_TIMEOUT = 60.0

_probe_result: dict[str, str | None] = {}
_probe_lock = threading.Lock()


class HomeFsError(Exception):
    """Creating, mounting or unmounting a home image failed (the message says why)."""


def _run(argv: list[str]) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, timeout=COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise HomeFsError(f"{argv[0]}: {error}") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).decode("utf-8", "replace").strip()
        raise HomeFsError(f"{' '.join(argv[:2])} failed: {detail or f'exit status {result.returncode}'}")


def probe() -> str | None:
    """``None`` when home images can be made and mounted here, else why not (cached per process)."""
    with _probe_lock:
        if "result" not in _probe_result:
            _probe_result["result"] = _probe()
        return _probe_result["result"]


def _probe() -> str | None:
    if os.geteuid() != 0:
        return "the worker is not root (mounting a file system image needs root)"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if not os.path.exists("/dev/loop-control"):
        return "there are no loop devices (/dev/loop-control)"
    with tempfile.TemporaryDirectory(prefix="hastexo-homefs-probe-") as scratch:
        image, mountpoint = os.path.join(scratch, "probe.img"), os.path.join(scratch, "home")
        os.mkdir(mountpoint)
        try:
            create(image, mountpoint, MIN_SIZE, os.getuid(), os.getgid())
            unmount(mountpoint)
        except HomeFsError as error:
            with contextlib.suppress(HomeFsError):
                unmount(mountpoint)
            return str(error)
    return None


def is_mounted(mountpoint: str) -> bool:
    return os.path.ismount(mountpoint)


def create(image: str, mountpoint: str, size: int, uid: int, gid: int) -> None:
    """Make a sparse ext4 image of ``size`` bytes owned (at its root) by ``uid:gid`` and mount it."""
    if size < MIN_SIZE:
        raise HomeFsError(f"a home needs at least {MIN_SIZE // (1024 * 1024)} MiB")
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    # No reserved blocks: the whole limit is the learner's.  root_owner: the
    # home's top directory belongs to the lab's user.
    _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-L", "hastexo-home", "-E", f"root_owner={uid}:{gid}", image])
    mount(image, mountpoint)
    # mkfs leaves lost+found in the home; the learner does not need it.
    with contextlib.suppress(OSError):
        os.rmdir(os.path.join(mountpoint, "lost+found"))


def mount(image: str, mountpoint: str) -> None:
    """Mount ``image`` on ``mountpoint`` (no device files, no setuid) unless it is mounted already."""
    if is_mounted(mountpoint):
        return
    _run(["mount", "-o", "loop,nosuid,nodev,noatime", image, mountpoint])


def unmount(mountpoint: str) -> None:
    """Unmount the home (lazily if something still holds it); nothing to do when it is not mounted."""
    if not is_mounted(mountpoint):
        return
    try:
        _run(["umount", mountpoint])
    except HomeFsError:
        _run(["umount", "-l", mountpoint])
