"""Progress checks: the author's test scripts run on the learner's lab, and their result.

The flow:

1. the block's handler calls :func:`start` — at most one check per learner
   (per stack) is in flight; asking again while one is returns that one;
2. a worker runs :func:`run` (task ``check(check_id)``): every script over
   one SSH connection with ``remote_exec_timeout`` each and ``check_timeout``
   in all; exit status 0 passes; the standard error of a failing script is
   its hint;
3. the block polls with :func:`current`, and records the score of a finished
   check once (:func:`claim_recording`).

This module does not import XBlock: the block passes plain values in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import asyncssh
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from . import messages, remote, states
from .conf import Settings, get_settings
from .models import Check, Stack

log = logging.getLogger(__name__)

#: Characters of a failing script's standard error shown as its hint.
HINT_LIMIT = 1000
#: Seconds beyond ``check_timeout`` before a check nobody finished counts as lost.
DEADLINE_MARGIN = 60


class CheckError(Exception):
    """A check cannot be started; the message is for the learner."""


def start(
    stack: Stack,
    block_id: str,
    tests: Sequence[str],
    *,
    enqueue: Callable[..., None] | None = None,
) -> Check:
    """Start a check of ``tests`` on the learner's lab, or return the one already in flight.

    A check still pending or running for this stack (and within its
    deadline) is returned as it is when it belongs to ``block_id``; one of
    another block raises :class:`CheckError`.  Raises :class:`CheckError`
    too when there are no tests or the lab is not up.  ``enqueue(name,
    *args)`` defaults to :func:`tasks.enqueue`.
    """
    if not tests:
        raise CheckError(_("This lab has no progress checks."))
    if enqueue is None:
        from .tasks import enqueue
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
        _finish_with_error(check.pk, messages.stored("check.enqueue_failed"))
        check.refresh_from_db()
    return check


def current(stack: Stack, block_id: str, check_id: int | None) -> Check | None:
    """The block's check ``check_id`` (or its latest), with a lost one marked as failed."""
    query = Check.objects.filter(stack_id=stack.pk, block_id=block_id)
    check = (query.filter(pk=check_id) if check_id else query.order_by("-pk")).first()
    if check is not None and check.status in Check.ACTIVE and check.deadline <= timezone.now():
        log.warning("check %s on stack %s: not finished by its deadline; marked as failed", check.pk, stack.name)
        _finish_with_error(check.pk, messages.stored("check.timeout"))
        check.refresh_from_db()
    return check


def claim_recording(check: Check) -> bool:
    """Whether the caller is the one to record ``check``'s score (true once per finished check)."""
    return bool(Check.objects.filter(pk=check.pk, status=Check.DONE, recorded=False).update(recorded=True))


def _finish_with_error(check_id: int, message: str) -> bool:
    return bool(
        Check.objects.filter(pk=check_id, status__in=Check.ACTIVE).update(
            status=Check.ERROR, error_msg=message, finished_at=timezone.now()
        )
    )


def _hint(result: remote.RemoteResult, script_timeout: float) -> str:
    """The learner's hint as stored: the test's standard error, or a catalog message for a test that timed out."""
    if result.timed_out:
        return messages.stored("check.test_timed_out", seconds=round(script_timeout))
    text = result.stderr.strip()
    if len(text) > HINT_LIMIT:
        text = text[: HINT_LIMIT - 1].rstrip() + "…"
    return text


def run(check_id: int, settings: Settings | None = None) -> str:
    """Run check ``check_id`` on its stack's lab (worker side); return its final status.

    Idempotent: only a pending check is run (a redelivered task finds it
    running or finished and does nothing).  Every failure ends the check
    with a message for the learner; nothing is raised for a lab fault.
    """
    settings = settings or get_settings()
    if not Check.objects.filter(pk=check_id, status=Check.PENDING).update(status=Check.RUNNING):
        check = Check.objects.filter(pk=check_id).first()
        return check.status if check else Check.ERROR
    check = Check.objects.select_related("stack").get(pk=check_id)
    stack = check.stack
    if stack.status not in states.UP or not (stack.ip and stack.private_key and stack.host_key):
        _finish_with_error(check_id, messages.stored("check.lab_not_running"))
        return Check.ERROR
    login = remote.SSHTarget.from_stack(stack)
    script_timeout = float(settings["remote_exec_timeout"])
    try:
        results = remote.run_sync(
            remote.run_scripts(
                login, check.tests, script_timeout=script_timeout, total_timeout=float(settings["check_timeout"])
            )
        )
    except (TimeoutError, OSError, asyncssh.Error) as error:
        log.warning("check %s on stack %s: the lab could not be reached: %s", check_id, stack.name, error)
        _finish_with_error(check_id, messages.stored("check.unreachable"))
        return Check.ERROR
    outcome = [
        {"passed": r.exit_status == 0 and not r.timed_out, "hint": _hint(r, script_timeout), "timed_out": r.timed_out}
        for r in results
    ]
    passed = sum(1 for item in outcome if item["passed"])
    finished = Check.objects.filter(pk=check_id, status=Check.RUNNING).update(
        status=Check.DONE, results=outcome, passed=passed, total=len(outcome), finished_at=timezone.now()
    )
    log.info("check %s on stack %s: %d of %d passed", check_id, stack.name, passed, len(outcome))
    return Check.DONE if finished else Check.objects.get(pk=check_id).status


def interrupted(check_id: int) -> None:
    """End a check whose task hit its time limit (the worker calls this)."""
    _finish_with_error(check_id, messages.stored("check.timeout"))


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
