"""Progress checks: the author's test scripts run on the learner's lab, and their result.

The flow:

1. the block's handler calls :func:`start` — at most one check per learner
   (per stack) is in flight; asking again while one is returns that one;
2. a worker runs ``checkrun.run`` (task ``check(check_id)``): every script
   over one SSH connection with ``remote_exec_timeout`` each and
   ``check_timeout`` in all; exit status 0 passes; the standard error of a
   failing script is its hint;
3. the block polls with :func:`current`, and records the score of a finished
   check once (:func:`claim_recording`).

This module is the request side (it never opens SSH and never imports the
worker side); ``checkrun.py`` is the worker side.  It does not import XBlock:
the block passes plain values in.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from . import dispatch, messages, states, timing
from .conf import get_settings
from .models import Check, Stack

log = logging.getLogger(__name__)

#: Seconds beyond ``check_timeout`` before a check nobody finished counts as lost.
DEADLINE_MARGIN = timing.RECOVERY_MARGIN


class CheckError(Exception):
    """A check cannot be started; the message is for the learner."""


def start(
    stack: Stack,
    block_id: str,
    tests: Sequence[str],
    *,
    enqueue: dispatch.Send | None = None,
) -> Check:
    """Start a check of ``tests`` on the learner's lab, or return the one already in flight.

    A check still pending or running for this stack (and within its
    deadline) is returned as it is when it belongs to ``block_id``; one of
    another block raises :class:`CheckError`.  Raises :class:`CheckError`
    too when there are no tests or the lab is not up.  ``enqueue(name,
    *args)`` defaults to :func:`dispatch.send`.
    """
    if not tests:
        raise CheckError(_("This lab has no progress checks."))
    enqueue = enqueue or dispatch.send
    settings = get_settings()
    now = timezone.now()
    with transaction.atomic():
        # Writing the stack row first serialises concurrent starts for this
        # learner on every database (a row lock; SQLite's write lock).
        if not Stack.objects.filter(pk=stack.pk, status__in=states.UP).update(updated_at=now):
            raise CheckError(_("Your lab is not running. Wait until it is ready, then check again."))
        active = (
            Check.objects.filter(stack_id=stack.pk, status__in=Check.ACTIVE, deadline__gt=now).order_by("-pk").first()
        )
        if active is not None:
            if active.block_id != block_id:
                raise CheckError(_("Another progress check is running in your lab. Please wait for it to finish."))
            return active
        check = Check.objects.create(
            stack_id=stack.pk,
            block_id=block_id,
            tests=list(tests),
            total=len(tests),
            deadline=now + timedelta(seconds=settings["check_timeout"] + DEADLINE_MARGIN),
        )
    try:
        enqueue("check", check.pk)
    except Exception:
        log.exception("stack %s: could not enqueue check %s", stack.name, check.pk)
        finish_with_error(check.pk, messages.stored("check.enqueue_failed"))
        check.refresh_from_db()
    return check


def current(stack: Stack, block_id: str, check_id: int | None) -> Check | None:
    """The block's check ``check_id`` (or its latest), with a lost one marked as failed."""
    query = Check.objects.filter(stack_id=stack.pk, block_id=block_id)
    check = (query.filter(pk=check_id) if check_id else query.order_by("-pk")).first()
    if check is not None and check.status in Check.ACTIVE and check.deadline <= timezone.now():
        log.warning("check %s on stack %s: not finished by its deadline; marked as failed", check.pk, stack.name)
        finish_with_error(check.pk, messages.stored("check.timeout"))
        check.refresh_from_db()
    return check


def claim_recording(check: Check) -> bool:
    """Whether the caller is the one to record ``check``'s score (true once per finished check)."""
    return bool(Check.objects.filter(pk=check.pk, status=Check.DONE, recorded=False).update(recorded=True))


def finish_with_error(check_id: int, message: str) -> bool:
    return bool(
        Check.objects.filter(pk=check_id, status__in=Check.ACTIVE).update(
            status=Check.ERROR, error_msg=message, finished_at=timezone.now()
        )
    )


def view(check: Check | None, *, show_feedback: bool, show_hints_on_error: bool) -> dict[str, Any]:
    """The JSON the block returns for ``check`` (no scripts, no addresses).

    ``status`` is ``none``, ``pending``, ``running``, ``done`` or ``error``.
    When done: ``message`` ("You completed N of M tasks") and, as the author
    chose, ``pass``/``total`` (``show_feedback``) and the failing tests'
    ``hints`` (``show_hints_on_error``).  Hints are plain text for the page
    to insert as text.
    """
    if check is None:
        return {"status": "none"}
    data: dict[str, Any] = {"status": check.status, "id": check.pk}
    if check.status == Check.ERROR:
        data["error_msg"] = messages.render(check.error_msg)
    elif check.status == Check.DONE:
        if show_feedback:
            data["pass"] = check.passed
            data["total"] = check.total
            data["message"] = ngettext(
                "You completed %(passed)d of %(total)d task.",
                "You completed %(passed)d of %(total)d tasks.",
                check.total,
            ) % {"passed": check.passed, "total": check.total}
            if show_hints_on_error:
                # A timed-out test's hint is our message, shown in the learner's language; others are stderr.
                data["hints"] = [
                    messages.render(r["hint"]) if r.get("timed_out") else r["hint"]
                    for r in check.results
                    if not r["passed"] and r["hint"]
                ]
        else:
            data["message"] = _("Your progress has been checked.")
    return data
