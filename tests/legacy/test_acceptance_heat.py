"""Acceptance on a real OpenStack Heat: stacks under the original's names are adopted and managed.

The original named a learner's Heat stack ``<course>_<run>_<anonymous id>``
(``hx-…`` is this project's scheme).  Two stacks are created under such
names (unique to this run: the Heat is shared), one left running and one
suspended, the original's rows for them are adopted, and every lifecycle
step then acts on the old name: the suspender suspends the running one, the
learner's visit resumes the suspended one, the reaper deletes it; the orphan
sweep lists both and counts them as owned.  Skipped without Heat, except
where ``CI`` or ``HASTEXO_REQUIRE_HEAT`` is set (``tests/heat_env.py``).
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import asyncssh
import pytest
from django.utils import timezone

from hastexo_xblock import jobs, labs, lifecycle, stackops, states, timing
from hastexo_xblock.legacy import adopt
from hastexo_xblock.models import OrphanSighting, Stack, transition
from hastexo_xblock.providers import get_provider

from .. import heat_env
from . import db

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

COURSE = "course-v1:DemoX+Linux101+2026"

# The lab's address and port are parameter defaults (this Heat has no Nova); the key is an output,
# as the original's templates gave it (OS::Nova::KeyPair's private_key there).
TEMPLATE = """
heat_template_version: 2018-08-31
parameters:
  run: {{type: string}}
  lab_ip: {{type: string, default: "127.0.0.1"}}
  lab_port: {{type: number, default: {port}}}
  lab_key: {{type: string, default: {key}}}
resources:
  server:
    type: OS::Heat::TestResource
    properties: {{value: {{get_param: run}}, action_wait_secs: {{create: 1}}}}
outputs:
  public_ip: {{value: {{get_param: lab_ip}}}}
  ssh_port: {{value: {{get_param: lab_port}}}}
  private_key: {{value: {{get_param: lab_key}}}}
"""


@pytest.fixture
def heat_default(original_tables, hastexo_settings, ssh_lab, tmp_path):
    """The original's ``default`` provider is this Heat; our stacks are deleted afterwards."""
    config = heat_env.provider_config("demo")
    key = asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode()
    (tmp_path / "lab.yaml").write_text(TEMPLATE.format(port=ssh_lab.port, key=json.dumps(key)))
    settings = hastexo_settings(providers={"default": config}, template_dir=str(tmp_path), orphan_grace=3600)
    provider = get_provider("default", settings["providers"])
    created: list[str] = []
    yield provider, (tmp_path / "lab.yaml").read_text(), key, created
    for name in created:
        provider.delete(name)
    for name in created:
        stackops.wait_for(provider, name, timing.Deadline.after(120))


def settle(provider, name):
    return stackops.wait_for(provider, name, timing.Deadline.after(120))


def test_the_originals_stack_names_on_heat(heat_default, ssh_lab):
    provider, template, key, created = heat_default
    students = [uuid.uuid4().hex for _ in range(2)]
    names = [f"Linux101_2026_{student}" for student in students]  # the original's scheme, unique to this run
    for name in names:
        created.append(name)
        provider.create(name, template, None, {"run": COURSE})
        assert settle(provider, name).status == states.CREATE_COMPLETE
    provider.suspend(names[1])
    assert settle(provider, names[1]).status == states.SUSPEND_COMPLETE
    soon = (timezone.now() + timedelta(minutes=10)).isoformat()
    db.load(
        {
            1: {"name": names[0], "student_id": students[0], "ip": "127.0.0.1", "key": key, "suspend_by": soon},
            2: {"name": names[1], "student_id": students[1], "ip": "127.0.0.1", "key": key},
        }
    )

    report = adopt.adopt(ssh_timeout=10)
    assert {r.name: r.status for r in report.adopted if r.name in names} == {
        names[0]: states.RESUME_COMPLETE,
        names[1]: states.SUSPEND_COMPLETE,
    }, [r.line() for r in report.results]
    running, suspended = (Stack.objects.get(name=name) for name in names)
    assert running.provider == suspended.provider == "default"
    assert running.host_key.split()[:2] == ssh_lab.host_key.split()[:2]  # pinned at adoption
    assert running.ssh_port == ssh_lab.port and running.private_key == key

    # The orphan sweep lists the old names and counts them as owned.
    assert set(names) <= set(provider.list())
    deleted = []
    jobs.sweep_orphans(lambda p, n: deleted.append(n))
    assert deleted == [] and not OrphanSighting.objects.filter(name__in=names).exists()

    # The suspender suspends the running lab on Heat, by its old name.
    due = running.suspend_by + timedelta(seconds=1)
    assert running.pk in jobs.claim_due(batch=50, now=due)
    assert lifecycle.suspend(running.pk) == states.SUSPEND_COMPLETE
    assert provider.get(names[0]).status == states.SUSPEND_COMPLETE

    # The learner's next visit resumes the suspended one on Heat.
    sent = []
    labs.status(suspended, labs.LabSpec(template="lab.yaml"), initialize=True, enqueue=lambda *a, **k: sent.append(a))
    [(_task, pk, attempt)] = sent
    assert lifecycle.launch(pk, attempt) == states.RESUME_COMPLETE
    assert provider.get(names[1]).status == states.RESUME_COMPLETE
    assert Stack.objects.get(pk=pk).host_key.split()[:2] == ssh_lab.host_key.split()[:2]

    # The reaper's delete removes it from Heat, by its old name.
    assert transition(pk, states.DELETE_PENDING)
    assert lifecycle.delete(pk) == states.DELETE_COMPLETE
    assert provider.get(names[1]).status == states.DELETE_COMPLETE
    assert names[1] not in provider.list()

    # An old name no record owns any more is seen as an orphan (and left alone during orphan_grace).
    Stack.objects.filter(pk=running.pk).update(status=states.DELETE_COMPLETE, provider="")
    jobs.sweep_orphans(lambda p, n: deleted.append(n))
    assert OrphanSighting.objects.filter(provider="default", name=names[0]).exists() and deleted == []
