"""Learner state and grades written by the original load here, on the same scale.

The fixture (``state/learner_state.yaml``) holds the original's user state
for three learners of one block: a check pending at the switch, a learner
checked before it, one who never checked.  Grades are compared the way the
LMS computes them (``weighted_score`` in edx-platform's
``lms/djangoapps/grades/scores.py``: raw earned × weight / raw possible,
with ``weight`` as the points possible).
"""

from __future__ import annotations

import os

import pytest
import yaml

from hastexo_xblock.legacy import state as original_state

from ..test_block import call
from ..test_checks import RESULTS, TEST_NOTES, TEST_SCRIPT, finish, grades, lab_xml, recording, up_block

pytestmark = [pytest.mark.django_db(transaction=True)]

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "state", "learner_state.yaml"), encoding="utf-8") as handle:
    FIXTURE = yaml.safe_load(handle)
LEARNERS = {entry["id"]: entry for entry in FIXTURE["learners"]}
WEIGHT = FIXTURE["block"]["weight"]
THREE_TESTS = (TEST_NOTES, TEST_SCRIPT, "exit 0\n")


def lms_weighted(raw_earned, raw_possible, weight):
    """What the LMS makes of a published (or persisted) raw score: (earned, possible) in course points."""
    if weight is None or raw_possible == 0:
        return raw_earned, raw_possible
    return float(raw_earned) * weight / raw_possible, float(weight)


def block_for(learner_id: str, *tests: str):
    """The learner's block, with the state the original stored loaded into its field data."""
    block, stack = up_block(f"legacy-{learner_id}", lab_xml(*tests or THREE_TESTS, extra=f'weight="{WEIGHT}"'))
    for name, value in LEARNERS[learner_id]["state"].items():
        if name in block.fields:
            block._field_data.set(block, name, value)  # as stored: raw JSON, read through the field
        else:
            assert name in {"stack_run", "stack_name", "stack_provider", "check_timestamp", "check_status"}
    return block, stack


def test_the_fixture_is_the_originals_user_state():
    fields = {"stack_run", "stack_name", "stack_provider", "check_id", "check_timestamp", "check_status", "score"}
    for entry in FIXTURE["learners"]:
        assert set(entry["state"]) == fields
    assert len(LEARNERS["check-pending"]["state"]["check_id"]) == 36  # a Celery task id (UUID)


def test_a_check_pending_at_the_switch_is_reported_once_as_interrupted(queued):
    block, _stack = block_for("check-pending")
    assert block.check_id == LEARNERS["check-pending"]["state"]["check_id"]  # no ValueError: read as text
    frag = block.student_view({})
    assert frag.json_init_args["check_on_load"] is True  # the page asks check_status for it
    last = call(block, "check_status")[1]
    assert (
        last["status"] == "error"
        and "upgraded" in last["error_msg"]
        and "check your progress again" in last["error_msg"]
    )
    assert block.check_id is None
    assert block.student_view({}).json_init_args["check_on_load"] is False  # said once
    assert call(block, "check_status")[1] == {"status": "none"}
    started = call(block, "check_progress")[1]
    assert started["status"] == "pending" and block.check_id == started["id"]
    assert queued == [("check", started["id"])]


def test_the_pending_check_through_the_polling_handler(queued):
    block, _stack = block_for("check-pending")
    code, body = call(block, "check_status")
    assert code == 200 and body["status"] == "error" and body["interrupted"]
    assert call(block, "check_status")[1] == {"status": "none"}


def test_a_score_the_original_stored_reads_on_the_weight_scale(queued):
    block, _stack = block_for("checked")
    before = lms_weighted(LEARNERS["checked"]["grade"], LEARNERS["checked"]["max_grade"], WEIGHT)
    assert block.has_submitted_answer()
    assert block.get_score() == pytest.approx((2 / 3 * WEIGHT, WEIGHT))
    assert block.calculate_score() == pytest.approx(before)  # a rescore keeps the grade
    assert lms_weighted(*block.get_score(), WEIGHT) == pytest.approx(before)
    assert block.max_score() == WEIGHT


def test_a_grade_published_after_the_switch_has_the_same_scale(queued):
    block, _stack = block_for("checked")
    events = recording(block)
    before = lms_weighted(LEARNERS["checked"]["grade"], LEARNERS["checked"]["max_grade"], WEIGHT)
    check_id = call(block, "check_progress")[1]["id"]
    finish(check_id, [*RESULTS, {"passed": True, "hint": "", "timed_out": False}])  # 2 of 3, as before
    assert call(block, "check_status")[1]["pass"] == 2
    [published] = grades(events)
    assert published == pytest.approx((2 / 3 * WEIGHT, WEIGHT))
    assert lms_weighted(*published, WEIGHT) == pytest.approx(before)
    # Full marks are the weight, as in the original.
    check_id = call(block, "check_progress")[1]["id"]
    finish(check_id, [{"passed": True, "hint": "", "timed_out": False}] * 3)
    call(block, "check_status")
    assert grades(events)[-1] == pytest.approx((WEIGHT, WEIGHT))


def test_a_learner_who_never_checked(queued):
    block, _stack = block_for("never-checked")
    assert block.check_id is None and not block.has_submitted_answer()
    assert block.get_score() == (0.0, WEIGHT)  # what the LMS counts before a first attempt: weight possible
    assert block.student_view({}).json_init_args["check_on_load"] is False


def test_a_lab_without_tests_is_not_graded(queued):
    """Chosen and documented: no tests, no points possible (the original counted weight nobody could earn)."""
    block, _stack = up_block("no-tests", lab_xml(extra=f'weight="{WEIGHT}"'))
    assert block.max_score() == 0.0 and block.get_score() == (0.0, 0.0)
    assert lms_weighted(*block.get_score(), WEIGHT) == (0.0, 0.0)  # the LMS leaves it out of the grade
    assert call(block, "check_progress")[0] == 409


@pytest.mark.parametrize(
    ("stored", "expected"),
    [(None, None), ("", None), (7, 7), ("7", 7), (7.0, 7), (True, None), ("6f1c-…", "6f1c-…")],
)
def test_check_ref_reads_both_forms(stored, expected):
    assert original_state.check_ref(stored) == expected


def test_the_interrupted_check_is_told_in_the_learners_language():
    from django.utils import translation

    with translation.override("de"):
        assert original_state.interrupted_check()["error_msg"].startswith("Ihre letzte Fortschrittsprüfung")
