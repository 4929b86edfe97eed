"""Learner state the original wrote, read by this block: the check reference and the score.

The original kept, per learner and block (``Scope.user_state``):

``check_id``
    The Celery task id (a UUID string) of the learner's running progress
    check, ``""`` when none ran.  This project keeps the integer id of a
    :class:`~hastexo_xblock.models.Check` row in the same field, so
    :class:`CheckRef` reads both: a whole number is ours, any other text is
    the original's task id.  That task died with the original's workers, so
    the learner is told once that the check was interrupted, and may start
    another one.
``score``
    ``{"raw_earned": passed, "raw_possible": tests}`` of the latest check
    (or ``null``).  :func:`weighted` reads it on this project's scale (see
    ``block.py``: ``weight`` is the maximum), so a score the original stored
    and one stored here give the same grade.
``check_timestamp``, ``check_status``, ``stack_name``, ``stack_run``, ``stack_provider``
    Not fields here; the runtime ignores stored values of fields a block
    does not declare.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from xblock.fields import Field

#: Shown once to a learner whose check was running under the original when the platform switched.
INTERRUPTED = gettext_noop(
    "Your last progress check was still running when this course's lab software was upgraded, "
    "and its result was lost. Please check your progress again."
)


def check_ref(value: Any) -> int | str | None:
    """A stored ``check_id``: ``int`` (ours), ``str`` (the original's Celery task id) or ``None``."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    return text


def is_original_check(value: Any) -> bool:
    """Whether ``value`` (a ``check_id``) refers to a check the original started."""
    return isinstance(check_ref(value), str)


def interrupted_check() -> dict[str, Any]:
    """The check view (``checks.view`` shape) for a check the original left running."""
    return {"status": "error", "error_msg": _(INTERRUPTED), "interrupted": True}


class CheckRef(Field):
    """``check_id`` as stored by either block: a :class:`Check` id, or the original's task id (text)."""

    _default = None

    def from_json(self, value: Any) -> int | str | None:
        return check_ref(value)

    def to_json(self, value: Any) -> int | str | None:
        return check_ref(value)


def weighted(stored: Any, weight: float) -> tuple[float, float] | None:
    """A stored ``score`` as ``(earned, possible)`` with ``weight`` as the maximum; ``None`` if there is none.

    The ratio is what counts: the original stored tests passed out of
    tests, this block stores points out of ``weight``.  A stored score with
    nothing possible is ``(0, 0)``.
    """
    if not isinstance(stored, dict) or "raw_earned" not in stored or "raw_possible" not in stored:
        return None
    try:
        earned, possible = float(stored["raw_earned"]), float(stored["raw_possible"])
    except (TypeError, ValueError):
        return None
    if possible <= 0 or weight <= 0:
        return 0.0, 0.0
    return min(earned, possible) / possible * weight, float(weight)
