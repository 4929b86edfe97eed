"""``plugin_settings`` for the LMS and Studio (common and production settings).

Called by edx-django-utils' ``add_plugins`` with the settings module while
it is being read, after the platform's own values (and, in production, after
the operator's YAML/Tutor settings) are in place.
"""

from __future__ import annotations

from typing import Any

from ..conf import beat_schedule


def plugin_settings(settings: Any) -> None:
    """Add the suspender and the reaper to ``CELERYBEAT_SCHEDULE`` (for platforms that run beat).

    The LMS's and Studio's Celery app reads Django settings without a
    namespace (``config_from_object("django.conf:settings")``), that is, by
    Celery's old setting names, hence ``CELERYBEAT_SCHEDULE``.

    The entries follow ``XBLOCK_SETTINGS["hastexo"]`` (intervals, ``task_queue``)
    as configured at this point.  An operator's own entry of the same name
    wins, and platforms without beat run the management commands instead
    (``hastexo_suspender --loop``, ``hastexo_reaper --loop``); both ways are
    safe together, because every claim is an atomic update.
    """
    raw = (getattr(settings, "XBLOCK_SETTINGS", None) or {}).get("hastexo") or {}
    schedule = getattr(settings, "CELERYBEAT_SCHEDULE", None)
    if schedule is None:
        schedule = {}
        settings.CELERYBEAT_SCHEDULE = schedule
    for name, entry in beat_schedule(raw).items():
        schedule.setdefault(name, entry)
