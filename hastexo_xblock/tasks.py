"""Celery tasks: thin, idempotent wrappers over ``lifecycle.py`` and ``jobs.py``.

Every task takes ids (never objects or secrets), is ``acks_late`` with
``reject_on_worker_lost`` (a worker killed mid-task gets the message
redelivered, and the lifecycle continues from the row's state), and gets its
time limits and queue from ``dispatch.py`` when it is sent (the only module
that sends them; domain code never imports this one).

In the LMS these are picked up by the LMS's own Celery app
(``autodiscover_tasks``); the demo runs its own worker (``demo/celery.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready

from . import checkrun, dispatch, jobs, lifecycle, recovery
from .conf import get_settings
from .providers import get_provider

log = logging.getLogger(__name__)

_COMMON: dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name="hastexo_xblock.launch", **_COMMON)
def launch(stack_id: int, attempt: int, reset: bool = False) -> str:
    """Create or resume stack ``stack_id`` for launch ``attempt`` (see ``lifecycle.launch``)."""
    return lifecycle.launch(stack_id, attempt, reset=reset, time_limit_errors=(SoftTimeLimitExceeded,))


@shared_task(name="hastexo_xblock.suspend", **_COMMON)
def suspend(stack_id: int) -> str:
    """Suspend a claimed stack (see ``lifecycle.suspend``)."""
    return lifecycle.suspend(stack_id)


@shared_task(name="hastexo_xblock.delete", **_COMMON)
def delete(stack_id: int) -> str:
    """Delete a claimed stack (see ``lifecycle.delete``)."""
    return lifecycle.delete(stack_id)


@shared_task(name="hastexo_xblock.suspender", **_COMMON)
def suspender() -> int:
    """Periodic: claim every stack due for suspension and enqueue one suspend each."""
    return jobs.run_suspender(dispatch.send)


@shared_task(name="hastexo_xblock.reaper", **_COMMON)
def reaper() -> int:
    """Periodic: claim aged and failed labs for deletion, and delete orphans past their grace."""
    report = jobs.run_reaper(dispatch.send)
    return len(report.claimed)


@shared_task(name="hastexo_xblock.delete_orphan", **_COMMON)
def delete_orphan(provider_name: str, name: str) -> str:
    """Delete a stack no lab record owns (see ``jobs.sweep_orphans``)."""
    return lifecycle.delete_orphan(provider_name, name)


@shared_task(name="hastexo_xblock.check", **_COMMON)
def check(check_id: int) -> str:
    """Run progress check ``check_id`` on its lab (see ``checkrun.run``)."""
    try:
        return checkrun.run(check_id)
    except SoftTimeLimitExceeded:
        checkrun.interrupted(check_id)
        return "error"


@shared_task(name="hastexo_xblock.recover", **_COMMON)
def recover(stack_id: int, token: str | None = None) -> str:
    """Settle a stack past its deadline from the provider's real state (see ``recovery.recover``)."""
    return recovery.recover(stack_id, token)


@worker_ready.connect
def report_local_sandboxes(**_kwargs: Any) -> None:
    """At a worker's start, say what each local provider cannot enforce (or refuses) on this machine.

    The provider logs it (once per process) when it first looks at the
    machine; looking now puts it at the top of the worker's log rather than
    at the first learner's launch.
    """
    providers = get_settings()["providers"]
    for name, config in providers.items():
        if config.get("type") == "local":
            get_provider(name, providers).capabilities()
