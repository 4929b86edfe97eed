"""Telling a dead operation from a slow one, without asking a provider.

Worker side: :func:`heartbeat` writes ``Stack.heartbeat_at`` while a launch
(create or resume) runs, every ``heartbeat_interval`` seconds, from a thread
of its own (a provider call or an SSH wait may block the task's thread for
long).

Request and job side (database only, never a provider): a launching stack
whose heartbeat is older than ``heartbeat_timeout`` has lost its worker, and
:func:`claim_relaunch` hands it to a new launch attempt; a pending stack past
its ``status_deadline`` is claimed for a recovery task with
:func:`claim_recovery`.  Both claims are conditional updates, so of many
requests and jobs that see the same dead row exactly one re-enqueues it.

A relaunch is idempotent by construction: the attempt number moves on (a
late or redelivered task of the old attempt finds itself stale and does
nothing), and the new attempt looks at the provider before it creates
anything (``stackops.create_once``), so no stack is made twice.

This module does not import XBlock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import F
from django.utils import timezone

from . import states
from .models import Stack

log = logging.getLogger(__name__)

#: After claiming a recovery, how long before another request may claim it again (the task was lost).
RECOVERY_RETRY = 60


def beat(stack_id: int, attempt: int) -> bool:
    """Record that launch ``attempt`` of ``stack_id`` is alive; false once the row moved on."""
    return bool(
        Stack.objects.filter(pk=stack_id, attempt=attempt, status__in=states.LAUNCHING).update(
            heartbeat_at=timezone.now()
        )
    )


@contextlib.contextmanager
def heartbeat(stack_id: int, attempt: int, interval: float) -> Iterator[None]:
    """Beat at once, then every ``interval`` seconds until the block exits (or the row moves on)."""
    beat(stack_id, attempt)
    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.wait(interval):
                if not beat(stack_id, attempt):
                    return
        except Exception:  # a database hiccup must not kill the launch; the next beat may work
            log.exception("heartbeat of stack %s failed", stack_id)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=run, name=f"hastexo-heartbeat-{stack_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def launch_is_dead(stack: Stack, timeout: float, now: datetime | None = None) -> bool:
    """Whether ``stack``'s launch lost its worker: launching, with a heartbeat older than ``timeout`` seconds.

    A launch still queued (no heartbeat yet) is not dead: it waits for a
    worker, and only its deadline ends it.
    """
    now = now or timezone.now()
    return (
        stack.status in states.LAUNCHING
        and stack.heartbeat_at is not None
        and stack.heartbeat_at < now - timedelta(seconds=timeout)
    )


def claim_relaunch(stack: Stack) -> int | None:
    """Hand a dead launch to a new attempt; return it, or ``None`` when another caller (or the worker) won.

    The row keeps its status, provider and deadline (the new attempt
    continues the same operation within the same budget); the heartbeat is
    cleared, so the new attempt counts as queued until a worker takes it.
    """
    won = Stack.objects.filter(
        pk=stack.pk, attempt=stack.attempt, status__in=states.LAUNCHING, heartbeat_at=stack.heartbeat_at
    ).update(attempt=F("attempt") + 1, heartbeat_at=None)
    if not won:
        return None
    log.warning(
        "stack %s: launch %d lost its worker (last heartbeat %s); relaunching as attempt %d",
        stack.name,
        stack.attempt,
        stack.heartbeat_at.isoformat() if stack.heartbeat_at else "never",
        stack.attempt + 1,
    )
    return stack.attempt + 1


def is_overdue(stack: Stack, now: datetime | None = None) -> bool:
    """Whether ``stack`` is pending past its deadline (its task, worker or message was lost)."""
    now = now or timezone.now()
    return stack.status in states.PENDING and stack.status_deadline is not None and stack.status_deadline <= now


def claim_recovery(stack: Stack, now: datetime | None = None) -> datetime | None:
    """Claim the recovery of an overdue ``stack``; return the claim's token, or ``None`` if another won.

    The deadline is moved :data:`RECOVERY_RETRY` seconds on (so requests in
    the meantime do not enqueue again, and a lost recovery task is retried
    then); the new deadline is the token the recovery task must find on the
    row to act (``recovery.recover``).
    """
    now = now or timezone.now()
    token = now.replace(microsecond=0) + timedelta(seconds=RECOVERY_RETRY)
    won = Stack.objects.filter(
        pk=stack.pk, status=stack.status, attempt=stack.attempt, status_deadline=stack.status_deadline
    ).update(status_deadline=token)
    return token if won else None
