"""Progress checks: the handlers, one check at a time, scoring and grades, and real runs.

The journey runs through a real Celery worker on a real local lab over real
SSH: 0 of 2 with two hints, one task fixed → 1 of 2, both → 2 of 2, with the
score stored and a grade event published each time.  A test that sleeps past
``remote_exec_timeout`` gives a clear time-out message.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from hastexo_xblock import checkrun, checks, remote, states
from hastexo_xblock.models import Check, Stack

from .test_block import bring_up, call, make_block
from .test_worker import lab_templates, run_ssh, wait_for  # noqa: F401 (fixture)
from .workers import delete_labs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

TEST_NOTES = """
if ! [ -f ~/answer.txt ]; then
  echo "There is no answer.txt yet." >&2
  exit 1
fi
"""
TEST_SCRIPT = """
if [ "$(~/hello.sh 2>/dev/null)" != "Hello" ]; then
  echo 'hello.sh does not print Hello <script>alert(1)</script>' >&2
  exit 1
fi
"""
TEST_SLOW = "sleep 30\n"


def lab_xml(*tests, extra=""):
    body = "".join(f"<test><![CDATA[{script}]]></test>" for script in tests)
    return (
        f'<hastexo display_name="Checked lab" stack_template_path="t.yaml" stack_user_name="learner" {extra}>'
        f"{body}</hastexo>"
    )


def recording(block):
    """Capture the grade events the block publishes."""
    events = []
    block.runtime.publish = lambda blk, name, data: events.append((name, data))
    return events


def grades(events):
    return [(data["value"], data["max_value"]) for name, data in events if name == "grade"]


@pytest.fixture
def queued(monkeypatch):
    calls = []
    monkeypatch.setattr("hastexo_xblock.dispatch.send", lambda *a, **k: calls.append(a))
    return calls


def up_block(student="checker", xml=None):
    block = make_block(student, xml or lab_xml(TEST_NOTES, TEST_SCRIPT))
    call(block, "get_user_stack_status", {"initialize": False})
    stack = Stack.objects.get(anonymous_user_id__startswith="wb", name__isnull=False, checks__isnull=True)
    bring_up(stack.pk)
    return block, Stack.objects.get(pk=stack.pk)


# --- the handlers, without running anything ----------------------------------------


@pytest.mark.db  # database behaviour: runs again on every database (make test-databases)
def test_a_second_click_while_a_check_runs_returns_that_check(queued):
    block, _stack = up_block()
    code, first = call(block, "check_progress")
    assert code == 200 and first["status"] == "pending"
    code, second = call(block, "check_progress")
    assert code == 200 and second["id"] == first["id"]
    assert queued == [("check", first["id"])]  # the id only: no scripts, keys or addresses
    assert Check.objects.count() == 1


@pytest.mark.db  # database behaviour: runs again on every database (make test-databases)
def test_concurrent_clicks_start_one_check(queued):
    # checks.start directly: the workbench's own field storage is not safe
    # for concurrent writes of one learner's state (an LMS's is).
    _block, stack = up_block("racer")
    barrier = threading.Barrier(8)
    ids = []

    def click():
        barrier.wait()
        try:
            ids.append(checks.start(stack, "the-block", [TEST_NOTES]).pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(ids) == 8 and len(set(ids)) == 1
    assert len(queued) == 1 and Check.objects.count() == 1


@pytest.mark.db  # database behaviour: runs again on every database (make test-databases)
def test_a_check_of_another_block_waits_its_turn(queued):
    block, _stack = up_block("two-blocks")
    assert call(block, "check_progress")[0] == 200
    other = make_block("two-blocks", lab_xml(TEST_SCRIPT).replace("Checked lab", "Other lab"))
    other.scope_ids = other.scope_ids._replace(usage_id="another-block")
    code, body = call(other, "check_progress")
    assert code == 409 and "Another progress check" in body["error"]


def test_no_check_while_the_lab_is_not_up(queued):
    block = make_block("not-up", lab_xml(TEST_NOTES))
    code, body = call(block, "check_progress")
    assert code == 409 and "not running" in body["error"] and not queued


def test_a_lab_without_tests_has_nothing_to_check(queued):
    block, _stack = up_block("no-tests", lab_xml())
    code, body = call(block, "check_progress")
    assert code == 409 and "no progress checks" in body["error"]


def test_a_lost_check_ends_with_a_message_and_frees_the_learner(queued):
    block, _stack = up_block("lost")
    first = call(block, "check_progress")[1]
    Check.objects.filter(pk=first["id"]).update(deadline=timezone.now() - timedelta(seconds=1))
    body = call(block, "check_status")[1]
    assert body["status"] == "error" and "did not finish in time" in body["error_msg"]
    again = call(block, "check_progress")[1]
    assert again["status"] == "pending" and again["id"] != first["id"]


def test_a_check_that_cannot_be_queued_says_so(monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr("hastexo_xblock.dispatch.send", broken)
    block, _stack = up_block("no-broker")
    body = call(block, "check_progress")[1]
    assert body["status"] == "error" and "try again" in body["error_msg"]


def finish(check_id, results):
    Check.objects.filter(pk=check_id).update(
        status=Check.DONE, results=results, passed=sum(r["passed"] for r in results), total=len(results)
    )


RESULTS = [{"passed": True, "hint": "", "timed_out": False}, {"passed": False, "hint": "fix it", "timed_out": False}]


@pytest.mark.db  # database behaviour: runs again on every database (make test-databases)
def test_a_finished_check_is_scored_and_graded_once(queued):
    block, _stack = up_block("graded")
    events = recording(block)
    check_id = call(block, "check_progress")[1]["id"]
    finish(check_id, RESULTS)
    body = call(block, "check_status")[1]
    assert body == {
        "status": "done",
        "id": check_id,
        "pass": 1,
        "total": 2,
        "message": "You completed 1 of 2 tasks.",
        "hints": ["fix it"],
    }
    call(block, "check_status")
    # The original's scale: weight (1 by default) is the maximum; 1 of 2 tests earns half of it.
    assert grades(events) == [(0.5, 1.0)]
    assert block.score == {"raw_earned": 0.5, "raw_possible": 1.0}
    assert block.get_score() == (0.5, 1.0) and block.max_score() == 1.0 and block.has_submitted_answer()


def test_a_check_finished_after_the_learner_left_is_graded_when_they_return(queued):
    block, _stack = up_block("returning")
    check_id = call(block, "check_progress")[1]["id"]
    finish(check_id, RESULTS)
    events = recording(block)
    frag = block.student_view({})
    assert grades(events) == [(0.5, 1.0)]
    assert frag.json_init_args["check_on_load"] is True  # the page asks check_status for it on return
    assert call(block, "check_status")[1]["message"] == "You completed 1 of 2 tasks."
    block.student_view({})
    assert grades(events) == [(0.5, 1.0)]


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ('show_hints_on_error="false"', {"pass", "total", "message"}),
        ('show_feedback="false"', {"message"}),
    ],
)
def test_feedback_and_hints_follow_the_authors_choice(queued, attributes, expected):
    block, _stack = up_block("quiet", lab_xml(TEST_NOTES, TEST_SCRIPT, extra=attributes))
    check_id = call(block, "check_progress")[1]["id"]
    finish(check_id, RESULTS)
    body = call(block, "check_status")[1]
    assert set(body) - {"status", "id"} == expected


def test_long_hints_are_capped():
    result = remote.RemoteResult(1, "", "x" * 5000)
    hint = checkrun._hint(result, 10)
    assert len(hint) == checkrun.HINT_LIMIT and hint.endswith("…")


# --- real runs ---------------------------------------------------------------------


@pytest.fixture
def check_worker(lab_templates, worker_pool):  # noqa: F811 (the imported fixture)
    """The session's worker (tests/workers.py: remote_exec_timeout 2 s, check_timeout 30 s)."""
    yield worker_pool.get("filesystem://")
    delete_labs()


def launched(block):
    call(block, "get_user_stack_status", {"initialize": True})
    stack = wait_for(Stack.objects.get().pk, states.UP | states.FAILED)
    assert stack.status == states.CREATE_COMPLETE, stack.error_msg
    return stack


def check(block, timeout=60):
    code, body = call(block, "check_progress")
    assert code == 200, body
    deadline = time.monotonic() + timeout
    while body["status"] in ("pending", "running"):
        assert time.monotonic() < deadline, "the check did not finish"
        time.sleep(0.1)
        body = call(block, "check_status")[1]
    return body


def test_check_progress_through_a_real_worker(check_worker):
    block = make_block("journey", lab_xml(TEST_NOTES, TEST_SCRIPT))
    events = recording(block)
    stack = launched(block)

    started = time.monotonic()
    body = check(block)
    print(f"\ncheck of 2 tests through the worker: {time.monotonic() - started:.2f} s")
    assert (body["status"], body["pass"], body["total"]) == ("done", 0, 2), (body, check_worker.output()[-3000:])
    assert body["message"] == "You completed 0 of 2 tasks."
    assert body["hints"] == ["There is no answer.txt yet.", "hello.sh does not print Hello <script>alert(1)</script>"]

    assert run_ssh(stack, "echo mine > answer.txt")[0] == 0
    assert (check(block)["pass"], block.score) == (1, {"raw_earned": 0.5, "raw_possible": 1.0})

    assert run_ssh(stack, "printf '#!/bin/sh\\necho Hello\\n' > hello.sh; chmod +x hello.sh")[0] == 0
    body = check(block)
    assert (body["pass"], body["total"], body["hints"]) == (2, 2, [])
    assert body["message"] == "You completed 2 of 2 tasks."
    assert grades(events) == [(0.0, 1.0), (0.5, 1.0), (1.0, 1.0)]
    assert block.get_score() == (1.0, 1.0)
    assert stack.private_key.splitlines()[1] not in check_worker.output()


def test_a_test_past_remote_exec_timeout_is_a_clear_message(check_worker):
    block = make_block("slow", lab_xml(TEST_SLOW, TEST_NOTES))
    launched(block)
    started = time.monotonic()
    body = check(block)
    elapsed = time.monotonic() - started
    assert (body["pass"], body["total"]) == (0, 2)
    assert body["hints"][0] == "This task could not be checked: its test did not finish within 2 seconds."
    assert body["hints"][1] == "There is no answer.txt yet."  # the next test still ran
    assert elapsed < 15, f"the slow test was not stopped at its time-out ({elapsed:.1f} s)"
