"""The status vocabulary of a lab stack and the transitions allowed between them.

Names follow OpenStack Heat's ``ACTION_STATUS`` form so that a provider's own
status can be stored as it is; ``LAUNCH_*``, ``SUSPEND_PENDING`` and
``DELETE_PENDING`` are ours and mean "a task has been enqueued".

This module is pure: no Django, no XBlock.
"""

from __future__ import annotations

# Heat's vocabulary (the subset a lab goes through).
CREATE_IN_PROGRESS = "CREATE_IN_PROGRESS"
CREATE_COMPLETE = "CREATE_COMPLETE"
CREATE_FAILED = "CREATE_FAILED"
RESUME_IN_PROGRESS = "RESUME_IN_PROGRESS"
RESUME_COMPLETE = "RESUME_COMPLETE"
RESUME_FAILED = "RESUME_FAILED"
SUSPEND_IN_PROGRESS = "SUSPEND_IN_PROGRESS"
SUSPEND_COMPLETE = "SUSPEND_COMPLETE"
SUSPEND_FAILED = "SUSPEND_FAILED"
DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"
DELETE_COMPLETE = "DELETE_COMPLETE"
DELETE_FAILED = "DELETE_FAILED"

# Ours.
LAUNCH_PENDING = "LAUNCH_PENDING"
LAUNCH_ERROR = "LAUNCH_ERROR"
LAUNCH_TIMEOUT = "LAUNCH_TIMEOUT"
SUSPEND_PENDING = "SUSPEND_PENDING"
DELETE_PENDING = "DELETE_PENDING"

#: A fresh row starts here: nothing exists on any provider.
INITIAL = DELETE_COMPLETE

#: The lab is running and reachable.
UP = frozenset({CREATE_COMPLETE, RESUME_COMPLETE})

#: A launch (create or resume) is under way.
LAUNCHING = frozenset({LAUNCH_PENDING, CREATE_IN_PROGRESS, RESUME_IN_PROGRESS})

#: Suspend or delete is under way.
SUSPENDING = frozenset({SUSPEND_PENDING, SUSPEND_IN_PROGRESS})
DELETING = frozenset({DELETE_PENDING, DELETE_IN_PROGRESS})

#: Every state that has a deadline after which it is recovered from the provider.
PENDING = LAUNCHING | SUSPENDING | DELETING

#: The lab is paused and can be resumed as it is.
SUSPENDED = frozenset({SUSPEND_COMPLETE, SUSPEND_FAILED, RESUME_FAILED})

#: The last launch failed; a new request may try again (create anew or resume).
FAILED = frozenset({CREATE_FAILED, LAUNCH_ERROR, LAUNCH_TIMEOUT, DELETE_FAILED})

#: Nothing on the provider (or it must be created again).
ABSENT = frozenset({DELETE_COMPLETE})

#: States from which a status request with ``initialize`` starts a launch.
LAUNCHABLE = SUSPENDED | FAILED | ABSENT

ALL = UP | LAUNCHING | SUSPENDING | DELETING | SUSPENDED | FAILED | ABSENT

# Allowed transitions.  Writing through ``check_transition`` keeps a bug (or a
# stale, redelivered task) from moving a stack somewhere it cannot be.
_ALLOWED: dict[str, frozenset[str]] = {
    DELETE_COMPLETE: frozenset({LAUNCH_PENDING}),
    LAUNCH_PENDING: frozenset(
        {CREATE_IN_PROGRESS, RESUME_IN_PROGRESS, LAUNCH_ERROR, LAUNCH_TIMEOUT} | UP | FAILED | SUSPENDED
    ),
    CREATE_IN_PROGRESS: frozenset(UP | {CREATE_FAILED, LAUNCH_ERROR, LAUNCH_TIMEOUT, DELETE_COMPLETE}),
    RESUME_IN_PROGRESS: frozenset(UP | {RESUME_FAILED, LAUNCH_ERROR, LAUNCH_TIMEOUT, SUSPEND_COMPLETE}),
    CREATE_COMPLETE: frozenset({SUSPEND_PENDING, DELETE_PENDING, LAUNCH_PENDING}),
    RESUME_COMPLETE: frozenset({SUSPEND_PENDING, DELETE_PENDING, LAUNCH_PENDING}),
    SUSPEND_PENDING: frozenset({SUSPEND_IN_PROGRESS, SUSPEND_COMPLETE, SUSPEND_FAILED, DELETE_COMPLETE} | UP),
    SUSPEND_IN_PROGRESS: frozenset({SUSPEND_COMPLETE, SUSPEND_FAILED, DELETE_COMPLETE} | UP),
    SUSPEND_COMPLETE: frozenset({LAUNCH_PENDING, DELETE_PENDING}),
    SUSPEND_FAILED: frozenset({LAUNCH_PENDING, DELETE_PENDING, SUSPEND_PENDING}),
    RESUME_FAILED: frozenset({LAUNCH_PENDING, DELETE_PENDING, SUSPEND_PENDING}),
    DELETE_PENDING: frozenset({DELETE_IN_PROGRESS, DELETE_COMPLETE, DELETE_FAILED} | UP | SUSPENDED),
    DELETE_IN_PROGRESS: frozenset({DELETE_COMPLETE, DELETE_FAILED}),
    DELETE_FAILED: frozenset({LAUNCH_PENDING, DELETE_PENDING}),
    CREATE_FAILED: frozenset({LAUNCH_PENDING, DELETE_PENDING}),
    LAUNCH_ERROR: frozenset({LAUNCH_PENDING, DELETE_PENDING}),
    LAUNCH_TIMEOUT: frozenset({LAUNCH_PENDING, DELETE_PENDING}),
}


class InvalidTransition(ValueError):
    """Raised when a status change is not in the transition table."""

    def __init__(self, old: str, new: str) -> None:
        super().__init__(f"stack status cannot go from {old} to {new}")
        self.old = old
        self.new = new


def can_transition(old: str, new: str) -> bool:
    """Return whether ``old`` → ``new`` is allowed (staying put always is)."""
    if new not in ALL:
        return False
    return old == new or new in _ALLOWED.get(old, frozenset())


def check_transition(old: str, new: str) -> None:
    """Raise :class:`InvalidTransition` unless ``old`` → ``new`` is allowed."""
    if not can_transition(old, new):
        raise InvalidTransition(old, new)


# Launch phases: what the learner's progress bar shows, in order.
PHASE_QUEUED = "queued"
PHASE_PROVIDER = "provider"  # choosing a provider / creating or resuming on it
PHASE_BOOTING = "booting"  # the provider reports progress of its own
PHASE_SSH = "ssh"  # waiting for the lab's SSH server to answer
PHASE_HOOK = "hook"  # running the resume hook
PHASE_READY = "ready"

PHASES = (PHASE_QUEUED, PHASE_PROVIDER, PHASE_BOOTING, PHASE_SSH, PHASE_HOOK, PHASE_READY)

#: Where each phase starts on the 0..1 progress bar.
PHASE_PROGRESS = {
    PHASE_QUEUED: 0.05,
    PHASE_PROVIDER: 0.15,
    PHASE_BOOTING: 0.25,
    PHASE_SSH: 0.80,
    PHASE_HOOK: 0.92,
    PHASE_READY: 1.0,
}
