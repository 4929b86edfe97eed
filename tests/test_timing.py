"""One owner of time: an operation's deadline carried from its claim to Celery's limits and every wait.

The slow labs here take their time on a manual clock (``fakes.ManualClock``):
nothing waits for real, yet every sleep, backoff and deadline is the
production code's.
"""

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from hastexo_xblock import conf, dispatch, labs, lifecycle, remote, states, timing
from hastexo_xblock.models import Stack

from .fakes import FakeProvider, ManualClock


@pytest.fixture
def clock(monkeypatch):
    manual = ManualClock()
    for name in ("monotonic", "sleep", "asleep"):
        monkeypatch.setattr(timing.CLOCK, name, getattr(manual, name))
    return manual


def test_poll_backs_off_up_to_its_maximum_and_stops_at_the_deadline(clock):
    tries = []
    with pytest.raises(timing.Timeout):
        timing.poll(lambda: tries.append(clock.now) or None, timing.Deadline.after(30), timing.Backoff(1, 2, 8))
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(tries)]
    assert gaps[:4] == [1, 2, 4, 8] and set(gaps[4:-1]) <= {8}
    assert clock.now == pytest.approx(1030)  # never sleeps past the deadline


def test_poll_retries_only_the_errors_it_is_told_to():
    answers = iter([ConnectionError("flaky"), None, "done"])

    def probe():
        value = next(answers)
        if isinstance(value, Exception):
            raise value
        return value

    fast = timing.Backoff(0.001, 1, 0.001)
    assert timing.poll(probe, timing.Deadline.after(5), fast, retry_on=(ConnectionError,)) == "done"
    with pytest.raises(ValueError):
        timing.poll(lambda: (_ for _ in ()).throw(ValueError("no")), timing.Deadline.after(5), fast)
    # A fatal subclass of a retried type is not retried: it propagates at the first try.
    tries = []

    def refused():
        tries.append(1)
        raise ConnectionRefusedError("not this one")

    with pytest.raises(ConnectionRefusedError):
        timing.poll(refused, timing.Deadline.after(5), fast, retry_on=(OSError,), fatal=(ConnectionRefusedError,))
    assert tries == [1]


def test_waiting_for_ssh_runs_on_the_same_clock(clock):
    """``remote.py`` used to read ``time.monotonic`` itself; now a dead address times out on the test clock."""
    started = clock.now
    with pytest.raises(TimeoutError):
        asyncio.run(remote.wait_for_ssh("127.0.0.1", 1, timing.Deadline.after(120), attempt_timeout=0.2))
    assert clock.now - started == pytest.approx(120)


def test_celery_limits_come_from_the_operations_deadline_not_the_global_timeout(hastexo_settings):
    settings = hastexo_settings(launch_timeout=900)
    now = datetime.now(UTC)
    due = now + timedelta(seconds=1800 + timing.RECOVERY_MARGIN)
    soft, hard = timing.task_limits(due, now)
    assert (soft, hard) == (1800 + timing.RECOVERY_MARGIN - timing.SOFT_LIMIT_MARGIN, 1800 + timing.RECOVERY_MARGIN)
    assert soft > 1800 > settings["launch_timeout"]
    options = dispatch.options("launch", due)
    assert options["soft_time_limit"] >= 1800 and options["time_limit"] <= 1800 + timing.RECOVERY_MARGIN
    # A launch re-enqueued later gets what is left of the same budget, not a new one.
    later = timing.task_limits(due, now + timedelta(seconds=1000))
    assert later == (soft - 1000, hard - 1000)


@pytest.mark.django_db(transaction=True)
def test_a_lab_that_takes_1000_s_under_a_launch_timeout_of_1800_completes(
    fake_providers, hastexo_settings, tmp_path, clock
):
    (tmp_path / "t.yaml").write_text("fake template")
    fake_providers(fake1={"seconds": 1000})
    hastexo_settings(template_dir=str(tmp_path), launch_timeout=900)  # the platform's default is shorter
    stack = labs.get_stack("course-v1:o+c+r", "patient")
    sent = []
    spec = labs.LabSpec(template="t.yaml", providers=[{"name": "fake1"}], launch_timeout=1800)
    labs.status(stack, spec, initialize=True, enqueue=lambda *a, **k: sent.append((a, k)))
    [((name, stack_id, attempt), kwargs)] = sent
    # The task that carries it is given the block's time by Celery too.
    soft, hard = timing.task_limits(kwargs["due"])
    assert name == "launch" and soft > 1000 and hard > soft

    assert lifecycle.launch(stack_id, attempt) == states.CREATE_COMPLETE
    stack = Stack.objects.get(pk=stack_id)
    assert stack.status == states.CREATE_COMPLETE and stack.heartbeat_at is None
    assert 1000 <= clock.slept < 1010  # it really "waited" its 1,000 s, polling at most a second apart
    assert [c[1] for c in FakeProvider.calls].count("create") == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_lab_under_a_launch_timeout_of_900_times_out_at_900(fake_providers, hastexo_settings, tmp_path, clock):
    (tmp_path / "t.yaml").write_text("fake template")
    fake_providers(fake1={"seconds": 1000})
    hastexo_settings(template_dir=str(tmp_path))
    stack = labs.get_stack("course-v1:o+c+r", "hasty")
    sent = []
    spec = labs.LabSpec(template="t.yaml", providers=[{"name": "fake1"}], launch_timeout=900)
    labs.status(stack, spec, initialize=True, enqueue=lambda *a, **k: sent.append(a))
    [(_name, stack_id, attempt)] = sent
    assert lifecycle.launch(stack_id, attempt) == states.LAUNCH_TIMEOUT
    assert 895 <= clock.slept <= 900


def test_other_tasks_take_their_limits_and_queue_from_the_settings(hastexo_settings):
    hastexo_settings(suspend_task_timeout=300, task_queue="labs")
    assert dispatch.options("suspend") == {
        "queue": "labs",
        "soft_time_limit": 300 + timing.SOFT_LIMIT_MARGIN,
        "time_limit": 300 + timing.RECOVERY_MARGIN,
    }
    assert dispatch.options("suspender") == {"queue": "labs"}
    with pytest.raises(ValueError):
        dispatch.options("no_such_task")


def test_a_heartbeat_timeout_shorter_than_two_beats_is_refused():
    with pytest.raises(conf.ConfigurationError, match="heartbeat_timeout"):
        conf.load({"heartbeat_interval": 10, "heartbeat_timeout": 15})
    defaults = conf.load({})
    # The defaults notice a dead worker well within a minute of its last beat.
    assert defaults["heartbeat_timeout"] + defaults["heartbeat_interval"] < 60
