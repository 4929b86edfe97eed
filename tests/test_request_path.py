"""The request path reads; workers act.

A learner's status poll is one indexed ``SELECT`` when there is nothing to
do, never calls a provider (a provider here raises if it is called at all),
and hands a dead or overdue operation to the workers by enqueuing a task.
Provider classes (and heatclient) load only where a provider is used.
"""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from hastexo_xblock import jobs, labs, liveness, states
from hastexo_xblock.models import Stack
from hastexo_xblock.providers import register_type
from hastexo_xblock.providers.base import Provider

from .test_block import call, make_block

pytestmark = [pytest.mark.django_db]

SPEC = labs.LabSpec(template="t.yaml", providers=[{"name": "boom"}])


class ExplodingProvider(Provider):
    """Fails the test from wherever it is called: nothing in a request may call a provider."""

    type_name = "exploding"

    def _boom(self, *args, **kwargs):
        raise AssertionError("a provider was called in a request")

    create = get = suspend = resume = delete = list = _boom


@pytest.fixture(autouse=True)
def exploding(hastexo_settings):
    register_type("exploding", ExplodingProvider)
    hastexo_settings(providers={"boom": {"type": "exploding"}})
    yield
    register_type("exploding", None)


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr("hastexo_xblock.dispatch.send", lambda *a, **k: calls.append((a, k)))
    return calls


def make(learner, status, **fields):
    stack = labs.get_stack("course-v1:o+c+r", learner)
    Stack.objects.filter(pk=stack.pk).update(status=status, provider="boom", attempt=3, **fields)
    return Stack.objects.get(pk=stack.pk)


def poll(learner, **flags):
    """A status request as the block makes it: find the row, decide."""
    return labs.status(labs.get_stack("course-v1:o+c+r", learner), SPEC, **flags)


@pytest.mark.db
@pytest.mark.parametrize(
    ("status", "fields"),
    [
        (states.CREATE_COMPLETE, {"suspend_by_in": 60}),
        (states.CREATE_IN_PROGRESS, {"heartbeat_ago": 3, "deadline_in": 600}),
        (states.LAUNCH_PENDING, {"deadline_in": 600}),
        (states.SUSPEND_COMPLETE, {}),
    ],
)
def test_a_status_poll_with_nothing_to_do_is_one_indexed_select(sent, status, fields):
    now = timezone.now()
    extra = {}
    if "suspend_by_in" in fields:
        extra["suspend_by"] = now + timedelta(seconds=fields["suspend_by_in"])
    if "heartbeat_ago" in fields:
        extra["heartbeat_at"] = now - timedelta(seconds=fields["heartbeat_ago"])
    if "deadline_in" in fields:
        extra["status_deadline"] = now + timedelta(seconds=fields["deadline_in"])
    make("poller", status, **extra)
    with CaptureQueriesContext(connection) as queries:
        view = poll("poller")
    assert view["status"] == status and not sent
    assert len(queries) == 1, [q["sql"] for q in queries]
    sql = queries[0]["sql"]
    assert sql.lstrip().upper().startswith("SELECT") and "course_id" in sql and "anonymous_user_id" in sql
    # The lookup is the unique (course_id, anonymous_user_id) constraint's index.
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Stack._meta.db_table)
    assert any(c["unique"] and c["columns"] == ["course_id", "anonymous_user_id"] for c in constraints.values())


@pytest.mark.db
def test_a_launch_whose_worker_died_is_relaunched_without_a_provider_call(sent, hastexo_settings):
    hastexo_settings(providers={"boom": {"type": "exploding"}}, heartbeat_interval=10, heartbeat_timeout=45)
    due = timezone.now() + timedelta(seconds=600)
    stack = make("orphaned", states.CREATE_IN_PROGRESS, heartbeat_at=timezone.now() - timedelta(seconds=46))
    Stack.objects.filter(pk=stack.pk).update(status_deadline=due)
    view = poll("orphaned")
    [((name, stack_id, attempt), kwargs)] = sent
    assert (name, stack_id, attempt) == ("launch", stack.pk, 4)
    assert kwargs == {"reset": False, "due": due}  # the same operation, the same budget
    row = Stack.objects.get(pk=stack.pk)
    assert (row.attempt, row.status, row.heartbeat_at, row.status_deadline) == (4, states.CREATE_IN_PROGRESS, None, due)
    assert view["pending"]
    # Queued again (no heartbeat yet): the next polls leave it to the new attempt.
    poll("orphaned")
    poll("orphaned")
    assert len(sent) == 1


def test_a_slow_launch_with_a_live_heartbeat_is_left_alone(sent):
    make("slow", states.CREATE_IN_PROGRESS, heartbeat_at=timezone.now() - timedelta(seconds=20))
    poll("slow")
    assert sent == []


@pytest.mark.db
@pytest.mark.parametrize("pending", [states.LAUNCH_PENDING, states.SUSPEND_PENDING, states.DELETE_IN_PROGRESS])
def test_an_overdue_pending_state_gets_one_recovery_task(sent, pending):
    stack = make("stuck", pending, status_deadline=timezone.now() - timedelta(seconds=1))
    poll("stuck")
    poll("stuck")
    [((name, stack_id, token), _kwargs)] = sent
    assert (name, stack_id) == ("recover", stack.pk)
    assert Stack.objects.get(pk=stack.pk).status_deadline.isoformat() == token


def test_the_periodic_job_finds_dead_launches_too(sent):
    stack = make("nobody-polls", states.RESUME_IN_PROGRESS, heartbeat_at=timezone.now() - timedelta(minutes=5))
    Stack.objects.filter(pk=stack.pk).update(status_deadline=timezone.now() + timedelta(minutes=10))
    assert jobs.recover_overdue() == 1
    assert [a[0][:3] for a in sent] == [("launch", stack.pk, 4)]


def test_the_blocks_status_handler_never_calls_a_provider(sent):
    block = make_block("handler-learner")
    code, body = call(block, "get_user_stack_status", {"initialize": True})
    assert code == 200 and body["status"] == states.LAUNCH_PENDING
    stack = Stack.objects.get()
    Stack.objects.filter(pk=stack.pk).update(
        status=states.CREATE_IN_PROGRESS, provider="boom", heartbeat_at=timezone.now() - timedelta(minutes=2)
    )
    code, body = call(block, "get_user_stack_status", {"initialize": True})
    assert code == 200 and body["pending"]
    Stack.objects.filter(pk=stack.pk).update(status_deadline=timezone.now() - timedelta(seconds=1))
    code, body = call(block, "get_user_stack_status", {})
    assert code == 200
    assert [a[0] for a, _k in sent] == ["launch", "launch", "recover"]


#: Modules only a worker needs.
WORKER_SIDE = ("tasks", "lifecycle", "checkrun", "recovery", "stackops", "hooks")


@pytest.mark.django_db(False)
def test_settings_validation_and_the_request_side_do_not_load_heatclient_celery_or_the_worker_side(tmp_path):
    """An LMS or gateway process (settings with a Heat provider validated) imports no worker-side code.

    No heatclient, no keystoneauth1, no Celery (domain code sends tasks through ``dispatch``, which
    imports Celery only when it sends), and none of the package's worker-side modules.
    """
    heat = {
        "type": "openstack",
        "os_auth_url": "https://keystone.example.com:5000/v3",
        "os_username": "demo",
        "os_password": "secret",
        "os_project_name": "demo",
    }
    script = (
        "import sys, django; django.setup()\n"
        "from hastexo_xblock import block, labs, checks, jobs, dispatch, operations\n"
        "from hastexo_xblock.conf import get_settings\n"
        "from hastexo_xblock.gateway import asgi\n"
        "assert get_settings()['providers']['cloud']['type'] == 'openstack'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('heatclient', 'keystoneauth1', 'celery')"
        " or m.split('.')[:2] in (['hastexo_xblock', w] for w in WORKER_SIDE)))\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "HASTEXO_TEST_EXTRA_PROVIDERS": json.dumps({"cloud": heat}),
        "HASTEXO_TEST_RUN_DIR": str(tmp_path),
    }
    script = f"WORKER_SIDE = {WORKER_SIDE!r}\n" + script
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = result.stdout.strip().splitlines()[-1]
    # Neither the OpenStack libraries, nor Celery, nor the worker side of the package.
    assert loaded == "[]", loaded


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_beats_while_the_work_runs_and_stops_after():
    stack = make("beating", states.CREATE_IN_PROGRESS)
    beats = []
    with liveness.heartbeat(stack.pk, stack.attempt, interval=0.05):
        for _ in range(6):
            time.sleep(0.05)
            beats.append(Stack.objects.get(pk=stack.pk).heartbeat_at)
    assert beats[0] is not None and len(set(beats)) >= 3  # written at once, then again and again
    last = Stack.objects.get(pk=stack.pk).heartbeat_at
    time.sleep(0.2)
    assert Stack.objects.get(pk=stack.pk).heartbeat_at == last  # stopped with the work
    # A stale attempt does not beat for the row's new one.
    Stack.objects.filter(pk=stack.pk).update(attempt=stack.attempt + 1, heartbeat_at=None)
    assert not liveness.beat(stack.pk, stack.attempt)
    assert Stack.objects.get(pk=stack.pk).heartbeat_at is None
