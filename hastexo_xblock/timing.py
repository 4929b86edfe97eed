"""The one owner of time: an operation's deadline, and the one way to wait for something.

Every wait in the package (a provider call retried, a stack polled until it
settles, SSH waited for, a cgroup or process waited on) goes through
:func:`poll` (or :func:`poll_async`) with a :class:`Backoff` policy and a
:class:`Deadline`.  Both read time from a :class:`Clock`, by default the
module's :data:`CLOCK`; tests substitute a clock whose ``sleep`` only moves
its own time forward, so a lab that "takes 1,000 s" is tested in
milliseconds.

An operation's deadline is set once, when the operation is claimed (the
status request writes ``Stack.status_deadline``), and everything else is
derived from it: the lifecycle's own deadline (:func:`deadline_from`), the
Celery soft and hard time limits of the task that carries it
(:func:`task_limits`) and the moment the row counts as lost and is
recovered.  A redelivered or re-enqueued task therefore never gets a fresh
budget.

This module does not import Django or XBlock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between an operation's own deadline and the moment its row counts as
#: lost (``status_deadline``): the worker gets to finish cleanly first.
RECOVERY_MARGIN = 60

#: Of :data:`RECOVERY_MARGIN`, how much comes before Celery's soft limit
#: interrupts the task (the hard limit is at ``status_deadline`` itself).
SOFT_LIMIT_MARGIN = 30


@dataclass
class Clock:
    """A time source and the sleepers that go with it.

    ``monotonic`` and ``sleep``/``asleep`` must agree: a test clock's sleep
    moves its monotonic time forward by the amount slept.
    """

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep


#: The process's clock; tests replace its attributes (``monkeypatch.setattr(CLOCK, …)``).
CLOCK = Clock()


def _clock(clock: Clock | None) -> Clock:
    return CLOCK if clock is None else clock


@dataclass(frozen=True)
class Deadline:
    """A point on a :class:`Clock`'s monotonic time by which an operation must be done."""

    at: float
    clock: Clock | None = field(default=None, compare=False)

    @classmethod
    def after(cls, seconds: float, clock: Clock | None = None) -> Deadline:
        """The deadline ``seconds`` from now."""
        return cls(_clock(clock).monotonic() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - _clock(self.clock).monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def within(self, seconds: float) -> Deadline:
        """This deadline or ``seconds`` from now, whichever comes first."""
        return Deadline(min(self.at, _clock(self.clock).monotonic() + seconds), self.clock)


def deadline_from(status_deadline: datetime | None, budget: float, clock: Clock | None = None) -> Deadline:
    """The working deadline of an operation claimed with ``status_deadline`` (wall time).

    ``status_deadline`` is the claim time plus ``budget`` plus
    :data:`RECOVERY_MARGIN`; the work itself must be done by claim time plus
    ``budget``.  Without a recorded deadline the budget counts from now.  At
    least one second is always given, so a late delivery still looks once.
    """
    if status_deadline is None:
        left = budget
    else:
        left = (status_deadline - datetime.now(UTC)).total_seconds() - RECOVERY_MARGIN
    return Deadline.after(max(1.0, left), clock)


def task_limits(status_deadline: datetime, now: datetime | None = None) -> tuple[int, int]:
    """Celery's ``(soft_time_limit, time_limit)`` for a task carrying the operation due at ``status_deadline``.

    The soft limit falls after the lifecycle's own deadline (which ends the
    operation cleanly) and the hard limit at ``status_deadline``, when the row
    counts as lost anyway.  Both are at least a few seconds.
    """
    now = now or datetime.now(UTC)
    hard = max(10, int((status_deadline - now).total_seconds()))
    soft = max(5, hard - SOFT_LIMIT_MARGIN)
    return soft, hard


@dataclass(frozen=True)
class Backoff:
    """How long to wait between tries: ``first``, then times ``factor``, never more than ``maximum``."""

    first: float = 0.5
    factor: float = 2.0
    maximum: float = 10.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * self.factor, self.maximum)


#: Retrying a provider call that failed transiently.
RETRY = Backoff(0.5, 2.0, 10.0)
#: Polling a stack until it settles: a lab is seen up at most 1 s after it is.
SETTLE = Backoff(0.5, 1.5, 1.0)
#: Waiting for a lab's SSH server to answer.
SSH = Backoff(0.1, 2.0, 2.0)
#: Waiting for the kernel (a cgroup to freeze or empty, a process to stop): milliseconds.
KERNEL = Backoff(0.002, 2.0, 0.02)
#: Waiting for a local lab's host process to report that it listens.
LOCAL_START = Backoff(0.02, 1.0, 0.02)


class Timeout(TimeoutError):
    """:func:`poll` ran out of time; ``last`` is the last value or error seen."""

    def __init__(self, what: str, last: object = None) -> None:
        super().__init__(f"{what}: not done in time" + (f" (last: {last!r})" if last is not None else ""))
        self.last = last


def poll(
    probe: Callable[[], T | None],
    deadline: Deadline,
    backoff: Backoff = SETTLE,
    *,
    what: str = "wait",
    retry_on: tuple[type[BaseException], ...] = (),
    fatal: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``probe`` until it returns something other than ``None``; return that.

    Between tries sleep as ``backoff`` says, never past ``deadline``;
    exceptions of the ``retry_on`` types count as "not yet" (and are logged),
    except those of the ``fatal`` types (subclasses of a ``retry_on`` type
    that no retry can help, such as a host key mismatch), which propagate.
    Raises :class:`Timeout` once the deadline has passed and the last try
    failed.  ``probe`` is always called at least once.
    """
    clock = _clock(deadline.clock)
    last: object = None
    for delay in backoff.delays():
        try:
            result = probe()
        except retry_on as error:
            if isinstance(error, fatal):
                raise
            log.warning("%s: %s; trying again", what, error)
            last, result = error, None
        if result is not None:
            return result
        remaining = deadline.remaining()
        if remaining <= 0:
            raise Timeout(what, last)
        clock.sleep(min(delay, remaining))
    raise AssertionError("unreachable")  # pragma: no cover


async def poll_async(
    probe: Callable[[], Awaitable[T | None]],
    deadline: Deadline,
    backoff: Backoff = SETTLE,
    *,
    what: str = "wait",
    retry_on: tuple[type[BaseException], ...] = (),
    fatal: tuple[type[BaseException], ...] = (),
) -> T:
    """:func:`poll` for coroutines: the same policy, clock and deadline; sleeps with the clock's ``asleep``."""
    clock = _clock(deadline.clock)
    last: object = None
    for delay in backoff.delays():
        try:
            result = await probe()
        except retry_on as error:
            if isinstance(error, fatal):
                raise
            last, result = error, None
        if result is not None:
            return result
        remaining = deadline.remaining()
        if remaining <= 0:
            raise Timeout(what, last)
        await clock.asleep(min(delay, remaining))
    raise AssertionError("unreachable")  # pragma: no cover
