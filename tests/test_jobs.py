"""The suspender: claims every due stack (not a handful per minute), atomically."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from hastexo_xblock import jobs, labs, states
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
    assert jobs.run_suspender(enqueued.append) == 25
    assert sorted(enqueued) == sorted(due)
    assert set(Stack.objects.filter(pk__in=due).values_list("status", flat=True)) == {states.SUSPEND_PENDING}
    assert set(Stack.objects.filter(pk__in=not_due).values_list("status", flat=True)) == {states.CREATE_COMPLETE}
    assert all(s.status_deadline > timezone.now() for s in Stack.objects.filter(pk__in=due))
    # A second run finds nothing left.
    assert jobs.run_suspender(enqueued.append) == 0


def test_stacks_that_are_not_up_are_not_claimed():
    make_up(2, status=states.SUSPEND_COMPLETE)
    make_up(2, status=states.LAUNCH_PENDING)
    assert jobs.run_suspender(lambda pk: pytest.fail("nothing should be enqueued")) == 0


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
    jobs.run_suspender(lambda pk: None)
    assert Stack.objects.get(pk=stack.pk).status == states.LAUNCH_TIMEOUT


def test_management_command_enqueues(monkeypatch):
    make_up(3)
    sent = []
    monkeypatch.setattr(
        "hastexo_xblock.management.commands.hastexo_suspender.enqueue", lambda name, pk: sent.append((name, pk))
    )
    call_command("hastexo_suspender")
    assert [name for name, _ in sent] == ["suspend"] * 3
