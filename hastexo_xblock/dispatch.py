"""The one module that sends tasks to the workers: by name, with queue and time limits.

Domain code (``labs.py``, ``checks.py``, ``jobs.py``, ``operations.py``)
calls :func:`send` (or takes it as a parameter) and never imports Celery or
``tasks.py``; the tasks are addressed by their registered names, so the
request side does not even load the worker side's modules.

Time limits: a launch carries the deadline its claim wrote on the row
(``due``, ``Stack.status_deadline``), and Celery's soft and hard limits are
derived from it (:func:`timing.task_limits`): a block whose own
``launch_timeout`` is longer than the platform's is not cut short, and a
re-enqueued launch gets what is left of the same budget, not a new one.
Other tasks get limits from their settings.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import timing
from .conf import get_settings

#: Task names, as ``tasks.py`` registers them.
TASKS = frozenset({"launch", "suspend", "delete", "delete_orphan", "check", "recover", "suspender", "reaper"})

#: The setting that bounds each task when no deadline comes with it.
_LIMIT_SETTINGS = {
    "check": "check_timeout",
    "launch": "launch_timeout",
    "suspend": "suspend_task_timeout",
    "delete": "delete_task_timeout",
    "delete_orphan": "delete_task_timeout",
    "recover": "suspend_task_timeout",
}

#: Signature of :func:`send`, for parameters that default to it.
Send = Callable[..., None]


def options(task_name: str, due: datetime | None = None) -> dict[str, Any]:
    """``apply_async`` options for ``task_name``: the queue, and time limits from ``due`` or the settings."""
    if task_name not in TASKS:
        raise ValueError(f"unknown task {task_name!r}")
    settings = get_settings()
    result: dict[str, Any] = {}
    if settings["task_queue"]:
        result["queue"] = settings["task_queue"]
    if due is not None:
        result["soft_time_limit"], result["time_limit"] = timing.task_limits(due)
    elif task_name in _LIMIT_SETTINGS:
        limit = settings[_LIMIT_SETTINGS[task_name]]
        result["soft_time_limit"] = limit + timing.SOFT_LIMIT_MARGIN
        result["time_limit"] = limit + timing.RECOVERY_MARGIN
    return result


def send(task_name: str, *args: Any, due: datetime | None = None, **kwargs: Any) -> None:
    """Send task ``hastexo_xblock.<task_name>`` with ``args``/``kwargs`` (ids only, never secrets).

    ``due``: the operation's ``status_deadline``, from which the task's time
    limits are derived.  Raises whatever the broker raises when it cannot
    take the message (callers turn that into a learner message).
    """
    from celery import current_app  # the host's app (the LMS's, or the demo's)

    current_app.send_task(f"hastexo_xblock.{task_name}", args=args, kwargs=kwargs, **options(task_name, due))
