"""The original's handler contracts, for pages and integrations that call them by name.

``get_check_status``
    In the original a call reported the learner's running check and, when
    none was running, started one: the page called it once per click and
    then polled it.  The block keeps that contract (this project's page uses
    ``check_progress`` to start and ``check_status`` to poll): a call reports
    the learner's check while it runs and once when it has finished, and
    starts a new one otherwise.  The answer has the original's shape:
    ``{"status": "CHECK_PROGRESS_PENDING"}``, ``{"status":
    "CHECK_PROGRESS_COMPLETE", "pass": N, "total": M, "errors": [hints]}`` or
    ``{"status": "ERROR", "error_msg": …}``; ``pass``/``total`` and
    ``errors`` are left out where the author chose not to show them
    (``show_feedback``, ``show_hints_on_error``: the original left hiding
    them to its page).
``launch_new_window``
    A page of its own with the learner's lab, full window (the original
    opened it in a new browser window).  See ``block.py``.

This module does not import XBlock.
"""

from __future__ import annotations

from typing import Any

from ..models import Check

PENDING = "CHECK_PROGRESS_PENDING"
COMPLETE = "CHECK_PROGRESS_COMPLETE"
ERROR = "ERROR"


def first_report(check: Check) -> bool:
    """Whether ``check`` has finished and not been reported yet (true for one caller).

    A finished check is reported once, as the original did before it
    forgot the task: a done check until its grade is recorded (the block
    records it while reporting), a failed one until this call claims it.
    """
    if check.status == Check.DONE:
        return not check.recorded
    if check.status == Check.ERROR:
        return bool(Check.objects.filter(pk=check.pk, status=Check.ERROR, recorded=False).update(recorded=True))
    return False


def original_view(view: dict[str, Any]) -> dict[str, Any]:
    """This project's check view (``checks.view``) in the original's ``get_check_status`` shape."""
    status = view.get("status")
    if status in (Check.PENDING, Check.RUNNING):
        return {"status": PENDING}
    if status == Check.DONE:
        result: dict[str, Any] = {"status": COMPLETE, "message": view.get("message", "")}
        if "pass" in view:
            result["pass"] = view["pass"]
            result["total"] = view["total"]
        if "hints" in view:
            result["errors"] = list(view["hints"])
        return result
    return {"status": ERROR, "error_msg": view.get("error_msg", "")}
