"""The whole lab lifecycle on a real OpenStack Heat, through a real Celery worker.

Heat here has no Nova or Neutron, so the test template describes the lab with
``OS::Heat::*`` resources and takes the lab's address and port as parameter
defaults; the lab itself is a real SSH server the test runs, so a launch only
completes once SSH answers.  Skipped without Heat, except where ``CI`` or
``HASTEXO_REQUIRE_HEAT`` is set (see ``tests/heat_env.py``).
"""

import json
import os
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from hastexo_xblock import dispatch, jobs, labs, lifecycle, states
from hastexo_xblock.conf import get_settings
from hastexo_xblock.models import Stack
from hastexo_xblock.providers import get_provider

from . import heat_env
from .fakes import collect_sends as _collect
from .test_block import call, make_block
from .test_worker import start_worker, stop_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

LAB_TEMPLATE = """
heat_template_version: 2018-08-31
description: a test lab - the server is a real SSH server the test runs
parameters:
  run: {{type: string}}
  public_key: {{type: string, default: ""}}
  lab_ip: {{type: string, default: "{ip}"}}
  lab_port: {{type: number, default: {port}}}
resources:
  password:
    type: OS::Heat::RandomString
    properties: {{length: 12}}
  address:
    type: OS::Heat::Value
    properties: {{type: string, value: {{get_param: lab_ip}}}}
  server:
    type: OS::Heat::TestResource
    properties:
      value: {{get_param: public_key}}
      action_wait_secs: {{create: 2}}
    depends_on: [address]
outputs:
  public_ip: {{value: {{get_attr: [address, value]}}}}
  ssh_port: {{value: {{get_param: lab_port}}}}
  private_key: {{value: ""}}
  password: {{value: {{get_attr: [password, value]}}}}
"""

XML = """
<hastexo display_name="Heat lab" stack_user_name="learner" stack_key_type="ed25519">
  <option:providers xmlns:option="http://code.edx.org/xblock/option">{providers}</option:providers>
</hastexo>
"""


@pytest.fixture
def heat(hastexo_settings, ssh_lab, tmp_path):
    """Providers heat1 (project demo) and heat2 (project demo2), the lab template, cleanup."""
    extra = {"heat1": heat_env.provider_config("demo"), "heat2": heat_env.provider_config("demo2")}
    (tmp_path / "lab.yaml").write_text(LAB_TEMPLATE.format(ip="127.0.0.1", port=ssh_lab.port))
    os.environ["HASTEXO_TEST_EXTRA_PROVIDERS"] = json.dumps(extra)
    providers = {**get_settings()["providers"], **extra}
    settings = hastexo_settings(providers=providers, template_dir=str(tmp_path), orphan_grace=60)
    yield settings
    os.environ.pop("HASTEXO_TEST_EXTRA_PROVIDERS", None)
    for name in ("heat1", "heat2"):
        provider = get_provider(name, settings["providers"])
        for stack_name in provider.list():
            if stack_name.startswith("hx-"):
                provider.delete(stack_name)


def heat_status(provider_name, stack_name):
    return get_provider(provider_name, get_settings()["providers"]).get(stack_name).status


def watch_heat(provider_name, stack_name, wanted, seen):
    """Record when Heat first reports ``wanted`` (polled every 50 ms)."""
    provider = get_provider(provider_name, get_settings()["providers"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if provider.get(stack_name).status == wanted:
            seen[wanted] = time.monotonic()
            return
        time.sleep(0.05)


def test_open_suspend_resume_reset_reap_through_a_worker(heat, tmp_path):
    worker = start_worker("filesystem://", tmp_path)
    try:
        block = make_block(
            "heat-learner", xml=XML.format(providers=json.dumps([{"name": "heat1", "template": "lab.yaml"}]))
        )
        code, body = call(block, "get_user_stack_status", {"initialize": True})
        assert code == 200 and body["status"] == states.LAUNCH_PENDING
        stack = Stack.objects.get(name=body["name"])

        seen = {}
        watcher = threading.Thread(target=watch_heat, args=("heat1", stack.name, states.CREATE_COMPLETE, seen))
        watcher.start()
        progress = set()
        deadline = time.monotonic() + 120
        while Stack.objects.get(pk=stack.pk).status not in states.UP | states.FAILED and time.monotonic() < deadline:
            progress.add(call(block, "get_user_stack_status", {"initialize": False})[1]["progress"])
            time.sleep(0.05)
        row_up = time.monotonic()
        watcher.join(10)
        stack.refresh_from_db()
        assert stack.status == states.CREATE_COMPLETE, (stack.error_msg, worker.output()[-3000:])
        lag = row_up - seen[states.CREATE_COMPLETE]
        print(f"\nHeat CREATE_COMPLETE -> stack row CREATE_COMPLETE (SSH answered): {lag:.2f} s")
        assert lag < 2.0
        assert stack.provider == "heat1" and stack.ip == "127.0.0.1" and stack.host_key
        assert stack.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")  # made by the worker
        assert len(stack.password) == 12
        assert any(0.25 < p < 0.8 for p in progress), progress  # Heat's own resource progress was shown

        # The learner leaves: suspended on Heat.
        Stack.objects.filter(pk=stack.pk).update(suspend_by=timezone.now())
        assert jobs.run_suspender(dispatch.send) == 1
        assert wait_for(stack.pk, {states.SUSPEND_COMPLETE, states.SUSPEND_FAILED}).status == states.SUSPEND_COMPLETE
        assert heat_status("heat1", stack.name) == states.SUSPEND_COMPLETE

        # The learner comes back: resumed, same stack, same key.
        call(block, "get_user_stack_status", {"initialize": True})
        resumed = wait_for(stack.pk, states.UP | states.FAILED)
        assert resumed.status == states.RESUME_COMPLETE, resumed.error_msg
        assert resumed.private_key == stack.private_key and resumed.host_key == stack.host_key
        stack_id = get_provider("heat1", get_settings()["providers"]).get(stack.name).extra["stack_id"]

        # Reset: a new stack, a new key.
        call(block, "get_user_stack_status", {"initialize": True, "reset": True})
        time.sleep(0.5)
        reset = wait_for(stack.pk, states.UP | states.FAILED, timeout=120)
        assert reset.status == states.CREATE_COMPLETE, (reset.error_msg, worker.output()[-6000:])
        assert get_provider("heat1", get_settings()["providers"]).get(stack.name).extra["stack_id"] != stack_id
        assert reset.private_key != stack.private_key

        # Suspended and aged: the reaper deletes it on Heat.
        Stack.objects.filter(pk=stack.pk).update(suspend_by=timezone.now())
        jobs.run_suspender(dispatch.send)
        wait_for(stack.pk, {states.SUSPEND_COMPLETE})
        Stack.objects.filter(pk=stack.pk).update(suspended_at=timezone.now() - timedelta(days=15))
        report = jobs.run_reaper(
            lambda name, *a: dispatch.send(name, *a) if name == "delete" else pytest.fail(f"no orphan expected: {a}")
        )
        assert report.claimed == [stack.pk]
        gone = wait_for(stack.pk, {states.DELETE_COMPLETE, states.DELETE_FAILED}, timeout=120)
        assert gone.status == states.DELETE_COMPLETE and gone.private_key == "" and gone.provider == ""
        assert heat_status("heat1", stack.name) == states.DELETE_COMPLETE
    finally:
        stop_worker(worker)


def test_an_up_lab_of_the_same_age_is_left_alone_and_orphans_go(heat):
    stack = labs.get_stack("course-v1:o+heat+r", "up-learner")
    labs.status(
        stack,
        labs.LabSpec(providers=[{"name": "heat1", "template": "lab.yaml"}], key_type="ed25519"),
        initialize=True,
        enqueue=lambda *a, **k: None,
    )
    stack.refresh_from_db()
    assert lifecycle.launch(stack.pk, stack.attempt) == states.CREATE_COMPLETE
    Stack.objects.filter(pk=stack.pk).update(suspended_at=timezone.now() - timedelta(days=30))

    # An orphan: created in Heat under our naming scheme, no row owns it.
    provider = get_provider("heat1", get_settings()["providers"])
    orphan = f"hx-orphan-{uuid.uuid4().hex[:8]}"
    provider.create(
        orphan,
        Path(heat["template_dir"], "lab.yaml").read_text(),
        None,
        {"run": "orphaned"},
    )
    deleted = []
    report = jobs.run_reaper(_collect(deleted))
    assert report.claimed == [] and deleted == []  # the up lab stays; the orphan is in its grace period
    report = jobs.run_reaper(
        _collect(deleted),
        now=timezone.now() + timedelta(seconds=61),
    )
    assert deleted == [("heat1", orphan)]
    assert lifecycle.delete_orphan("heat1", orphan) == states.DELETE_COMPLETE
    assert orphan not in provider.list()
    assert Stack.objects.get(pk=stack.pk).status == states.CREATE_COMPLETE


def test_fallback_and_capacity_across_two_projects(heat, hastexo_settings):
    providers = [
        {"name": "heat1", "capacity": 1, "template": "lab.yaml"},
        {"name": "heat2", "capacity": 1, "template": "lab.yaml"},
    ]
    spec = labs.LabSpec(providers=providers, key_type="ed25519")

    def launch(learner):
        stack = labs.get_stack("course-v1:o+heat+cap", learner)
        labs.status(stack, spec, initialize=True, enqueue=lambda *a, **k: None)
        stack.refresh_from_db()
        lifecycle.launch(stack.pk, stack.attempt)
        return Stack.objects.get(pk=stack.pk)

    first, second = launch("a"), launch("b")
    assert (first.status, first.provider) == (states.CREATE_COMPLETE, "heat1")
    assert (second.status, second.provider) == (states.CREATE_COMPLETE, "heat2")
    assert first.name in heat_env_list("heat1") and second.name in heat_env_list("heat2")
    third = launch("c")
    assert third.status == states.LAUNCH_ERROR and "No lab environment is available" in third.error_msg

    # Both labs go away; then the first provider fails (its credentials revoked) → the second is used.
    for stack in (first, second):
        Stack.objects.filter(pk=stack.pk).update(status=states.DELETE_PENDING)
        assert lifecycle.delete(stack.pk) == states.DELETE_COMPLETE
    broken = {**get_settings()["providers"]["heat1"], "os_password": "wrong"}
    hastexo_settings(providers={**get_settings()["providers"], "heat1": broken})
    fourth = launch("d")
    assert (fourth.status, fourth.provider) == (states.CREATE_COMPLETE, "heat2"), fourth.error_msg
    # The first failing and the second full: the operator reads why (the provider named), the learner a message.
    fifth = launch("e")
    assert fifth.status == states.CREATE_FAILED
    assert "heat1" in fifth.error_detail and "authentication failed" in fifth.error_detail
    assert "heat1" not in fifth.error_msg and "could not be created" in labs.view(fifth)["error_msg"]


def heat_env_list(provider_name):
    return get_provider(provider_name, get_settings()["providers"]).list()
