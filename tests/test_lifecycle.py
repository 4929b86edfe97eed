"""The worker's lifecycle against small fake providers (slow, never ready, failing, flaky).

The lab's SSH server is real (an in-process asyncssh server): a launch only
completes once SSH answers with the pinned host key.
"""

from datetime import timedelta

import asyncssh
import pytest
from django.utils import timezone

from hastexo_xblock import labs, lifecycle, states
from hastexo_xblock.models import Stack, StackLog, transition

from .fakes import FakeProvider

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]


def claim(spec=None, learner="anon1", course="course-v1:o+c+r", reset=False):
    """Run a status request and return (stack, attempt) of the launch it enqueued."""
    sent = []
    stack = labs.get_stack(course, learner)
    labs.status(
        stack,
        spec or labs.LabSpec(template="t.yaml", providers=[{"name": "fake1"}]),
        initialize=True,
        reset=reset,
        enqueue=lambda *a, **k: sent.append((a, k)),
    )
    assert len(sent) == 1, sent
    (_name, stack_id, attempt), _kwargs = sent[0]
    return Stack.objects.get(pk=stack_id), attempt


@pytest.fixture(autouse=True)
def templates(tmp_path, hastexo_settings):
    (tmp_path / "t.yaml").write_text("fake template")
    hastexo_settings(template_dir=str(tmp_path))


def calls(op):
    return [c for c in FakeProvider.calls if c[1] == op]


def test_create_pins_the_host_key_and_stores_outputs(fake_providers, ssh_lab):
    stack, attempt = claim()
    assert lifecycle.launch(stack.pk, attempt) == states.CREATE_COMPLETE
    stack.refresh_from_db()
    assert stack.provider == "fake1" and stack.ip == "127.0.0.1" and stack.ssh_port == ssh_lab.port
    assert stack.host_key == ssh_lab.host_key
    assert stack.private_key == "-----FAKE PRIVATE KEY-----"
    assert stack.suspend_by > timezone.now() and stack.status_deadline is None
    assert (stack.phase, stack.progress) == (states.PHASE_READY, 1.0)
    assert [log.status for log in StackLog.objects.filter(stack=stack)] == [
        states.LAUNCH_PENDING,
        states.CREATE_IN_PROGRESS,
        states.CREATE_COMPLETE,
    ]


def test_a_desktop_lab_records_where_its_desktop_listens(fake_providers, ssh_lab):
    fake_providers(fake1={"extra": {"vnc": "unix:/run/desktop.sock", "rdp": "10.0.0.5:3389"}})
    spec = labs.LabSpec(template="t.yaml", providers=[{"name": "fake1"}], protocol="vnc")
    stack, attempt = claim(spec)
    assert lifecycle.launch(stack.pk, attempt) == states.CREATE_COMPLETE
    stack.refresh_from_db()
    assert stack.desktop == "unix:/run/desktop.sock"
    # A terminal lab records none, even when the provider reports one.
    terminal, attempt = claim(learner="anon2")
    assert lifecycle.launch(terminal.pk, attempt) == states.CREATE_COMPLETE
    terminal.refresh_from_db()
    assert terminal.desktop == ""


def test_an_rdp_lab_without_guacd_fails_at_launch_with_a_clear_message(fake_providers, caplog):
    spec = labs.LabSpec(template="t.yaml", providers=[{"name": "fake1"}], protocol="rdp")
    stack, attempt = claim(spec)
    assert lifecycle.launch(stack.pk, attempt) == states.LAUNCH_ERROR
    stack.refresh_from_db()
    assert "cannot show remote desktops (RDP)" in stack.error_msg
    assert not calls("create")  # nothing was made only to show a blank screen
    assert any("needs the 'guacd' setting" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


def test_an_rdp_lab_launches_where_guacd_is_configured(fake_providers, hastexo_settings):
    hastexo_settings(guacd={"host": "guacd.example", "port": 4822})
    spec = labs.LabSpec(template="t.yaml", providers=[{"name": "fake1"}], protocol="rdp")
    stack, attempt = claim(spec)
    assert lifecycle.launch(stack.pk, attempt) == states.CREATE_COMPLETE


def test_slow_provider_reports_progress_and_completes(fake_providers, monkeypatch):
    fake_providers(fake1={"polls": 3})
    seen = []
    real = lifecycle._set_phase
    monkeypatch.setattr(lifecycle, "_set_phase", lambda *a: (seen.append(a[2]), real(*a)))
    monkeypatch.setattr(lifecycle.CLOCK, "sleep", lambda seconds: None)
    stack, attempt = claim()
    assert lifecycle.launch(stack.pk, attempt) == states.CREATE_COMPLETE
    assert states.PHASE_BOOTING in seen and seen.index(states.PHASE_BOOTING) < seen.index(states.PHASE_SSH)


def test_never_ready_provider_times_out_with_a_clear_message(fake_providers):
    fake_providers(fake1={"polls": -1})
    stack, attempt = claim(labs.LabSpec(template="t.yaml", providers=[{"name": "fake1"}], launch_timeout=2))
    assert lifecycle.launch(stack.pk, attempt) == states.LAUNCH_TIMEOUT
    stack.refresh_from_db()
    assert stack.status == states.LAUNCH_TIMEOUT and "too long" in stack.error_msg
    # Not a trap: the next request launches again.
    stack2, attempt2 = claim()
    assert stack2.pk == stack.pk and attempt2 == attempt + 1


def test_failing_provider_falls_back_to_the_next(fake_providers):
    fake_providers(fake1={"fail_create": "Resource CREATE failed: quota exceeded"})
    stack, attempt = claim(labs.LabSpec(template="t.yaml", providers=[{"name": "fake1"}, {"name": "fake2"}]))
    assert lifecycle.launch(stack.pk, attempt) == states.CREATE_COMPLETE
    assert Stack.objects.get(pk=stack.pk).provider == "fake2"
    assert ("fake1", "delete", stack.name) in FakeProvider.calls  # the failed one is cleaned up
    assert FakeProvider.stacks["fake1"] == {}


def test_all_providers_failing_reports_their_reasons(fake_providers):
    fake_providers(fake1={"fail_create": "quota exceeded"}, fake2={"fail_create": "no valid host"})
    stack, attempt = claim(labs.LabSpec(template="t.yaml", providers=[{"name": "fake1"}, {"name": "fake2"}]))
    assert lifecycle.launch(stack.pk, attempt) == states.CREATE_FAILED
    stack.refresh_from_db()
    assert "quota exceeded" in stack.error_msg and "no valid host" in stack.error_msg
    assert stack.provider == ""


def test_capacity_is_respected_per_course(fake_providers):
    spec = labs.LabSpec(template="t.yaml", providers=[{"name": "fake1", "capacity": 1}, {"name": "fake2"}])
    first, attempt = claim(spec, learner="a")
    assert lifecycle.launch(first.pk, attempt) == states.CREATE_COMPLETE
    second, attempt = claim(spec, learner="b")
    assert lifecycle.launch(second.pk, attempt) == states.CREATE_COMPLETE
    assert Stack.objects.get(pk=second.pk).provider == "fake2"
    # Another course has its own capacity.
    other, attempt = claim(spec, learner="a", course="course-v1:o+other+r")
    assert lifecycle.launch(other.pk, attempt) == states.CREATE_COMPLETE
    assert Stack.objects.get(pk=other.pk).provider == "fake1"


def test_no_provider_available_is_a_learner_message(fake_providers):
    providers = [{"name": "fake1", "capacity": 0}, {"name": "fake2", "capacity": 0}]
    spec = labs.LabSpec(template="t.yaml", providers=providers)
    stack, attempt = claim(spec)
    assert lifecycle.launch(stack.pk, attempt) == states.LAUNCH_ERROR
    assert "No lab environment is available" in Stack.objects.get(pk=stack.pk).error_msg
    assert calls("create") == []


def test_missing_template_names_the_path(fake_providers):
    stack, attempt = claim(labs.LabSpec(template="nope/missing.yaml", providers=[{"name": "fake1"}]))
    assert lifecycle.launch(stack.pk, attempt) == states.LAUNCH_ERROR
    assert "nope/missing.yaml" in Stack.objects.get(pk=stack.pk).error_msg


def test_transient_errors_are_retried(fake_providers, monkeypatch):
    fake_providers(fake1={"transient": 2, "polls": 1})
    monkeypatch.setattr(lifecycle.CLOCK, "sleep", lambda seconds: None)
    stack, attempt = claim()
    assert lifecycle.launch(stack.pk, attempt) == states.CREATE_COMPLETE, Stack.objects.get(pk=stack.pk).error_msg
    assert len(calls("create")) == 1


def test_a_redelivered_task_creates_nothing_twice(fake_providers):
    stack, attempt = claim()
    assert lifecycle.launch(stack.pk, attempt) == states.CREATE_COMPLETE
    assert lifecycle.launch(stack.pk, attempt) == states.CREATE_COMPLETE
    assert lifecycle.launch(stack.pk, attempt - 1) == states.CREATE_COMPLETE  # stale: no-op
    assert len(calls("create")) == 1


def test_a_worker_killed_mid_create_is_continued_not_duplicated(fake_providers):
    stack, attempt = claim()
    # The first worker got as far as asking the provider, then died.
    Stack.objects.filter(pk=stack.pk).update(provider="fake1")
    transition(stack.pk, states.CREATE_IN_PROGRESS)
    FakeProvider("fake1", {"type": "fake", "lab": None}).stacks["fake1"][stack.name] = {
        "status": states.CREATE_COMPLETE,
        "final": states.CREATE_COMPLETE,
        "left": 0,
        "reason": "",
    }
    FakeProvider.calls.clear()
    assert lifecycle.launch(stack.pk, attempt) == states.CREATE_COMPLETE
    assert calls("create") == []


def test_suspend_then_resume(fake_providers):
    stack, attempt = claim()
    lifecycle.launch(stack.pk, attempt)
    assert transition(stack.pk, states.SUSPEND_PENDING)
    assert lifecycle.suspend(stack.pk) == states.SUSPEND_COMPLETE
    stack, attempt = claim()
    assert lifecycle.launch(stack.pk, attempt) == states.RESUME_COMPLETE
    assert len(calls("create")) == 1 and len(calls("resume")) == 1


def test_reset_deletes_and_creates_anew(fake_providers):
    stack, attempt = claim()
    lifecycle.launch(stack.pk, attempt)
    stack, attempt = claim(reset=True)
    assert lifecycle.launch(stack.pk, attempt, reset=True) == states.CREATE_COMPLETE
    assert [c[1] for c in FakeProvider.calls if c[1] in ("create", "delete")] == ["create", "delete", "create"]


def test_a_changed_host_key_is_refused(fake_providers, ssh_lab):
    stack, attempt = claim()
    other_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()
    Stack.objects.filter(pk=stack.pk).update(host_key=other_key)
    assert lifecycle.launch(stack.pk, attempt) == states.LAUNCH_ERROR
    assert "identity" in Stack.objects.get(pk=stack.pk).error_msg


@pytest.mark.parametrize(
    ("pending", "provider_status", "expected"),
    [
        (states.LAUNCH_PENDING, None, states.LAUNCH_TIMEOUT),
        (states.SUSPEND_PENDING, states.SUSPEND_COMPLETE, states.SUSPEND_COMPLETE),
        (states.SUSPEND_PENDING, states.CREATE_COMPLETE, states.CREATE_COMPLETE),
        (states.SUSPEND_PENDING, states.CREATE_FAILED, states.SUSPEND_FAILED),
        (states.DELETE_PENDING, None, states.DELETE_COMPLETE),
        (states.DELETE_PENDING, states.SUSPEND_COMPLETE, states.DELETE_FAILED),
    ],
)
def test_overdue_pending_states_are_recovered_from_the_provider(fake_providers, pending, provider_status, expected):
    stack = labs.get_stack("c", "l")
    Stack.objects.filter(pk=stack.pk).update(
        status=pending, provider="fake1", status_deadline=timezone.now() - timedelta(seconds=1)
    )
    if provider_status:
        FakeProvider("fake1", {"type": "fake", "lab": None}).stacks["fake1"][stack.name] = {
            "status": provider_status,
            "final": provider_status,
            "left": 0,
            "reason": "",
        }
    assert lifecycle.recover(stack.pk) == expected
    assert Stack.objects.get(pk=stack.pk).status == expected


def test_a_pending_state_before_its_deadline_is_left_alone(fake_providers):
    stack = labs.get_stack("c", "l")
    Stack.objects.filter(pk=stack.pk).update(
        status=states.LAUNCH_PENDING, status_deadline=timezone.now() + timedelta(minutes=5)
    )
    assert lifecycle.recover(stack.pk) == states.LAUNCH_PENDING


def test_a_create_still_in_progress_is_waited_for_not_restarted(fake_providers, monkeypatch):
    monkeypatch.setattr(lifecycle.CLOCK, "sleep", lambda seconds: None)
    stack, attempt = claim()
    # The first worker started the create and died; the provider is still creating.
    Stack.objects.filter(pk=stack.pk).update(provider="fake1")
    transition(stack.pk, states.CREATE_IN_PROGRESS)
    FakeProvider("fake1", {"type": "fake", "lab": None}).stacks["fake1"][stack.name] = {
        "status": states.CREATE_IN_PROGRESS,
        "final": states.CREATE_COMPLETE,
        "left": 3,
        "reason": "",
    }
    FakeProvider.calls.clear()
    assert lifecycle.launch(stack.pk, attempt) == states.CREATE_COMPLETE
    assert calls("create") == [] and calls("delete") == []


@pytest.mark.parametrize("key_type", ["ed25519", "rsa"])
def test_the_worker_makes_the_key_pair_when_asked(fake_providers, key_type):
    stack, attempt = claim(labs.LabSpec(template="t.yaml", providers=[{"name": "fake1"}], key_type=key_type))
    assert lifecycle.launch(stack.pk, attempt) == states.CREATE_COMPLETE
    stack.refresh_from_db()
    private = asyncssh.import_private_key(stack.private_key)
    public = private.export_public_key("openssh").decode().strip()
    assert FakeProvider.parameters[stack.name] == {"run": "course-v1:o+c+r", "public_key": public}
    assert public.startswith("ssh-ed25519" if key_type == "ed25519" else "ssh-rsa")
    # A reset makes a new key; a resume keeps it.
    stack, attempt = claim(
        labs.LabSpec(template="t.yaml", providers=[{"name": "fake1"}], key_type=key_type), reset=True
    )
    lifecycle.launch(stack.pk, attempt, reset=True)
    assert Stack.objects.get(pk=stack.pk).private_key != private.export_private_key("openssh").decode()


def test_an_unknown_key_type_is_an_author_error(fake_providers):
    stack, attempt = claim(labs.LabSpec(template="t.yaml", providers=[{"name": "fake1"}], key_type="dsa"))
    assert lifecycle.launch(stack.pk, attempt) == states.LAUNCH_ERROR
    assert "stack_key_type" in Stack.objects.get(pk=stack.pk).error_msg


def test_a_failed_resume_is_suspended_again_and_keeps_its_key(fake_providers, monkeypatch):
    stack, attempt = claim()
    lifecycle.launch(stack.pk, attempt)
    transition(stack.pk, states.SUSPEND_PENDING)
    lifecycle.suspend(stack.pk)
    key = Stack.objects.get(pk=stack.pk).private_key
    monkeypatch.setattr(FakeProvider, "resume", lambda self, name: self._start(name, states.RESUME_FAILED, "no host"))
    stack, attempt = claim()
    assert lifecycle.launch(stack.pk, attempt) == states.RESUME_FAILED
    stack.refresh_from_db()
    assert "no host" in stack.error_msg and stack.private_key == key
    assert calls("suspend")[-1][2] == stack.name
    assert FakeProvider.stacks["fake1"][stack.name]["status"] == states.SUSPEND_COMPLETE


def test_a_call_hanging_past_the_soft_time_limit_ends_as_a_timeout(fake_providers, monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    from hastexo_xblock import tasks

    def hang(self, name, *args):
        raise SoftTimeLimitExceeded()  # what Celery raises inside a call that hangs past the soft limit

    monkeypatch.setattr(FakeProvider, "create", hang)
    stack, attempt = claim()
    assert tasks.launch.run(stack.pk, attempt) == states.LAUNCH_TIMEOUT
    stack.refresh_from_db()
    assert stack.status == states.LAUNCH_TIMEOUT and "too long" in stack.error_msg
