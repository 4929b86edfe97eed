"""Every edx-platform import, in one place, with workbench fallbacks.

Tests patch this module as a whole.  Nothing here is imported at module load
time from edx-platform: each function imports what it needs, so the block,
the workers and the gateway run in the XBlock workbench and in the LMS alike.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

log = logging.getLogger(__name__)


class CourseFileNotFound(LookupError):
    """A file the author named (template, environment, hook) does not exist."""


def course_id(block: Any) -> str | None:
    """The block's course run key as a string, or ``None`` outside a course (workbench)."""
    usage_id = getattr(block.scope_ids, "usage_id", None)
    context_key = getattr(usage_id, "context_key", None) or getattr(usage_id, "course_key", None)
    return str(context_key) if context_key is not None else None


def in_studio(block: Any) -> bool:
    """Whether the block runs in Studio (or a content library): the platform's runtimes say ``is_author_mode``."""
    return bool(getattr(block.runtime, "is_author_mode", False))


def _current_user(block: Any) -> Any:
    service = block.runtime.service(block, "user")
    return service.get_current_user() if service is not None else None


def anonymous_user_id(block: Any) -> str:
    """The learner's anonymous id in this course (stable, not their username).

    In the LMS the user service provides it.  The workbench gives every
    student the same fixed anonymous id, so there it is derived from the
    ``?student=`` id the workbench runs the block as.
    """
    user = _current_user(block)
    opt_attrs = getattr(user, "opt_attrs", {}) or {}
    anon = opt_attrs.get("edx-platform.anonymous_user_id")
    if anon:
        return str(anon)
    student = opt_attrs.get("xblock-workbench.user_id") or block.scope_ids.user_id
    if student is None:
        raise LookupError("no learner: the block is not bound to a user")
    return "wb" + hashlib.sha256(str(student).encode()).hexdigest()[:20]


def django_user(block: Any) -> Any:
    """The Django ``User`` of the current learner, or ``None`` (workbench)."""
    user = _current_user(block)
    user_id = (getattr(user, "opt_attrs", {}) or {}).get("edx-platform.user_id")
    if user_id is None:
        return None
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(pk=user_id).first()


def _request_user() -> Any:
    """The Django user of the current request (edx-platform keeps it with ``crum``), or ``None``."""
    try:
        from crum import get_current_user
    except ImportError:
        return None
    return get_current_user()


def acting_user_id(block: Any) -> str:
    """Who is acting: the learner, or the staff member viewing the course as that learner.

    When staff use "View this course as" a specific learner, edx-platform
    runs the block as the learner (so they get the learner's lab through the
    same flow) and keeps the staff user as ``request.user.real_user``; this
    returns ``"<staff> as <learner>"`` then, for the ticket and the logs.
    """
    user = _current_user(block)
    opt_attrs = getattr(user, "opt_attrs", {}) or {}
    learner = str(
        opt_attrs.get("edx-platform.username")
        or opt_attrs.get("xblock-workbench.user_id")
        or block.scope_ids.user_id
        or ""
    )
    request_user = _request_user()
    real_user = getattr(request_user, "real_user", None)
    if real_user is not None and real_user is not request_user:
        staff = getattr(real_user, "username", "") or str(getattr(real_user, "pk", ""))
        if staff and staff != learner:
            return f"{staff} as {learner}"
    return learner


def read_course_file(course: str | None, path: str, template_dir: str | None) -> str:
    """Return the text of ``path``, an author's file (template, environment, hook).

    In the LMS it comes from the course's content store (``/static/…``); in
    the workbench and the demo from the ``template_dir`` setting.  Raises
    :class:`CourseFileNotFound` naming the path.
    """
    if not path:
        raise CourseFileNotFound("no file name given")
    if course is not None:
        try:
            from opaque_keys.edx.keys import CourseKey
            from xmodule.contentstore.content import StaticContent
            from xmodule.contentstore.django import contentstore
            from xmodule.exceptions import NotFoundError
        except ImportError:
            log.debug("edx-platform is not installed; reading %s from template_dir", path)
        else:
            location = StaticContent.compute_location(CourseKey.from_string(course), path)
            try:
                return contentstore().find(location).data.decode("utf-8")
            except NotFoundError:
                raise CourseFileNotFound(f"{path} is not in the course's files") from None
    if not template_dir:
        raise CourseFileNotFound(f"{path}: no course content store and no template_dir setting")
    root = os.path.realpath(template_dir)
    full = os.path.realpath(os.path.join(root, path.lstrip("/")))
    if os.path.commonpath([root, full]) != root:
        raise CourseFileNotFound(f"{path} is outside the template directory")
    try:
        with open(full, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise CourseFileNotFound(f"{path} not found in the template directory") from None
