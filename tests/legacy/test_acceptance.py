"""Acceptance: the original's database with three learners is adopted, and their labs go on.

The dump (``db/dump.json``) is loaded into the original's tables; real local
labs stand in for the original's Heat stacks, under the original's stack
names: learner 1's lab is running, learner 2's is suspended (with work in
it), learner 3's is running with a progress check pending at the switch
(``state/learner_state.yaml``).  After ``manage.py hastexo_adopt_legacy``:
the running lab is reachable through the gateway, the suspender finds it
when it falls due, the suspended one resumes with the work still there, the
pending check reads as interrupted and a new one runs, nothing is an orphan
(and a lost one under an old name is swept), and a second run adopts nothing.
"""

from __future__ import annotations

import asyncio
import io
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from hastexo_xblock import checkrun, compat, jobs, lifecycle, states
from hastexo_xblock.models import Check, LegacyAdoption, Stack
from hastexo_xblock.providers import get_provider

from ..test_block import call, make_block
from ..test_gateway import gateway, open_terminal  # noqa: F401 (gateway is a fixture)
from ..test_worker import TEMPLATE, run_ssh
from . import db
from .db import schema
from .test_state import LEARNERS

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

COURSE = "course-v1:DemoX+Linux101+2026"
XML = """
<hastexo display_name="Linux 101" stack_template_path="lab.yaml" stack_user_name="training">
  <test><![CDATA[
test -f ~/work.txt || { echo "There is no work.txt." >&2; exit 1; }
]]></test>
</hastexo>
"""


@pytest.fixture
def labs(original_tables, hastexo_settings, tmp_path):
    """The local provider ``default`` with a lab template; every lab deleted afterwards."""
    (tmp_path / "lab.yaml").write_text(TEMPLATE)
    settings = hastexo_settings(template_dir=str(tmp_path), orphan_grace=0)
    provider = get_provider("default", settings["providers"])
    yield provider
    for name in provider.list():
        provider.delete(name)


def original_row(pk):
    return schema.OriginalStack.objects.get(pk=pk)


def as_the_original_left_them(provider):
    """Real labs under the original's names, and what its rows said about them at the switch."""
    dump = db.dump()
    rows = {obj["pk"]: obj["fields"] for obj in dump["objects"] if obj["model"] == "hastexo.stack"}
    now = timezone.now()
    overrides = {}
    for pk in (1, 2, 3):
        lab = provider.create(rows[pk]["name"], TEMPLATE, None, {"run": COURSE})
        assert lab.status == states.CREATE_COMPLETE, lab.status_reason
        overrides[pk] = {
            "ip": lab.outputs.public_ip,
            "key": lab.outputs.private_key,
            "suspend_by": (now + timedelta(minutes=10 * pk)).isoformat(),  # the learners were active
        }
    return overrides


def learner_block(monkeypatch, pk, state=None):
    """Learner ``pk``'s block in the course run, as the LMS would give it to them (``compat`` is the LMS seam)."""
    block = make_block(f"learner-{pk}", XML)
    monkeypatch.setattr(compat, "course_id", lambda b: COURSE)
    monkeypatch.setattr(compat, "anonymous_user_id", lambda b: original_row(int(b.scope_ids.user_id[8:])).student_id)
    for name, value in (state or {}).items():
        if name in block.fields:
            block._field_data.set(block, name, value)  # as the original stored it
    return block


def adopt_command():
    out = io.StringIO()
    call_command("hastexo_adopt_legacy", "--ssh-timeout", "10", stdout=out)
    return out.getvalue()


def test_three_learners_switch_without_losing_their_labs(labs, gateway, monkeypatch, queued):  # noqa: F811
    overrides = as_the_original_left_them(labs)
    # Learner 2's lab is suspended with work in it, as the original's suspender left it.
    db.load(overrides)
    with_work = Stack(
        ip=overrides[2]["ip"],
        ssh_port=labs.get(original_row(2).name).outputs.ssh_port,
        ssh_user="training",
        private_key=overrides[2]["key"],
        host_key=labs.get(original_row(2).name).extra["host_key"],
    )
    assert run_ssh(with_work, "echo 'my work' > work.txt")[0] == 0
    assert labs.suspend(original_row(2).name).status == states.SUSPEND_COMPLETE

    out = adopt_command()
    assert "adopted 5, already adopted 0, not adopted 1" in out, out
    running, suspended, checking = (Stack.objects.get(name=original_row(pk).name) for pk in (1, 2, 3))
    assert (running.status, suspended.status, checking.status) == (
        states.RESUME_COMPLETE,
        states.SUSPEND_COMPLETE,
        states.CREATE_COMPLETE,
    )
    for stack in (running, checking):
        assert stack.host_key == labs.get(stack.name).extra["host_key"]  # pinned at adoption
        assert stack.ssh_port == labs.get(stack.name).outputs.ssh_port and stack.provider == "default"
    with connection.cursor() as cursor:  # encrypted on the way in
        cursor.execute("SELECT private_key FROM hastexo_xblock_stack WHERE id = %s", [running.pk])
        stored = cursor.fetchone()[0]
    assert "PRIVATE KEY" not in stored and running.private_key == overrides[1]["key"]

    # Learner 1: the running lab, through the gateway, with the ticket the block mints.
    block1 = learner_block(monkeypatch, 1)
    assert running.spec["hook_events"] == {"suspend": True, "resume": True, "delete": False}  # as recorded
    body = call(block1, "get_user_stack_status", {"initialize": True})[1]
    assert body["status"] == states.RESUME_COMPLETE and not queued  # not launched again
    spec = Stack.objects.get(pk=running.pk).spec
    assert "adopted_from" not in spec and spec["hook_events"] == {} and spec["ssh_user"] == "training"  # the block's
    code, body = call(block1, "get_ticket")
    assert code == 200, body
    token = parse_qs(urlsplit(body["url"]).query)["ticket"][0]

    async def type_in_lab():
        term = await open_terminal(gateway, token)
        await term.type("echo adopted-$((6*7))\r")
        await term.expect_output(rb"adopted-42")
        await term.ws.close()

    asyncio.run(type_in_lab())

    # The suspender finds it once it falls due (not before), under its old name.
    assert jobs.claim_due(batch=10) == []
    due = Stack.objects.get(pk=running.pk).suspend_by + timedelta(seconds=1)
    assert jobs.claim_due(batch=10, now=due) == [running.pk]
    assert lifecycle.suspend(running.pk) == states.SUSPEND_COMPLETE
    assert labs.get(running.name).status == states.SUSPEND_COMPLETE

    # Learner 2: the suspended lab resumes, with the work still in it.
    block2 = learner_block(monkeypatch, 2)
    body = call(block2, "get_user_stack_status", {"initialize": True})[1]
    assert body["status"] == states.LAUNCH_PENDING and body["name"] == suspended.name
    [(_task, pk, attempt)] = [args for args in queued if args[0] == "launch"]
    assert lifecycle.launch(pk, attempt) == states.RESUME_COMPLETE
    resumed = Stack.objects.get(pk=suspended.pk)
    assert run_ssh(resumed, "cat work.txt") == (0, "my work\n")

    # Learner 3: the check pending at the switch reads as interrupted, then a new one runs on the lab.
    block3 = learner_block(monkeypatch, 3, LEARNERS["check-pending"]["state"])
    assert block3.student_view({}).json_init_args["check_on_load"] is True
    last = call(block3, "check_status")[1]
    assert last["status"] == "error" and "check your progress again" in last["error_msg"]
    started = call(block3, "check_progress")[1]
    assert checkrun.run(started["id"]) == Check.DONE
    done = call(block3, "check_status")[1]
    assert (done["status"], done["pass"], done["total"], done["hints"]) == ("done", 0, 1, ["There is no work.txt."])

    # Nothing is an orphan: the old names are ours, and each is owned.
    listed = set(labs.list())
    assert {running.name, suspended.name, checking.name} <= listed
    deleted = []
    assert jobs.sweep_orphans(lambda provider, name: deleted.append(name)) == ([], 0) and deleted == []

    # A second run adopts nothing new.
    assert "adopted 0, already adopted 5, not adopted 1" in adopt_command()
    assert Stack.objects.filter(course_id=COURSE).count() == 5

    # A lab under an old name that no record owns any more is an orphan like any other.
    Stack.objects.filter(pk=checking.pk).update(status=states.DELETE_COMPLETE, provider="")
    swept = []
    jobs.sweep_orphans(lambda provider, name: swept.append(name))  # first seen
    jobs.sweep_orphans(lambda provider, name: swept.append(name))  # orphan_grace is 0 here
    assert swept == [checking.name]
    assert LegacyAdoption.objects.filter(outcome=LegacyAdoption.NOT_ADOPTED).count() == 1
    assert re.search(r"not adopted hastexo_stack#5 .*gcloud1", adopt_command())
