"""The reaper: aged labs deleted, up labs never, failed deletes retried, orphans after a grace period."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from hastexo_xblock import jobs, labs, lifecycle, states, timing
from hastexo_xblock.models import OrphanSighting, Stack, StackLog

from .fakes import FakeProvider
from .fakes import collect_sends as _collect

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]

DAY = 86400


def make(learner, status, suspended_days_ago=None, delete_age=None, provider="fake1"):
    stack = labs.get_stack("course-v1:o+c+r", learner)
    suspended_at = timezone.now() - timedelta(days=suspended_days_ago) if suspended_days_ago is not None else None
    Stack.objects.filter(pk=stack.pk).update(
        status=status, suspended_at=suspended_at, delete_age=delete_age, provider=provider
    )
    FakeProvider("fake1", {"type": "fake", "lab": None}).stacks["fake1"][stack.name] = {
        "status": states.SUSPEND_COMPLETE if status != states.CREATE_COMPLETE else status,
        "final": status,
        "left": 0,
        "reason": "",
    }
    return Stack.objects.get(pk=stack.pk)


def reap(**kwargs):
    deleted = []
    report = jobs.run_reaper(_collect(deleted), **kwargs)
    return report, deleted


def test_aged_suspended_labs_are_deleted_and_up_ones_never(fake_providers, hastexo_settings):
    hastexo_settings(delete_age=14)
    old = make("old", states.SUSPEND_COMPLETE, suspended_days_ago=15)
    young = make("young", states.SUSPEND_COMPLETE, suspended_days_ago=13)
    up = make("up", states.CREATE_COMPLETE, suspended_days_ago=30)  # suspended long ago, up now
    launching = make("launching", states.LAUNCH_PENDING, suspended_days_ago=30)
    report, enqueued = reap()
    assert report.claimed == [old.pk] and enqueued == [old.pk]
    statuses = dict(Stack.objects.values_list("pk", "status"))
    assert statuses[old.pk] == states.DELETE_PENDING
    assert statuses[young.pk] == states.SUSPEND_COMPLETE
    assert statuses[up.pk] == states.CREATE_COMPLETE and statuses[launching.pk] == states.LAUNCH_PENDING
    assert lifecycle.delete(old.pk) == states.DELETE_COMPLETE
    assert FakeProvider.stacks["fake1"].get(old.name) is None
    assert Stack.objects.get(pk=old.pk).private_key == ""


def test_block_delete_age_in_seconds_wins_and_zero_disables(fake_providers, hastexo_settings):
    hastexo_settings(delete_age=14)
    by_block = make("block", states.SUSPEND_COMPLETE, suspended_days_ago=2, delete_age=DAY)
    never = make("never", states.SUSPEND_COMPLETE, suspended_days_ago=400, delete_age=0)
    report, _ = reap()
    assert report.claimed == [by_block.pk]
    hastexo_settings(delete_age=0)
    Stack.objects.filter(pk=never.pk).update(delete_age=None)
    assert reap()[0].claimed == []


def test_a_failing_delete_is_retried_up_to_delete_attempts(fake_providers, hastexo_settings, monkeypatch):
    hastexo_settings(delete_age=1, delete_attempts=3)
    monkeypatch.setattr(timing.CLOCK, "sleep", lambda seconds: None)
    stack = make("flaky", states.SUSPEND_COMPLETE, suspended_days_ago=2)
    failures = {"left": 2}
    real_delete = FakeProvider.delete

    def flaky_delete(self, name):
        if failures["left"]:
            failures["left"] -= 1
            from hastexo_xblock.providers.base import ProviderError

            raise ProviderError("409 Conflict: stack is busy")
        return real_delete(self, name)

    monkeypatch.setattr(FakeProvider, "delete", flaky_delete)
    results = []
    for _ in range(3):
        report, _ = reap()
        assert report.claimed == [stack.pk]
        results.append(lifecycle.delete(stack.pk))
    assert results == [states.DELETE_FAILED, states.DELETE_FAILED, states.DELETE_COMPLETE]
    assert list(StackLog.objects.filter(stack=stack).values_list("status", flat=True))[-2:] == [
        states.DELETE_IN_PROGRESS,
        states.DELETE_COMPLETE,
    ]


def test_attempts_exhausted_are_left_for_an_operator(fake_providers, hastexo_settings):
    hastexo_settings(delete_attempts=2)
    stack = make("stuck", states.DELETE_FAILED)
    Stack.objects.filter(pk=stack.pk).update(delete_attempts=2)
    assert reap()[0].claimed == []


def test_orphans_are_deleted_after_the_grace_period(fake_providers, hastexo_settings):
    hastexo_settings(orphan_grace=600)
    owned = make("owned", states.SUSPEND_COMPLETE, suspended_days_ago=0)
    fake = FakeProvider("fake1", {"type": "fake", "lab": None})
    fake.stacks["fake1"]["hx-o-c-r-nobody"] = {"status": states.CREATE_COMPLETE, "final": "", "left": 0, "reason": ""}
    fake.stacks["fake1"]["someone-elses-stack"] = {
        "status": states.CREATE_COMPLETE,
        "final": "",
        "left": 0,
        "reason": "",
    }
    report, deleted = reap()
    assert deleted == [] and report.orphans_waiting == 1
    assert OrphanSighting.objects.get().name == "hx-o-c-r-nobody"
    report, deleted = reap(now=timezone.now() + timedelta(seconds=601))
    assert deleted == [("fake1", "hx-o-c-r-nobody")] and report.orphans_deleted == deleted
    assert lifecycle.delete_orphan("fake1", "hx-o-c-r-nobody") == states.DELETE_COMPLETE
    assert "someone-elses-stack" in fake.list() and owned.name in fake.list()
    assert OrphanSighting.objects.count() == 0


def test_an_orphan_that_finds_its_owner_is_forgotten(fake_providers):
    stack = labs.get_stack("course-v1:o+c+r", "late")
    FakeProvider("fake1", {"type": "fake", "lab": None}).stacks["fake1"][stack.name] = {
        "status": states.CREATE_IN_PROGRESS,
        "final": "",
        "left": 0,
        "reason": "",
    }
    reap()
    assert OrphanSighting.objects.filter(name=stack.name).exists()
    Stack.objects.filter(pk=stack.pk).update(status=states.CREATE_IN_PROGRESS, provider="fake1")
    reap(now=timezone.now() + timedelta(days=1))
    assert not OrphanSighting.objects.exists()
    assert lifecycle.delete_orphan("fake1", stack.name) == "OWNED"


def test_management_command(fake_providers, monkeypatch, hastexo_settings):
    hastexo_settings(delete_age=1)
    make("cmd", states.SUSPEND_COMPLETE, suspended_days_ago=3)
    sent = []
    monkeypatch.setattr("hastexo_xblock.dispatch.send", lambda *a: sent.append(a))
    call_command("hastexo_reaper")
    assert [a[0] for a in sent] == ["delete"]
