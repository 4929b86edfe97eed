"""Progress checks, the worker side: run the author's test scripts on the learner's lab over SSH.

The request side (starting a check, reading it, recording its score) is
``checks.py``; this module imports it, never the other way round.

This module does not import XBlock.
"""

from __future__ import annotations

import logging

import asyncssh
from django.utils import timezone

from . import messages, remote, states
from .checks import finish_with_error
from .conf import Settings, get_settings
from .models import Check

log = logging.getLogger(__name__)

#: Characters of a failing script's standard error shown as its hint.
HINT_LIMIT = 1000


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
        finish_with_error(check_id, messages.stored("check.lab_not_running"))
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
        finish_with_error(check_id, messages.stored("check.unreachable"))
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
    finish_with_error(check_id, messages.stored("check.timeout"))
