"""What an operator may do to a learner's lab by hand: suspend, resume, delete.

Each action claims the stack with the same atomic transition the jobs and
the learner's requests use, then enqueues the same Celery task; a stack that
is busy (or already in the wanted state) is left alone and reported as
skipped.  Nothing here talks to a provider: the workers do, as always.
Used by the Django admin (``admin.py``); usable from a shell as well.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import F
from django.utils import timezone

from . import dispatch, states, timing
from .conf import get_settings
from .models import Stack, transition

log = logging.getLogger(__name__)

Enqueue = Callable[..., None]


@dataclass
class Outcome:
    """Which stacks an action was started for, and which it skipped (busy or not applicable)."""

    started: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _claim_suspend(stack: Stack, settings: Any) -> tuple | None:
    deadline = timezone.now() + timedelta(seconds=settings["suspend_task_timeout"])
    if transition(stack.pk, states.SUSPEND_PENDING, allowed_from=states.UP, status_deadline=deadline):
        return ("suspend", stack.pk)
    return None


def _claim_resume(stack: Stack, settings: Any) -> tuple | None:
    timeout = (stack.spec or {}).get("launch_timeout") or settings["launch_timeout"]
    won = transition(
        stack.pk,
        states.LAUNCH_PENDING,
        allowed_from=states.SUSPENDED,
        attempt=F("attempt") + 1,
        phase=states.PHASE_QUEUED,
        progress=states.PHASE_PROGRESS[states.PHASE_QUEUED],
        status_deadline=timezone.now() + timedelta(seconds=timeout + timing.RECOVERY_MARGIN),
    )
    if not won:
        return None
    row = Stack.objects.values("attempt", "status_deadline").get(pk=stack.pk)
    # The deadline travels with the task: Celery's limits derive from it (see dispatch.py).
    return ("launch", stack.pk, row["attempt"], {"due": row["status_deadline"]})


def _claim_delete(stack: Stack, settings: Any) -> tuple | None:
    deadline = timezone.now() + timedelta(seconds=settings["delete_task_timeout"])
    allowed = states.UP | states.SUSPENDED | states.FAILED
    if transition(stack.pk, states.DELETE_PENDING, allowed_from=allowed, status_deadline=deadline):
        return ("delete", stack.pk)
    return None


_CLAIMS = {"suspend": _claim_suspend, "resume": _claim_resume, "delete": _claim_delete}


def apply(action: str, stacks: Iterable[Stack], enqueue: Enqueue | None = None) -> Outcome:
    """Start ``action`` (``suspend``, ``resume`` or ``delete``) for each of ``stacks``.

    A stack whose claim fails (it is busy, or the action does not apply to
    its status) is skipped.  If the task cannot be enqueued, the claim is
    undone as the learner's own request would (``LAUNCH_ERROR`` for a
    resume; a suspend or delete is settled later by the jobs' recovery).
    """
    claim = _CLAIMS[action]
    send = enqueue or dispatch.send
    settings = get_settings()
    outcome = Outcome()
    for stack in stacks:
        task = claim(stack, settings)
        if task is None:
            outcome.skipped.append(stack.name)
            continue
        options = task[-1] if isinstance(task[-1], dict) else {}
        try:
            send(*(task[:-1] if options else task), **options)
        except Exception:
            log.exception("stack %s: could not enqueue %s", stack.name, task[0])
            if action == "resume":
                transition(stack.pk, states.LAUNCH_ERROR, allowed_from=[states.LAUNCH_PENDING], status_deadline=None)
            outcome.skipped.append(stack.name)
            continue
        log.info("stack %s: %s requested by an operator", stack.name, action)
        outcome.started.append(stack.name)
    return outcome
