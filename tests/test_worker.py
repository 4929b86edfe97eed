"""Real Celery workers on real brokers, the local provider on real processes.

The embedded broker (kombu's filesystem transport) always runs; RabbitMQ and
Redis run when ``HASTEXO_TEST_BROKER_URLS`` names them (CI names both).
"""

import base64
import json
import os
import signal
import threading
import time

import asyncssh
import pytest
from django.db import connection
from django.utils import timezone

from hastexo_xblock import dispatch, jobs, labs, states
from hastexo_xblock.conf import get_settings
from hastexo_xblock.models import Stack, StackLog
from hastexo_xblock.providers import get_provider

from .fakes import creates
from .test_block import call, make_block
from .workers import TEMPLATE, WORKER_SETTINGS, Worker, delete_labs, start_worker, stop_worker

pytestmark = [pytest.mark.django_db(transaction=True)]

BROKERS = ["filesystem://", *os.environ.get("HASTEXO_TEST_BROKER_URLS", "").split()]
SPEC = labs.LabSpec(template="linux.yaml", ssh_user="learner")


@pytest.fixture
def lab_templates(worker_pool, hastexo_settings):
    """The pooled workers' templates and settings (tests/workers.py), in the test process too."""
    return hastexo_settings(template_dir=worker_pool.template_dir, **WORKER_SETTINGS)


@pytest.fixture(params=BROKERS, ids=lambda url: url.split(":")[0])
def broker_worker(request, lab_templates, worker_pool):
    """The session's worker on each broker: the embedded one, and those HASTEXO_TEST_BROKER_URLS names."""
    yield worker_pool.get(request.param)
    delete_labs()


@pytest.fixture
def worker(lab_templates, worker_pool):
    """The session's worker on the embedded broker (the journeys run once, not per broker)."""
    yield worker_pool.get(BROKERS[0])
    delete_labs()


def wait_for(stack_id, wanted, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack = Stack.objects.get(pk=stack_id)
        if stack.status in wanted:
            return stack
        time.sleep(0.1)
    raise AssertionError(f"stack {stack_id} stayed {stack.status} ({stack.error_msg})")


async def ssh(stack, command, stdin=None):
    key = asyncssh.import_private_key(stack.private_key)
    known = asyncssh.import_known_hosts(f"[{stack.ip}]:{stack.ssh_port} {stack.host_key}\n")
    async with asyncssh.connect(
        stack.ip, stack.ssh_port, username=stack.ssh_user, client_keys=[key], known_hosts=known, config=None
    ) as conn:
        result = await conn.run(command, input=stdin, check=False, timeout=20)
        return result.exit_status, result.stdout


def run_ssh(stack, command):
    import asyncio

    return asyncio.run(ssh(stack, command))


def test_launch_round_trip(broker_worker):
    stack = labs.get_stack("course-v1:o+c+r", "learner1")
    started = time.monotonic()
    view = labs.status(stack, SPEC, initialize=True)
    assert view["status"] == states.LAUNCH_PENDING
    stack = wait_for(stack.pk, states.UP | states.FAILED)
    assert stack.status == states.CREATE_COMPLETE, (stack.error_msg, broker_worker.output()[-3000:])
    print(f"\n[{broker_worker.broker_url.split(':')[0]}] launch to CREATE_COMPLETE: {time.monotonic() - started:.2f} s")
    assert run_ssh(stack, "echo $((6*7)); cat notes.txt setup-ran") == (0, "42\nhello from the templateready\n")


def test_suspend_and_resume_keep_files_and_processes(worker, hastexo_settings):
    stack = labs.get_stack("course-v1:o+c+r", "learner2")
    labs.status(stack, SPEC, initialize=True)
    stack = wait_for(stack.pk, states.UP | states.FAILED)
    assert stack.status == states.CREATE_COMPLETE, stack.error_msg
    counter = "i=0; while :; do i=$((i+1)); echo $i > counter; sleep 0.02; done"
    _code, out = run_ssh(stack, f"echo kept > work.txt; nohup sh -c '{counter}' >/dev/null 2>&1 & echo $!")
    pid = int(out.strip())  # as the lab sees it
    home = get_provider("default", get_settings()["providers"]).get(stack.name).extra["home"]

    def count() -> int:
        with open(os.path.join(home, "counter")) as handle:
            return int(handle.read().strip() or 0)

    deadline = time.monotonic() + 10
    while not (os.path.exists(os.path.join(home, "counter")) and count() > 2) and time.monotonic() < deadline:
        time.sleep(0.05)

    # The learner leaves: the suspender finds the stack due and a worker suspends it.
    Stack.objects.filter(pk=stack.pk).update(suspend_by=timezone.now())
    assert jobs.run_suspender(dispatch.send) == 1
    stack = wait_for(stack.pk, {states.SUSPEND_COMPLETE, states.SUSPEND_FAILED})
    assert stack.status == states.SUSPEND_COMPLETE
    # The background job is suspended too: its counter stands still.
    stood = count()
    time.sleep(0.4)
    assert count() == stood

    # The learner comes back: the same stack resumes.
    labs.status(stack, SPEC, initialize=True)
    stack = wait_for(stack.pk, states.UP | states.FAILED)
    assert stack.status == states.RESUME_COMPLETE, stack.error_msg
    assert run_ssh(stack, f"cat work.txt; kill -0 {pid} && echo alive; kill {pid}") == (0, "kept\nalive\n")
    assert get_provider("default", get_settings()["providers"]).list() == [stack.name]


@pytest.mark.db  # database behaviour: runs again on every database (make test-databases)
def test_twenty_concurrent_initialize_calls_create_one_stack(worker, monkeypatch):
    barrier = threading.Barrier(20)
    results = []
    # Every launch the twenty calls send, counted where it is sent: once they have all returned,
    # a duplicate would already be here (no waiting for one to show up in the worker).
    sent = []
    send = dispatch.send

    def counted(name, *args, **kwargs):
        sent.append(name)
        return send(name, *args, **kwargs)

    monkeypatch.setattr(dispatch, "send", counted)

    def open_unit():
        block = make_block("concurrent-learner")
        barrier.wait()
        try:
            results.append(call(block, "get_user_stack_status", {"initialize": True, "reset": False}))
        finally:
            connection.close()

    threads = [threading.Thread(target=open_unit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [code for code, _ in results] == [200] * 20
    assert len({body["name"] for _, body in results}) == 1
    assert sent == ["launch"]  # all twenty have answered: one launch was sent, no duplicate can follow
    stack = Stack.objects.get()
    stack = wait_for(stack.pk, states.UP | states.FAILED)
    assert stack.status == states.CREATE_COMPLETE, stack.error_msg
    assert StackLog.objects.filter(stack=stack, status=states.LAUNCH_PENDING).count() == 1
    assert StackLog.objects.filter(stack=stack, status=states.CREATE_COMPLETE).count() == 1
    assert get_provider("default", get_settings()["providers"]).list() == [stack.name]
    assert worker.output().count("hastexo_xblock.launch") >= 1


def test_no_secret_reaches_pages_responses_messages_or_logs(worker, caplog):
    caplog.set_level("DEBUG")
    block = make_block("secretive-learner")
    bodies = [call(block, "get_user_stack_status", {"initialize": True})[1]]
    stack = wait_for(Stack.objects.get().pk, states.UP | states.FAILED)
    assert stack.status == states.CREATE_COMPLETE, stack.error_msg
    bodies.append(call(block, "get_user_stack_status", {"initialize": True})[1])
    bodies.append(call(block, "get_ticket")[1])
    bodies.append(call(block, "keepalive")[1])
    frag = block.runtime.render(block, "student_view")
    page = frag.head_html() + frag.body_html() + frag.foot_html()
    Stack.objects.filter(pk=stack.pk).update(suspend_by=timezone.now())
    jobs.run_suspender(dispatch.send)
    wait_for(stack.pk, {states.SUSPEND_COMPLETE})

    key_lines = [line for line in stack.private_key.splitlines() if line and not line.startswith("-----")]
    assert key_lines, "the stack has a private key to look for"
    broker_dir = os.path.join(os.environ["HASTEXO_TEST_RUN_DIR"], "broker")
    messages = ""
    for root, _dirs, files in os.walk(broker_dir):
        for name in files:
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as handle:
                messages += handle.read()
    assert "hastexo_xblock.launch" in messages or "hastexo_xblock.suspend" in messages
    places = {
        "page": page,
        "responses": json.dumps(bodies),
        "broker messages": messages,
        "worker log": worker.output(),
        "test-process log": caplog.text,
    }
    for where, text in places.items():
        for line in key_lines:
            assert line not in text, f"private key material in the {where}"


def _slow_lab(tmp_path, ssh_lab, hastexo_settings, seconds):
    """Configure a slow provider shared with worker subprocesses, and short heartbeats for both processes."""
    slow = {"type": "slowfile", "root": str(tmp_path / "slow"), "seconds": seconds, "lab": list(ssh_lab.address)}
    (tmp_path / "linux.yaml").write_text(TEMPLATE)  # the test's own worker reads templates from tmp_path
    # Short heartbeats keep the test short; HASTEXO_TEST_HEARTBEAT="10,45" runs it with the defaults.
    interval, timeout = (int(x) for x in os.environ.get("HASTEXO_TEST_HEARTBEAT", "1,4").split(","))
    times = {"heartbeat_interval": interval, "heartbeat_timeout": timeout}
    os.environ["HASTEXO_TEST_EXTRA_PROVIDERS"] = json.dumps({"slow": slow})
    os.environ["HASTEXO_TEST_SETTINGS_JSON"] = json.dumps(times)
    hastexo_settings(providers={**get_settings()["providers"], "slow": slow}, template_dir=str(tmp_path), **times)
    return slow["root"]


def _unset_slow_lab():
    os.environ.pop("HASTEXO_TEST_EXTRA_PROVIDERS", None)
    os.environ.pop("HASTEXO_TEST_SETTINGS_JSON", None)


@pytest.fixture(params=BROKERS, ids=lambda url: url.split(":")[0])
def slow_lab_broker(request, lab_templates, tmp_path, ssh_lab, hastexo_settings):
    """A broker, a slow provider (6 s) shared with worker subprocesses, and short heartbeats."""
    yield request.param, _slow_lab(tmp_path, ssh_lab, hastexo_settings, 6)
    _unset_slow_lab()


def test_a_slow_launch_whose_worker_lives_is_never_taken_for_dead(lab_templates, tmp_path, ssh_lab, hastexo_settings):
    """A lab that takes 4x ``heartbeat_timeout``: the worker's heartbeats keep it its own, while the page polls."""
    root = _slow_lab(tmp_path, ssh_lab, hastexo_settings, 16)
    spec = labs.LabSpec(template="linux.yaml", providers=[{"name": "slow"}], launch_timeout=600)
    started = start_worker(BROKERS[0], tmp_path)
    try:
        stack = labs.get_stack("course-v1:o+c+r", "patient-learner")
        labs.status(stack, spec, initialize=True)
        deadline = time.monotonic() + 60
        while labs.status(Stack.objects.get(pk=stack.pk), spec)["pending"] and time.monotonic() < deadline:
            time.sleep(0.5)
        stack = Stack.objects.get(pk=stack.pk)
        assert stack.status == states.CREATE_COMPLETE, (stack.error_msg, started.output()[-3000:])
        assert stack.attempt == 1 and creates(root) == [stack.name]  # never relaunched
        assert started.output().count("hastexo_xblock.launch[") >= 1
    finally:
        stop_worker(started)
        _unset_slow_lab()


def launch_time_limits(stack_id):
    """``(hard, soft)`` time limits of every launch message of ``stack_id`` the embedded broker carried."""
    found = []
    for root, _dirs, files in os.walk(os.path.join(os.environ["HASTEXO_TEST_RUN_DIR"], "broker")):
        for name in files:
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as handle:
                try:
                    message = json.loads(handle.read())
                except ValueError:
                    continue
            if not isinstance(message, dict):
                continue
            headers = message.get("headers") or {}
            if headers.get("task") != "hastexo_xblock.launch":
                continue
            args = json.loads(base64.b64decode(message["body"]))[0]
            if args[0] == stack_id:
                found.append(tuple(headers["timelimit"]))
    return found


def test_a_worker_killed_mid_launch_is_recovered_by_the_next_status_request(slow_lab_broker, tmp_path):
    """SIGKILL the worker during CREATE_IN_PROGRESS; a new worker finishes the launch, with no second create.

    Heartbeats here are 1 s (dead after 4 s) to keep the test short; with the
    defaults (10 s, dead after 45 s) the same path recovers within a minute.
    """
    broker_url, root = slow_lab_broker
    spec = labs.LabSpec(template="linux.yaml", providers=[{"name": "slow"}], launch_timeout=600)
    first = start_worker(broker_url, tmp_path)
    try:
        stack = labs.get_stack("course-v1:o+c+r", "killed-mid-launch")
        labs.status(stack, spec, initialize=True)
        stack = wait_for(stack.pk, {states.CREATE_IN_PROGRESS}, timeout=30)
        deadline = time.monotonic() + 10
        while Stack.objects.get(pk=stack.pk).heartbeat_at is None and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
        killed = time.monotonic()
    finally:
        first.stop()
    assert Stack.objects.get(pk=stack.pk).status == states.CREATE_IN_PROGRESS
    second = Worker(broker_url, str(tmp_path / "worker2.log"))
    try:
        # The learner's page keeps polling (without initialize), as the front end does.
        while time.monotonic() - killed < 60:
            view = labs.status(Stack.objects.get(pk=stack.pk), spec)
            if not view["pending"]:
                break
            time.sleep(1)
        recovered = time.monotonic() - killed
        stack = Stack.objects.get(pk=stack.pk)
        assert stack.status == states.CREATE_COMPLETE, (stack.error_msg, second.output()[-3000:])
        print(f"\n[{broker_url.split(':')[0]}] recovered {recovered:.1f} s after the kill")
        assert recovered < 60
        assert creates(root) == [stack.name]  # looked up before creating: no second stack
        if broker_url.startswith("filesystem"):
            # Celery's limits travelled with each launch, from the block's 600 s (not the platform's 900 s).
            limits = launch_time_limits(stack.pk)
            assert len(limits) == 2, limits  # the first launch and the relaunch
            (first_hard, first_soft), (again_hard, again_soft) = sorted(limits, reverse=True)
            assert 600 < first_soft < first_hard <= 600 + 60, limits
            # The relaunch continues the same operation: what is left of the same budget.
            assert again_soft < again_hard < first_hard, limits
        assert StackLog.objects.filter(stack=stack, status=states.CREATE_COMPLETE).count() == 1
        assert StackLog.objects.filter(stack=stack, status=states.LAUNCH_PENDING).count() == 1
    finally:
        second.stop()
        os.environ.pop("HASTEXO_TEST_TEMPLATE_DIR", None)
