"""Periodic jobs: the suspender (and the recovery of overdue pending states).

Pure functions over the database; Celery beat (``tasks.suspender``) and the
``hastexo_suspender`` management command both call :func:`run_suspender`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone

from . import lifecycle, states
from .conf import get_settings
from .models import Stack, transition

log = logging.getLogger(__name__)


def claim_due(batch: int, now=None) -> list[int]:
    """Claim up to ``batch`` stacks whose ``suspend_by`` has passed; return their ids.

    The claim is a conditional update (status still up and still due), so two
    suspenders running at once never claim the same stack, and a keepalive
    that moved ``suspend_by`` forward in between wins over the claim.
    """
    now = now or timezone.now()
    deadline = now + timedelta(seconds=get_settings()["suspend_task_timeout"])
    candidates = list(
        Stack.objects.filter(status__in=states.UP, suspend_by__lte=now)
        .order_by("suspend_by")
        .values_list("pk", flat=True)[:batch]
    )
    return [
        pk
        for pk in candidates
        if transition(
            pk, states.SUSPEND_PENDING, allowed_from=states.UP, where={"suspend_by__lte": now}, status_deadline=deadline
        )
    ]


def recover_overdue(now=None) -> int:
    """Recover every stack whose pending status is past its deadline; return how many."""
    now = now or timezone.now()
    overdue = list(
        Stack.objects.filter(status__in=states.PENDING, status_deadline__lte=now).values_list("pk", flat=True)
    )
    for pk in overdue:
        try:
            lifecycle.recover(pk)
        except Exception:
            log.exception("could not recover stack %s", pk)
    return len(overdue)


def run_suspender(enqueue_suspend: Callable[[int], None], now=None) -> int:
    """Claim every due stack in batches of ``suspend_concurrency`` and enqueue a suspend each.

    Loops until no due stack is left (not "a handful per run"), then recovers
    overdue pending states.  Returns how many suspends were enqueued.
    """
    batch = get_settings()["suspend_concurrency"]
    total = 0
    while True:
        claimed = claim_due(batch, now)
        for pk in claimed:
            enqueue_suspend(pk)
        total += len(claimed)
        if len(claimed) < batch:
            break
    recover_overdue(now)
    if total:
        log.info("suspender: %d stack(s) claimed for suspension", total)
    return total
