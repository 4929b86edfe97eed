"""The status vocabulary and its transition table."""

import pytest

from hastexo_xblock import states


def test_every_pending_state_is_recoverable_and_every_state_has_a_way_out():
    for status in states.ALL:
        assert any(states.can_transition(status, other) for other in states.ALL if other != status), status
    assert states.PENDING == states.LAUNCHING | states.SUSPENDING | states.DELETING


def test_launchable_states_can_start_a_launch():
    for status in states.LAUNCHABLE:
        states.check_transition(status, states.LAUNCH_PENDING)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (states.LAUNCH_PENDING, states.LAUNCH_PENDING),
        (states.SUSPEND_COMPLETE, states.RESUME_COMPLETE),  # must go through a launch
        (states.DELETE_COMPLETE, states.CREATE_COMPLETE),
        (states.SUSPEND_PENDING, states.LAUNCH_PENDING),  # a launch waits for the suspend to settle
        (states.CREATE_COMPLETE, "NOT_A_STATUS"),
    ],
)
def test_transitions_outside_the_table_are_refused(old, new):
    if old == new:
        assert states.can_transition(old, new)
        return
    with pytest.raises(states.InvalidTransition, match=f"{old} to {new}"):
        states.check_transition(old, new)


def test_phases_progress_in_order():
    values = [states.PHASE_PROGRESS[p] for p in states.PHASES]
    assert values == sorted(values) and values[-1] == 1.0
