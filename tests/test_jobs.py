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


def _drain(run_once):
    """Run ``run_once`` (one suspender run: returns how many it claimed) until nothing is due.

    Returns the runs it took, the labs claimed and each run's measured seconds.
    """
    import time

    runs, claimed, seconds = 0, 0, []
    while True:
        started = time.perf_counter()
        got = run_once()
        seconds.append(time.perf_counter() - started)
        runs += 1
        claimed += got
        if got == 0 or Stack.objects.filter(status__in=states.UP).count() == 0:
            return runs, claimed, seconds


def test_suspender_throughput_against_a_fixed_handful_per_run(hastexo_settings, output_dir, capsys):
    """Benchmark: 400 labs fall due at once; both ways are run until every one is claimed, in the same run.

    The baseline is a suspender that claims one batch (``suspend_concurrency``,
    4) per run, as a fixed-handful suspender does; this one drains everything
    due in each run.  Each is run for real until nothing is due: the runs it
    took are counted and each run is timed.  The time to drain at the
    configured interval follows from those two: a run every ``suspend_interval``
    seconds, so ``(runs - 1) * interval`` plus the last run's measured time.
    """
    import json

    settings = hastexo_settings(suspend_concurrency=4, suspend_interval=60)
    interval = settings["suspend_interval"]
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
    base_runs, base_claimed, base_seconds = _drain(lambda: len(jobs.claim_due(settings["suspend_concurrency"])))
    Stack.objects.filter(status=states.SUSPEND_PENDING).update(status=states.CREATE_COMPLETE, status_deadline=None)
    enqueued = []
    runs, claimed, seconds = _drain(lambda: jobs.run_suspender(lambda name, pk: enqueued.append(pk)))
    assert base_claimed == claimed == 400 and len(set(enqueued)) == 400
    assert runs == 1 and base_runs == 100  # counted, not assumed

    def drain_seconds(runs: int, seconds: list[float]) -> float:
        return (runs - 1) * interval + seconds[-1]

    result = {
        "due_labs": 400,
        "suspend_interval": interval,
        "baseline": {
            "runs_to_drain": base_runs,
            "seconds_running": round(sum(base_seconds), 3),
            "drain_seconds_at_interval": round(drain_seconds(base_runs, base_seconds), 1),
        },
        "suspender": {
            "runs_to_drain": runs,
            "seconds_running": round(sum(seconds), 3),
            "claims_per_second": round(claimed / sum(seconds), 1),
            "drain_seconds_at_interval": round(drain_seconds(runs, seconds), 3),
        },
        "ratio_drain_time": round(drain_seconds(base_runs, base_seconds) / drain_seconds(runs, seconds), 1),
    }
    os.makedirs(os.path.join(output_dir, "benchmarks"), exist_ok=True)
    with open(os.path.join(output_dir, "benchmarks", "suspender.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    with capsys.disabled():
        print(
            f"\nsuspender: 400 due labs drained in {runs} run of {seconds[-1]:.2f} s ({claimed / sum(seconds):.0f}/s); "
            f"one batch per run took {base_runs} runs ({sum(base_seconds):.2f} s of running), "
            f"{result['baseline']['drain_seconds_at_interval'] / 60:.0f} min at one run per {interval} s "
            f"(drain time ratio {result['ratio_drain_time']}x)"
        )
    # Draining must fit comfortably inside one interval even on a slow CI database.
    assert seconds[-1] < interval / 2
