"""Stack names: one per (course run, anonymous learner id), safe for Heat.

Heat stack names must match ``[a-zA-Z][a-zA-Z0-9_.-]*`` (at most 255
characters); the local provider uses the name as a directory name.
:data:`NAME_PATTERN` is that rule, the one every part checks names with (the
Heat and local providers, the adoption of the original's stacks).  Our names
start with :data:`PREFIX` so that orphan sweeps can tell our stacks from
others on a shared project.
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "hx"
MAX_LENGTH = 64
WORKBENCH_COURSE = "workbench"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: A name any provider accepts: Heat's rule.  ``\Z``, not ``$``: ``$`` also matches before a final newline.
NAME_PATTERN = re.compile(r"\A[A-Za-z][A-Za-z0-9_.-]{0,254}\Z")


def _slug(text: str) -> str:
    # No ".." anywhere: the local provider uses names as directory names.
    return re.sub(r"\.{2,}", ".", _UNSAFE.sub("-", text)).strip("-.") or "x"


def stack_name(course_id: str | None, learner_id: str) -> str:
    """Return the stack name for ``learner_id`` in ``course_id``.

    ``course_id`` may be ``None`` (the XBlock workbench has no course key).
    The result is deterministic, at most :data:`MAX_LENGTH` characters, and
    keeps a hash of the full input when it has to shorten, so two different
    pairs never share a name.
    """
    if not learner_id:
        raise ValueError("a stack name needs a learner id")
    course = course_id or WORKBENCH_COURSE
    # "course-v1:Org+Course+Run" → "Org+Course+Run" → "Org-Course-Run".
    course = course.split(":", 1)[1] if course.startswith("course-v1:") else course
    name = f"{PREFIX}-{_slug(course)}-{_slug(learner_id)}"
    if len(name) > MAX_LENGTH:
        digest = hashlib.sha256(f"{course_id}\0{learner_id}".encode()).hexdigest()[:12]
        name = f"{name[: MAX_LENGTH - 13].rstrip('-.')}-{digest}"
    return name


def is_ours(name: str) -> bool:
    """Whether ``name`` follows our naming scheme (for orphan sweeps)."""
    return name.startswith(f"{PREFIX}-") and valid(name)


def valid(name: object) -> bool:
    """Whether ``name`` is a stack name every provider accepts (:data:`NAME_PATTERN`)."""
    return isinstance(name, str) and bool(NAME_PATTERN.match(name))
