"""Learner activity → ``Stack.suspend_by``, and closing sessions whose lab went away.

Typing in the terminal must keep the lab from being suspended, but a
database write per keystroke would not scale.  So :meth:`ActivityTracker.record`
only notes the stack id in a dict (cheap, on the event loop), and once every
``gateway_activity_interval`` seconds :meth:`ActivityTracker.flush` does, in a
worker thread:

* one ``UPDATE`` per distinct suspend timeout (normally exactly one) pushing
  ``suspend_by`` to ``now + timeout`` for every stack that had input in the
  interval and is still up (a suspended lab is never made "active" again);
* one ``SELECT`` of the status of every stack that has an open session;
  sessions whose stack is no longer up are told to close (``on_down``);
* now and then, a ``DELETE`` of expired :class:`~hastexo_xblock.models.UsedTicket`
  rows.

The interval stays ahead of suspension: the flush runs every
:func:`effective_interval` seconds, the configured interval or a quarter of
the shortest suspend timeout in use (of open sessions and pending input),
whichever is shorter.  With ``suspend_timeout`` 20 the activity is written
every 5 s, so a learner who types is never suspended between two writes.

The tracker is per process (each gateway worker has its own); that is fine
because every write is idempotent and absolute (``now + timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async

logger = logging.getLogger(__name__)

#: How often expired UsedTicket rows are purged (seconds).
PURGE_INTERVAL = 600
#: Tickets live at most a minute; keep spent ids a while longer so clock skew between replicas cannot matter.
PURGE_GRACE = timedelta(minutes=5)
#: The background loop wakes this often to see whether an interval is over, so a changed
#: ``gateway_activity_interval`` takes effect within a second, not after the old interval.
TICK = 0.5


def status_word(status: str | None) -> str:
    """The status word sent to the browser for a stack that is no longer up.

    ``None`` means the row is gone.  Suspending/suspended → ``"suspended"``,
    deleting/deleted → ``"deleted"``, anything else is sent as it is.
    """
    from .. import states

    if status is None or status in states.DELETING or status in states.ABSENT:
        return "deleted"
    if status in states.SUSPENDING or status in states.SUSPENDED:
        return "suspended"
    return status


@dataclass
class _Session:
    stack_id: int
    on_down: Callable[[str], None]
    suspend_timeout: int | None = None


#: Writes per suspend timeout at least: input is written within a quarter of it.
WRITES_PER_SUSPEND_TIMEOUT = 4


def effective_interval(configured: float, suspend_timeouts: Iterable[int]) -> float:
    """Seconds between activity writes: ``configured``, or a quarter of the shortest timeout if that is shorter.

    Never below one second (a tick of the loop is half of that).
    """
    shortest = min((t for t in suspend_timeouts if t), default=None)
    if shortest is None:
        return float(configured)
    return max(1.0, min(float(configured), shortest / WRITES_PER_SUSPEND_TIMEOUT))


def run_db(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function`` in a worker thread with a healthy connection, closing stale ones around it."""
    from django.db import close_old_connections

    def run() -> Any:
        # Honour CONN_MAX_AGE and drop broken connections, as Django does around a request.
        close_old_connections()
        try:
            return function(*args)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False)()


def _write_and_check(activity: dict[int, int], open_ids: set[int], purge: bool) -> tuple[dict[int, str | None], int]:
    """The database part of a flush (runs in a worker thread).

    Returns ``({stack_id: status or None}, updated_rows)`` for the stacks in
    ``open_ids`` that are no longer up (``None``: the row is gone).
    """
    from django.db.models import Q
    from django.utils import timezone

    from .. import states
    from ..models import Stack, UsedTicket

    now = timezone.now()
    updated = 0
    by_timeout: dict[int, list[int]] = {}
    for stack_id, timeout in activity.items():
        by_timeout.setdefault(timeout, []).append(stack_id)
    for timeout, ids in by_timeout.items():
        deadline = now + timedelta(seconds=timeout)
        # Only forward: a deadline someone set further out (e.g. a longer keep-alive) is kept.
        updated += (
            Stack.objects.filter(pk__in=ids, status__in=states.UP)
            .filter(Q(suspend_by__isnull=True) | Q(suspend_by__lt=deadline))
            .update(suspend_by=deadline)
        )

    down: dict[int, str | None] = {}
    if open_ids:
        found = dict(Stack.objects.filter(pk__in=open_ids).values_list("pk", "status"))
        for stack_id in open_ids:
            status = found.get(stack_id)
            if status not in states.UP:
                down[stack_id] = status

    if purge:
        deleted, _ = UsedTicket.objects.filter(expires_at__lt=now - PURGE_GRACE).delete()
        if deleted:
            logger.debug("purged %d expired used tickets", deleted)
    return down, updated


class ActivityTracker:
    """Per-process registry of open sessions and their input activity.

    All methods except :meth:`flush`'s database part run on the event loop
    and are not thread-safe (they need not be: one loop per process).
    """

    def __init__(self) -> None:
        #: stack id → suspend timeout (seconds) of stacks with input since the last flush.
        self._activity: dict[int, int] = {}
        self._sessions: dict[int, _Session] = {}
        self._tokens = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._flush_lock: asyncio.Lock | None = None
        self._last_purge = time.monotonic()
        self.last_flush_updated = 0

    # --- called by sessions ---------------------------------------------------

    def record(self, stack_id: int, suspend_timeout: int) -> None:
        """Note input on ``stack_id`` (whose suspend timeout is ``suspend_timeout`` s).  O(1), no I/O."""
        self._activity[stack_id] = suspend_timeout

    def register(self, stack_id: int, on_down: Callable[[str], None], suspend_timeout: int | None = None) -> int:
        """Watch ``stack_id`` for an open session; returns a token for :meth:`unregister`.

        ``on_down(status_word)`` is called on the event loop, once, when a
        flush finds the stack no longer up (see :func:`status_word`).
        ``suspend_timeout`` (the stack's) shortens the write interval while
        the session is open (see :func:`effective_interval`).
        """
        token = next(self._tokens)
        self._sessions[token] = _Session(stack_id, on_down, suspend_timeout)
        return token

    def interval(self, configured: float) -> float:
        """Seconds between flushes now: ``configured``, kept ahead of the shortest suspend timeout in use."""
        timeouts = [*self._activity.values(), *(s.suspend_timeout or 0 for s in self._sessions.values())]
        return effective_interval(configured, timeouts)

    def unregister(self, token: int) -> None:
        """Stop watching the session ``token`` (unknown tokens are ignored)."""
        self._sessions.pop(token, None)

    @property
    def pending(self) -> frozenset[int]:
        """Stack ids with input not yet written (for tests and diagnostics)."""
        return frozenset(self._activity)

    @property
    def session_count(self) -> int:
        """Number of registered open sessions."""
        return len(self._sessions)

    # --- the periodic pass ----------------------------------------------------

    async def flush(self, *, purge: bool | None = None) -> int:
        """Write pending activity, check open sessions' stacks, maybe purge tickets.

        Returns the number of stack rows whose ``suspend_by`` moved.  Does no
        database work at all when there is nothing to write, check or purge.
        Concurrent calls are serialised.
        """
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        async with self._flush_lock:
            if purge is None:
                purge = time.monotonic() - self._last_purge >= PURGE_INTERVAL
            if purge:
                self._last_purge = time.monotonic()
            activity, self._activity = self._activity, {}
            open_ids = {session.stack_id for session in self._sessions.values()}
            if not activity and not open_ids and not purge:
                return 0
            try:
                down, updated = await run_db(_write_and_check, activity, open_ids, purge)
            except Exception:
                # Put the activity back (newer input wins) so the next pass retries it.
                for stack_id, timeout in activity.items():
                    self._activity.setdefault(stack_id, timeout)
                logger.exception("gateway activity flush failed; will retry")
                return 0
            self.last_flush_updated = updated
            for token, session in list(self._sessions.items()):
                if session.stack_id in down:
                    # Once only: the session closes itself and unregisters.
                    del self._sessions[token]
                    try:
                        session.on_down(status_word(down[session.stack_id]))
                    except Exception:
                        logger.exception("closing a session for stack %s failed", session.stack_id)
            return updated

    async def _run(self) -> None:
        from ..conf import get_settings

        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK)
            try:
                interval = self.interval(get_settings()["gateway_activity_interval"])
            except Exception:
                logger.exception("cannot read the gateway settings")
                interval = self.interval(30)
            if time.monotonic() - last < interval:
                continue
            last = time.monotonic()
            await self.flush()

    def start(self) -> None:
        """Start the periodic flush on the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._flush_lock = asyncio.Lock()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="hastexo-gateway-activity")

    async def stop(self) -> None:
        """Stop the periodic flush and write what is still pending (best effort)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._activity:
            try:
                await self.flush(purge=False)
            except Exception:
                logger.exception("final gateway activity flush failed")

    @property
    def running(self) -> bool:
        """Whether the periodic flush is running."""
        return self._task is not None and not self._task.done()


#: The process-wide tracker used by the ASGI application.
tracker = ActivityTracker()


def suspend_timeout_for(stack: Any, default: int) -> int:
    """The stack's own suspend timeout, or ``default`` (the ``suspend_timeout`` setting) when unset."""
    value = getattr(stack, "suspend_timeout", None)
    return int(value) if value else int(default)
