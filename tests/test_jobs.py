"""The suspender: claims every due stack (not a handful per minute), atomically."""

import os
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from hastexo_xblock import jobs, labs, recovery, states
from hastexo_xblock.models import Stack

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]


def make_up(count, due=True, status=states.CREATE_COMPLETE):
    when = timezone.now() + timedelta(seconds=-5 if due else 300)
    ids = []
    for index in range(count):
        stack = labs.get_stack("c", f"due{due}-{status}-{index}")
        Stack.objects.filter(pk=stack.pk).update(status=status, suspend_by=when, provider="default")
        ids.append(stack.pk)
    return ids


def test_every_due_stack_is_claimed_in_one_run(hastexo_settings):
    hastexo_settings(suspend_concurrency=4)
    due = make_up(25)
    not_due = make_up(3, due=False)
    enqueued = []
    assert jobs.run_suspender(lambda name, pk: enqueued.append(pk)) == 25
    assert sorted(enqueued) == sorted(due)
    assert set(Stack.objects.filter(pk__in=due).values_list("status", flat=True)) == {states.SUSPEND_PENDING}
    assert set(Stack.objects.filter(pk__in=not_due).values_list("status", flat=True)) == {states.CREATE_COMPLETE}
    assert all(s.status_deadline > timezone.now() for s in Stack.objects.filter(pk__in=due))
    # A second run finds nothing left.
    assert jobs.run_suspender(lambda name, pk: enqueued.append(pk)) == 0


def test_stacks_that_are_not_up_are_not_claimed():
    make_up(2, status=states.SUSPEND_COMPLETE)
    make_up(2, status=states.LAUNCH_PENDING)
    assert jobs.run_suspender(lambda *a: pytest.fail("nothing should be enqueued")) == 0


def test_a_keepalive_between_query_and_claim_wins():
    [pk] = make_up(1)
    now = timezone.now()
    labs.keepalive(Stack.objects.get(pk=pk))  # the learner came back just now
    assert jobs.claim_due(10, now=now) == []
    assert Stack.objects.get(pk=pk).status == states.CREATE_COMPLETE


def test_overdue_pending_states_are_recovered_by_the_job(hastexo_settings):
    stack = labs.get_stack("c", "stuck")
    Stack.objects.filter(pk=stack.pk).update(
        status=states.LAUNCH_PENDING, status_deadline=timezone.now() - timedelta(seconds=1)
    )
    sent = []
    jobs.run_suspender(lambda *args: sent.append(args))
    # The job only claims and enqueues (no provider call in the job's own process) ...
    [(name, pk, token)] = sent
    assert (name, pk) == ("recover", stack.pk)
    assert Stack.objects.get(pk=stack.pk).status == states.LAUNCH_PENDING
    # ... once: the next run finds the recovery claimed.
    jobs.run_suspender(lambda *args: sent.append(args))
    assert len(sent) == 1
    # The worker's recovery settles it; a stale token does nothing.
    assert recovery.recover(pk, "2000-01-01T00:00:00+00:00") == states.LAUNCH_PENDING
    assert recovery.recover(pk, token) == states.LAUNCH_TIMEOUT
    assert Stack.objects.get(pk=stack.pk).status == states.LAUNCH_TIMEOUT


def test_management_command_enqueues(monkeypatch):
    make_up(3)
    sent = []
    monkeypatch.setattr("hastexo_xblock.dispatch.send", lambda name, pk: sent.append((name, pk)))
    call_command("hastexo_suspender")
    assert [name for name, _ in sent] == ["suspend"] * 3


def test_suspender_throughput_against_a_fixed_handful_per_run(hastexo_settings, output_dir, capsys):
    """Benchmark: drain 400 due labs in one run; the baseline is one batch of 4 per run (the old way)."""
    import json
    import time

    settings = hastexo_settings(suspend_concurrency=4, suspend_interval=60)
    due = timezone.now() - timedelta(seconds=5)
    Stack.objects.bulk_create(
        Stack(
            name=f"hx-bench-{i}",
            course_id="bench",
            anonymous_user_id=f"l{i}",
            status=states.CREATE_COMPLETE,
            suspend_by=due,
            provider="default",
        )
        for i in range(400)
    )
    # Baseline in the same run: one batch per suspender run, as a fixed-handful suspender does.
    started = time.perf_counter()
    baseline_claimed = len(jobs.claim_due(settings["suspend_concurrency"]))
    baseline_seconds = time.perf_counter() - started
    Stack.objects.filter(status=states.SUSPEND_PENDING).update(status=states.CREATE_COMPLETE, status_deadline=None)

    enqueued = []
    started = time.perf_counter()
    claimed = jobs.run_suspender(lambda name, pk: enqueued.append(pk))
    seconds = time.perf_counter() - started
    assert claimed == 400 and len(set(enqueued)) == 400

    interval = settings["suspend_interval"]
    per_minute_baseline = baseline_claimed * 60 / interval
    per_minute = claimed * 60 / max(interval, seconds)  # one run per interval drains everything due
    result = {
        "due_labs": 400,
        "baseline": {
            "claimed_per_run": baseline_claimed,
            "run_seconds": round(baseline_seconds, 4),
            "labs_per_minute": per_minute_baseline,
        },
        "suspender": {
            "claimed_per_run": claimed,
            "run_seconds": round(seconds, 3),
            "labs_per_minute": per_minute,
            "claims_per_second": round(claimed / seconds, 1),
        },
        "ratio_labs_per_minute": round(per_minute / per_minute_baseline, 1),
    }
    os.makedirs(os.path.join(output_dir, "benchmarks"), exist_ok=True)
    with open(os.path.join(output_dir, "benchmarks", "suspender.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    with capsys.disabled():
        print(
            f"\nsuspender: 400 due labs claimed in {seconds:.2f} s ({claimed / seconds:.0f}/s); "
            f"{per_minute:.0f} labs/min vs {per_minute_baseline:.0f} labs/min for one batch per run "
            f"(ratio {result['ratio_labs_per_minute']}x)"
        )
    # Draining must fit comfortably inside one interval even on a slow CI database.
    assert seconds < interval / 2
