"""Lab usage time: how long a learner's labs have been up, from the status history.

A lab is "up" from a ``CREATE_COMPLETE``/``RESUME_COMPLETE`` row of
:class:`~hastexo_xblock.models.StackLog` until the next row of the same
stack (or now, if it is still up).  The sum is computed by the database in
one aggregate query, over every course: the limit is per learner across the
platform.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import states
from .models import StackLog


def usage_seconds(
    *, learner: Any = None, anonymous_user_id: str = "", stack_id: int | None = None, now: datetime | None = None
) -> float:
    """Seconds the learner's labs have been up, across all courses (or one lab's, with ``stack_id``).

    The learner is the Django user when known (``learner``), else the
    anonymous id (the workbench has no users).  Returns ``0.0`` for no usage.
    """
    now = now or timezone.now()
    if stack_id is not None:
        logs = StackLog.objects.filter(stack_id=stack_id)
    elif learner is not None:
        logs = StackLog.objects.filter(learner=learner)
    elif anonymous_user_id:
        logs = StackLog.objects.filter(anonymous_user_id=anonymous_user_id)
    else:
        return 0.0
    # Log rows are appended in order, so the next row by pk is the next status change.
    next_change = (
        StackLog.objects.filter(stack=OuterRef("stack"), pk__gt=OuterRef("pk")).order_by("pk").values("created_at")[:1]
    )
    until = Coalesce(Subquery(next_change), Value(now, output_field=DateTimeField()))
    total = (
        logs.filter(status__in=states.UP)
        .annotate(up_for=ExpressionWrapper(until - F("created_at"), output_field=DurationField()))
        .aggregate(total=Sum("up_for"))["total"]
    )
    return max(0.0, total.total_seconds()) if total else 0.0
