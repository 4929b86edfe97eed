"""A local lab's limits: each is hit from inside the lab, and must fail inside the lab, not on the host.

What a worker cannot enforce on a machine (an unprivileged worker has no
cgroups and cannot mount a home image) must be named, once, when the provider
starts; those tests check that message instead, and the limit itself is
enforced in the run as root.
"""

from __future__ import annotations

import logging
import os

import pytest

from hastexo_xblock.providers.local import LocalProvider, cgroups, homefs

from .conftest import ROOT_WORKER, SIMPLE, needs_sandbox, ssh_run

MiB = 1024 * 1024


def _unenforced(provider: LocalProvider) -> str:
    return "; ".join(provider.capabilities().unenforced(provider.settings))


def _cgroup_can(feature: str) -> bool:
    return feature in cgroups.plan().parents


@pytest.fixture
def limited(make_provider, caplog):
    """A provider with small limits, and the warnings it logged when it first looked at the machine."""
    needs_sandbox()

    def make(**limits: object) -> LocalProvider:
        provider = make_provider(**limits)
        with caplog.at_level(logging.WARNING, logger="hastexo_xblock.providers.local"):
            provider.capabilities()
        return provider

    return make


def test_home_limit(limited, caplog):
    provider = limited(disk_limit="24M")
    if homefs.probe() is not None:
        assert not ROOT_WORKER, f"a root worker must be able to limit the home here: {homefs.probe()}"
        assert "the home size limit" in _unenforced(provider)
        assert any("the home size limit" in r.getMessage() for r in caplog.records)
        return
    stack = provider.create("lab1", SIMPLE)
    result = ssh_run(stack, "dd if=/dev/zero of=~/big bs=1M count=64 2>&1; sync; echo status=$?")
    assert "No space left on device" in result.stdout
    # The learner's own home is full; the host's disk never held more than the limit.
    image = os.path.join(stack.extra["stack_dir"], "home.img")
    assert os.stat(image).st_blocks * 512 <= 24 * MiB
    assert ssh_run(stack, "rm ~/big && echo freed").stdout == "freed\n"


def test_tmp_and_shm_limits(limited):
    stack = limited(tmp_limit="8M").create("lab1", SIMPLE)
    for path in ("/tmp/big", "/var/tmp/big", "/dev/shm/big"):
        result = ssh_run(stack, f"dd if=/dev/zero of={path} bs=1M count=100 2>&1; rm -f {path}")
        assert "No space left on device" in result.stdout, path


def test_memory_limit_kills_the_allocating_process_inside_the_lab(limited, caplog):
    provider = limited(memory_limit="128M")
    if not _cgroup_can("memory"):
        assert not ROOT_WORKER, "a root worker must be able to limit memory on this machine"
        assert "the memory limit" in _unenforced(provider)
        assert any("the memory limit" in r.getMessage() for r in caplog.records)
        return
    stack = provider.create("lab1", SIMPLE)
    result = ssh_run(stack, "python3 -c 'b = bytearray(512 * 1024 * 1024); print(len(b))'; echo status=$?")
    assert "status=137" in result.stdout, result.stdout  # SIGKILL by the OOM killer
    # The lab (its lab host, its shell) lives on.
    assert ssh_run(stack, "echo still-here").stdout == "still-here\n"


def test_process_limit(limited):
    # RLIMIT_NPROC, counted per lab by the kernel: enforced for unprivileged workers too.
    stack = limited(pids_limit=40).create("lab1", SIMPLE)
    forks = (
        "python3 -c 'import os, time\nmade = 0\nfor _ in range(80):\n    try:\n        pid = os.fork()\n"
        "    except OSError as e:\n        print(e.strerror); break\n    if pid == 0:\n        time.sleep(30)\n"
        "        os._exit(0)\n    made += 1\nprint(made)'; ps -e --no-headers | wc -l; pkill -f 'import os, time'"
    )
    lines = ssh_run(stack, forks).stdout.strip().splitlines()
    assert lines[0] == "Resource temporarily unavailable", lines
    assert int(lines[1]) < 40 and int(lines[2]) <= 40
    assert ssh_run(stack, "echo ok").stdout == "ok\n"


def test_cpu_limit(limited, caplog):
    provider = limited(cpu_limit=0.2)
    if not _cgroup_can("cpu"):
        assert not ROOT_WORKER, "a root worker must be able to limit CPU on this machine"
        assert "the CPU limit" in _unenforced(provider)
        return
    stack = provider.create("lab1", SIMPLE)
    # A second of busy loop gets at most a fifth of a CPU (with some slack for the period's edges).
    result = ssh_run(
        stack,
        "python3 -c 'import time, os\nend = time.time() + 1.5\nwhile time.time() < end: pass\n"
        "t = os.times(); print(t.user + t.system)'",
    )
    assert float(result.stdout) < 0.6, result.stdout


def test_what_is_not_enforced_is_said_once(make_provider, caplog):
    needs_sandbox()
    provider = make_provider()
    with caplog.at_level(logging.WARNING, logger="hastexo_xblock.providers.local"):
        provider.capabilities()
        provider.create("lab1", SIMPLE)
        provider.create("lab2", SIMPLE)
    said = [r.getMessage() for r in caplog.records if "does not enforce" in r.getMessage()]
    unenforced = provider.capabilities().unenforced(provider.settings)
    if unenforced:
        assert len(said) == 1
        assert all(item in said[0] for item in unenforced)
    else:
        assert said == []
    if ROOT_WORKER and os.path.isdir("/sys/fs/cgroup/memory"):
        # This kind of machine (cgroup v1, loop devices) gives a root worker every limit.
        assert unenforced == []
