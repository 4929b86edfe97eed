"""Process trees of local labs, for what a lab without a cgroup needs: identity, stop, continue, kill.

Every process of a sandboxed lab descends from its lab host: the lab's init
is the child of bubblewrap's monitor, itself the lab host's child, and a PID
namespace re-parents every orphan to that init, never out of the tree.  So
walking the lab host's descendants finds the whole lab -- the mechanism for a
worker that cannot use cgroups (see ``cgroups.py`` for the rest).

A process is identified by its pid *and* its start time (psutil's
``create_time``), so that a recycled pid is never mistaken for a lab's.

This module does not import Django or XBlock.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

import psutil

from ... import timing

#: How long to wait for stopped or killed processes to settle.
SETTLE_SECONDS = 5.0


def _process(pid: int | None, create_time: float | None = None) -> psutil.Process | None:
    if not pid:
        return None
    try:
        process = psutil.Process(pid)
        if create_time is not None and process.create_time() != create_time:
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return process


def create_time(pid: int) -> float | None:
    """The start time of ``pid`` (its identity together with the pid), or ``None`` if it is gone."""
    process = _process(pid)
    try:
        return process.create_time() if process else None
    except psutil.NoSuchProcess:
        return None


def alive(pid: int | None, started: float | None = None) -> bool:
    """Whether ``pid`` is a live (not zombie) process, started at ``started`` when given."""
    return _process(pid, started) is not None


def stopped(pid: int | None, started: float | None = None) -> bool:
    """Whether ``pid`` is alive and stopped by a signal (``T``)."""
    process = _process(pid, started)
    try:
        return process is not None and process.status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``; parents come before their children."""
    process = _process(pid)
    if process is None:
        return []
    try:
        children = process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    depth: dict[int, int] = {pid: 0}
    parent_of: dict[int, int] = {}
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            parent_of[child.pid] = child.ppid()

    def level(p: int) -> int:
        seen = 0
        while p not in depth and p in parent_of and seen < 4096:
            p, seen = parent_of[p], seen + 1
        return depth.get(p, 0) + seen

    return sorted((child.pid for child in children if child.pid in parent_of), key=level)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait(pids: list[int], done: Callable[[int], bool]) -> bool:
    """Whether every one of ``pids`` is ``done`` within :data:`SETTLE_SECONDS`."""
    try:
        return timing.poll(
            lambda: True if all(done(p) for p in pids) else None,
            timing.Deadline.after(SETTLE_SECONDS),
            timing.KERNEL,
            what="processes to settle",
        )
    except timing.Timeout:
        return False


def stop_tree(pid: int) -> list[int]:
    """SIGSTOP ``pid`` and every descendant; return the descendants, parents first.

    The root is stopped first so that it starts nothing new; then each pass
    stops the descendants not yet seen, until a pass finds none (a process
    forking when it got SIGSTOP shows its child on the next pass: the kernel
    aborts a fork while a signal is pending).
    """
    _signal(pid, signal.SIGSTOP)
    seen: list[int] = []
    while True:
        new = [p for p in descendants(pid) if p not in seen]
        for p in new:
            _signal(p, signal.SIGSTOP)
            seen.append(p)
        if not new:
            # Make sure the stops have landed before the final look.
            _wait([pid, *seen], lambda p: not alive(p) or stopped(p))
            if not [p for p in descendants(pid) if p not in seen]:
                return seen


def continue_tree(pid: int) -> None:
    """SIGCONT every descendant of ``pid``, children before parents, then ``pid``.

    A parent that ran again before its child would see the child still
    stopped (a shell would report the job "Stopped" and take the terminal back).
    """
    for p in reversed(descendants(pid)):
        _signal(p, signal.SIGCONT)
    _signal(pid, signal.SIGCONT)


def kill_tree(pid: int, started: float | None = None) -> bool:
    """SIGKILL ``pid`` and every descendant (stopping the tree first); return whether all are gone."""
    if not alive(pid, started):
        return True
    # Stop first: once the root is dead its children would be re-parented out
    # of reach.  SIGKILL works on stopped processes.
    tree = stop_tree(pid)
    for p in reversed(tree):
        _signal(p, signal.SIGKILL)
    _signal(pid, signal.SIGKILL)
    return _wait([pid, *tree], lambda p: not alive(p))
