"""Lab usage limit: usage summed from the status history in one query, and the breach policies."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from hastexo_xblock import labs, states
from hastexo_xblock.models import Stack, StackLog
from hastexo_xblock.usage import usage_seconds

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]

T0 = timezone.now() - timedelta(days=1)


def history(stack, *events):
    """Append (seconds after T0, status) rows to the stack's log."""
    for seconds, status in events:
        StackLog.objects.create(
            stack=stack,
            status=status,
            course_id=stack.course_id,
            anonymous_user_id=stack.anonymous_user_id,
            learner=stack.learner,
            created_at=T0 + timedelta(seconds=seconds),
        )


def test_usage_is_summed_across_courses_in_one_query(django_assert_num_queries):
    user = get_user_model().objects.create(username="learner")
    other = get_user_model().objects.create(username="other")
    a = labs.get_stack("course-v1:o+a+r", "anon-a", learner=user)
    b = labs.get_stack("course-v1:o+b+r", "anon-b", learner=user)
    c = labs.get_stack("course-v1:o+a+r", "anon-c", learner=other)
    history(
        a,
        (0, states.LAUNCH_PENDING),
        (10, states.CREATE_COMPLETE),
        (110, states.SUSPEND_PENDING),
        (111, states.SUSPEND_COMPLETE),
        (200, states.LAUNCH_PENDING),
        (205, states.RESUME_COMPLETE),
    )
    history(b, (0, states.LAUNCH_PENDING), (5, states.CREATE_COMPLETE), (35, states.SUSPEND_PENDING))
    history(c, (0, states.CREATE_COMPLETE), (1000, states.SUSPEND_PENDING))
    now = T0 + timedelta(seconds=255)
    with django_assert_num_queries(1):
        used = usage_seconds(learner=user, now=now)
    assert used == pytest.approx(100 + 50 + 30)
    assert usage_seconds(learner=other, now=now) == pytest.approx(1000)
    assert usage_seconds(anonymous_user_id="anon-b", now=now) == pytest.approx(30)
    assert usage_seconds(anonymous_user_id="nobody", now=now) == 0.0


def over_the_limit(hastexo_settings, policy):
    hastexo_settings(lab_usage_limit=3600, lab_usage_limit_breach_policy=policy)
    stack = labs.get_stack("course-v1:o+c+r", "heavy-user")
    history(stack, (0, states.CREATE_COMPLETE), (7200, states.SUSPEND_PENDING), (7201, states.SUSPEND_COMPLETE))
    Stack.objects.filter(pk=stack.pk).update(status=states.SUSPEND_COMPLETE)
    stack.refresh_from_db()
    sent = []
    body = labs.status(stack, labs.LabSpec(template="t.yaml"), initialize=True, enqueue=lambda *a, **k: sent.append(a))
    return body, sent, Stack.objects.get(pk=stack.pk)


def test_block_policy_refuses_the_launch(hastexo_settings):
    body, sent, stack = over_the_limit(hastexo_settings, "block")
    assert sent == [] and stack.status == states.SUSPEND_COMPLETE
    assert body["blocked"] and body["failed"] and "all of your lab time (1.0 hours)" in body["error_msg"]


def test_warn_policy_launches_with_a_notice(hastexo_settings):
    body, sent, stack = over_the_limit(hastexo_settings, "warn")
    assert len(sent) == 1 and stack.status == states.LAUNCH_PENDING
    assert "all of your lab time" in body["notice"] and not body.get("blocked")


def test_no_policy_only_logs(hastexo_settings, caplog):
    caplog.set_level("INFO", logger="hastexo_xblock.labs")
    body, sent, stack = over_the_limit(hastexo_settings, None)
    assert len(sent) == 1 and "notice" not in body and stack.status == states.LAUNCH_PENDING
    assert "over the lab usage limit" in caplog.text


def test_within_the_limit_nothing_changes(hastexo_settings):
    hastexo_settings(lab_usage_limit=100000, lab_usage_limit_breach_policy="block")
    stack = labs.get_stack("course-v1:o+c+r", "light-user")
    sent = []
    body = labs.status(stack, labs.LabSpec(template="t.yaml"), initialize=True, enqueue=lambda *a, **k: sent.append(a))
    assert len(sent) == 1 and "notice" not in body and body["status"] == states.LAUNCH_PENDING
