"""Settling a stack whose pending state outlived its deadline, from the provider's real state (worker side).

Requests and jobs never call this: they claim the recovery
(``liveness.claim_recovery``) and enqueue the ``recover`` task, whose worker
runs :func:`recover`.

This module does not import XBlock.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from . import states
from .conf import get_settings
from .messages import stored
from .models import Stack, transition
from .providers import get_provider
from .providers.base import ProviderError

log = logging.getLogger(__name__)


def recover(stack_id: int, token: datetime | str | None = None) -> str:
    """Settle a pending stack past its deadline from the provider's real state; return the new status.

    With ``token`` (the deadline a claim wrote, see
    ``liveness.claim_recovery``) the row is settled only if it still carries
    that deadline: a late task for a stack that moved on does nothing.
    Without it, only a row past its deadline is settled.

    No state is a trap: whatever was lost (a task, a worker, a message), the
    row ends in a state from which the learner or the jobs can go on.
    Returns the new status (or the current one if the stack moved on).
    """
    settings = get_settings()
    now = timezone.now()
    stack = Stack.objects.filter(pk=stack_id).first()
    if stack is None:
        return states.DELETE_COMPLETE
    if isinstance(token, str):
        token = datetime.fromisoformat(token)
    if stack.status not in states.PENDING:
        return stack.status
    if token is not None and stack.status_deadline != token:
        return stack.status
    if token is None and stack.status_deadline and stack.status_deadline > now:
        return stack.status
    real: str = states.DELETE_COMPLETE
    detail = ""
    if stack.provider:
        try:
            real = get_provider(stack.provider, settings["providers"]).get(stack.name).status
        except ProviderError as error:
            log.warning("recover %s: provider %s did not answer: %s", stack.name, stack.provider, error)
            real, detail = "", str(error)
    fields: dict[str, Any] = {"error_detail": detail}
    if stack.status in states.LAUNCHING:
        if real in states.UP and stack.host_key and stack.ip:
            target = states.RESUME_COMPLETE if stack.launched_at else states.CREATE_COMPLETE
            fields["suspend_by"] = now + timedelta(seconds=stack.suspend_timeout or settings["suspend_timeout"])
        else:
            target = states.LAUNCH_TIMEOUT
            fields["error_msg"] = stored("launch.timeout")
    elif stack.status in states.SUSPENDING:
        target = {
            states.SUSPEND_COMPLETE: states.SUSPEND_COMPLETE,
            states.DELETE_COMPLETE: states.DELETE_COMPLETE,
        }.get(real, states.SUSPEND_FAILED)
        if real in states.UP:
            target = states.RESUME_COMPLETE if stack.launched_at else states.CREATE_COMPLETE
    else:
        target = states.DELETE_COMPLETE if real == states.DELETE_COMPLETE else states.DELETE_FAILED
    # Same status, attempt and deadline as read above: if anything moved meanwhile, this loses.
    won = transition(
        stack_id,
        target,
        allowed_from=[stack.status],
        if_attempt=stack.attempt,
        where={"status_deadline": stack.status_deadline},
        status_deadline=None,
        heartbeat_at=None,
        phase="",
        progress=0.0 if target not in states.UP else 1.0,
        **fields,
    )
    if not won:
        return Stack.objects.values_list("status", flat=True).get(pk=stack_id)
    log.warning("recovered stack %s from %s to %s (provider says %s)", stack.name, stack.status, target, real or "?")
    return target
