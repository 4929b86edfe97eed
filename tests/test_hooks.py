"""Hook scripts: run on the lab over SSH before suspend, after resume and before delete.

Real local labs (without the sandbox, so that the hook can write to a file
the test reads), real SSH.  A failing or hanging hook never blocks the lab.
"""

import pytest

from hastexo_xblock import labs, lifecycle, states
from hastexo_xblock.models import Stack, transition

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def lab_files(tmp_path, hastexo_settings):
    record = tmp_path / "hook.log"
    (tmp_path / "t.yaml").write_text("setup: echo ready > ready\n")
    (tmp_path / "hook.sh").write_text(f'echo "$1 $(cat ready)" >> {record}\n')
    (tmp_path / "failing.sh").write_text(f'echo "$1" >> {record}; echo "hook broke" >&2; exit 3\n')
    (tmp_path / "hanging.sh").write_text(f'echo "$1" >> {record}; sleep 30\n')
    hastexo_settings(
        providers={"plain": {"type": "local", "root": str(tmp_path / "labs"), "sandbox": "none"}},
        template_dir=str(tmp_path),
        remote_exec_timeout=2,
    )
    yield record
    from hastexo_xblock.conf import get_settings
    from hastexo_xblock.providers import get_provider

    provider = get_provider("plain", get_settings()["providers"])
    for name in provider.list():
        provider.delete(name)


def launch(hook="hook.sh", events=None, learner="hooked"):
    spec = labs.LabSpec(template="t.yaml", providers=[{"name": "plain"}], hook_script=hook, hook_events=events or {})
    stack = labs.get_stack("course-v1:o+hooks+r", learner)
    labs.status(stack, spec, initialize=True, enqueue=lambda *a, **k: None)
    stack.refresh_from_db()
    return lifecycle.launch(stack.pk, stack.attempt), stack.pk


def suspend(pk):
    assert transition(pk, states.SUSPEND_PENDING)
    return lifecycle.suspend(pk)


def delete(pk):
    assert transition(pk, states.DELETE_PENDING)
    return lifecycle.delete(pk)


def lines(record):
    return record.read_text().split("\n")[:-1] if record.exists() else []


ALL_EVENTS = {"suspend": True, "resume": True, "delete": True}


def test_each_event_runs_the_hook_with_its_name(lab_files):
    status, pk = launch(events=ALL_EVENTS)
    assert status == states.CREATE_COMPLETE and lines(lab_files) == []  # no hook on create
    assert suspend(pk) == states.SUSPEND_COMPLETE
    assert lines(lab_files) == ["suspend ready"]
    assert launch(events=ALL_EVENTS)[0] == states.RESUME_COMPLETE
    assert lines(lab_files) == ["suspend ready", "resume ready"]
    assert suspend(pk) == states.SUSPEND_COMPLETE
    # The reaper deletes a suspended lab: it is woken for its delete hook first.
    assert delete(pk) == states.DELETE_COMPLETE
    assert lines(lab_files) == ["suspend ready", "resume ready", "suspend ready", "delete ready"]
    assert Stack.objects.get(pk=pk).provider == ""


def test_a_hook_script_without_hook_events_runs_on_no_event(lab_files):
    """The original's meaning: hook_events empty (or an event left out) runs no hook."""
    status, pk = launch(events={})
    suspend(pk)
    launch(events={"suspend": True})  # resume and delete left out: off
    transition(pk, states.SUSPEND_PENDING)
    lifecycle.suspend(pk)
    delete(pk)
    assert status == states.CREATE_COMPLETE and lines(lab_files) == ["suspend ready"]


def test_hook_events_choose_the_events(lab_files):
    assert launch(events={"suspend": False, "resume": True, "delete": False})[0] == states.CREATE_COMPLETE
    pk = Stack.objects.get().pk
    suspend(pk)
    launch(events={"suspend": False, "resume": True, "delete": False})
    transition(pk, states.SUSPEND_PENDING)
    lifecycle.suspend(pk)
    delete(pk)
    assert lines(lab_files) == ["resume ready"]


@pytest.mark.parametrize("hook", ["failing.sh", "hanging.sh", "missing.sh"])
def test_a_failing_hook_never_blocks_the_lifecycle(lab_files, hook, caplog):
    status, pk = launch(hook=hook, events=ALL_EVENTS, learner=f"l-{hook}")
    assert status == states.CREATE_COMPLETE
    assert suspend(pk) == states.SUSPEND_COMPLETE
    assert launch(hook=hook, events=ALL_EVENTS, learner=f"l-{hook}")[0] == states.RESUME_COMPLETE
    assert suspend(pk) == states.SUSPEND_COMPLETE
    assert delete(pk) == states.DELETE_COMPLETE
    expected = {
        "failing.sh": "exited 3: hook broke",
        "hanging.sh": "did not finish within 2 s",
        "missing.sh": "missing.sh not found",
    }[hook]
    assert expected in caplog.text
    if hook != "missing.sh":
        assert lines(lab_files) == ["suspend", "resume", "suspend", "delete"]
