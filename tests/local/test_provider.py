"""The local provider and its lab host, on real processes and real sandboxes (see ``conftest.py``).

The attacks on the sandbox are in ``test_attacks.py``, the limits in ``test_limits.py``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import socket
import time

import asyncssh
import pytest

from hastexo_xblock import states
from hastexo_xblock.providers.base import ProviderConfigError, ProviderError, TemplateError
from hastexo_xblock.providers.local import LocalProvider, parse_template, probe, processes
from hastexo_xblock.providers.local.config import SandboxSettings
from hastexo_xblock.providers.local.provider import SandboxUnavailableError

from .conftest import (
    SIMPLE,
    connect,
    find_processes,
    host_pid,
    lab_host_pid,
    lab_processes,
    needs_sandbox,
    run,
    ssh_run,
    start_background_sleep,
    wait_for,
)

# --------------------------------------------------------------------------
# Create, connect, exec
# --------------------------------------------------------------------------


def test_create_connect_and_exec(provider):
    stack = provider.create("lab1", SIMPLE, None, {"run": "course-v1:a+b+c"})
    assert stack.status == states.CREATE_COMPLETE
    assert stack.outputs.public_ip == "127.0.0.1"
    assert stack.outputs.ssh_port > 0
    assert "OPENSSH PRIVATE KEY" in stack.outputs.private_key
    assert stack.extra["host_key"].startswith("ssh-ed25519 ")
    assert "<hidden>" in repr(stack.outputs)

    result = ssh_run(stack, "echo $((6*7))")
    assert result.stdout.strip() == "42"
    assert result.exit_status == 0

    # A test script on stdin, the way later features run checks.
    result = ssh_run(stack, "bash -s", stdin="echo to-stderr >&2\necho to-stdout\nexit 3\n")
    assert result.exit_status == 3
    assert result.stdout == "to-stdout\n"
    assert result.stderr == "to-stderr\n"

    # Home, user and environment: the lab's own, named after the login.
    result = ssh_run(stack, 'echo "$HOME|$(pwd)|$USER|$(whoami)|$(id -u)|${DJANGO_SETTINGS_MODULE-unset}"')
    assert result.stdout.strip() == "/home/lab|/home/lab|learner|learner|1000|unset"

    assert provider.get("lab1").status == states.CREATE_COMPLETE


def test_other_keys_and_host_keys_are_refused(provider):
    stack = provider.create("lab1", SIMPLE)
    other = asyncssh.generate_private_key("ssh-ed25519")

    async def with_other_key():
        async with connect(stack, key=other):
            pass

    with pytest.raises(asyncssh.PermissionDenied):
        run(with_other_key())

    async def with_password():
        async with connect(stack, client_keys=None, password="secret"):
            pass

    with pytest.raises(asyncssh.PermissionDenied):
        run(with_password())

    wrong_host = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    pinned_wrong = asyncssh.import_known_hosts(f"[127.0.0.1]:{stack.outputs.ssh_port} {wrong_host}")

    async def with_wrong_pin():
        async with connect(stack, known_hosts=pinned_wrong):
            pass

    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        run(with_wrong_pin())


def test_caller_supplied_public_key(provider):
    key = asyncssh.generate_private_key("ssh-ed25519")
    public = key.export_public_key().decode()
    stack = provider.create("lab1", SIMPLE, None, {"public_key": public})
    assert stack.status == states.CREATE_COMPLETE
    assert stack.outputs.private_key == ""

    async def go():
        async with connect(stack, key=key) as conn:
            return (await conn.run("echo ok", check=False)).stdout

    assert run(go()) == "ok\n"


def test_pty_shell_and_resize(provider):
    stack = provider.create("lab1", SIMPLE)

    async def go():
        async with connect(stack) as conn:
            proc = await conn.create_process(term_type="xterm-256color", term_size=(100, 30))
            buf = ""

            async def read_until(text):
                nonlocal buf
                while text not in buf:
                    buf += await asyncio.wait_for(proc.stdout.read(4096), 10)
                seen, _, buf = buf.partition(text)
                return seen

            proc.stdin.write("echo $((6*7))\n")
            await read_until("42")
            proc.stdin.write('echo "T=$TERM M=$-"; stty size\n')
            await read_until("T=xterm-256color M=")
            flags = await read_until("\n")
            assert "m" in flags  # job control is on
            await read_until("30 100")
            proc.change_terminal_size(132, 43)
            proc.stdin.write("stty size\n")
            await read_until("43 132")
            proc.stdin.write("exit 5\n")
            await asyncio.wait_for(proc.wait_closed(), 10)
            return proc.exit_status

    assert run(go()) == 5


# --------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------

FULL_TEMPLATE = """\
# hastexo local lab template
description: Linux basics lab
files:
  - path: README.txt
    content: |
      Welcome!
    mode: "0644"
  - path: bin/check.sh
    content: "#!/bin/sh\\necho checked\\n"
    mode: "0755"
setup: |
  echo "hello $HASTEXO_PARAM_RUN" > hello.txt
  cat README.txt > copy.txt
  pwd > where.txt
"""


def test_template_files_and_setup(provider):
    stack = provider.create("lab1", FULL_TEMPLATE, None, {"run": "run1", "user": "alice"})
    assert stack.status == states.CREATE_COMPLETE, stack.status_reason
    home = stack.extra["home"]
    with open(os.path.join(home, "README.txt")) as f:
        assert f.read() == "Welcome!\n"
    assert os.stat(os.path.join(home, "bin/check.sh")).st_mode & 0o777 == 0o755
    with open(os.path.join(home, "hello.txt")) as f:
        assert f.read() == "hello run1\n"
    with open(os.path.join(home, "copy.txt")) as f:
        assert f.read() == "Welcome!\n"
    with open(os.path.join(home, "where.txt")) as f:
        assert f.read().strip() == "/home/lab"
    assert ssh_run(stack, "bin/check.sh").stdout == "checked\n"


def test_setup_failure_is_create_failed_and_can_be_retried(provider):
    stack = provider.create("lab1", "setup: |\n  echo broken-setup-output\n  exit 3\n")
    assert stack.status == states.CREATE_FAILED
    assert "status 3" in stack.status_reason
    assert "broken-setup-output" in stack.status_reason
    assert stack.outputs is None
    assert provider.get("lab1").status == states.CREATE_FAILED
    assert provider._lab("lab1").read_state()["pid"] is None
    assert find_processes(provider._lab("lab1").path) == []

    # A failed stack is cleaned up and created anew.
    stack = provider.create("lab1", SIMPLE)
    assert stack.status == states.CREATE_COMPLETE
    assert ssh_run(stack, "echo ok").stdout == "ok\n"


def test_setup_timeout_is_create_failed(make_provider):
    needs_sandbox()
    provider = make_provider(setup_timeout=0.5, start_timeout=1.5)
    stack = provider.create("lab1", "setup: |\n  nohup sleep 1000.25 >/dev/null 2>&1 &\n  sleep 1000.5\n")
    assert stack.status == states.CREATE_FAILED
    assert "did not finish" in stack.status_reason
    assert wait_for(lambda: not find_processes("sleep 1000.25") and not find_processes("sleep 1000.5"))


def test_setup_background_processes_stay_in_the_tree(provider):
    stack = provider.create("lab1", "setup: |\n  nohup sleep 1000.75 >/dev/null 2>&1 &\n  echo $! > daemon.pid\n")
    assert stack.status == states.CREATE_COMPLETE
    with open(os.path.join(stack.extra["home"], "daemon.pid")) as f:
        daemon = host_pid(provider, "lab1", int(f.read()))
    assert find_processes("sleep 1000.75") == [daemon]
    # The lab's own ps sees it, with the lab's pid.
    assert "sleep 1000.75" in ssh_run(stack, "ps -eo args").stdout
    provider.delete("lab1")
    assert wait_for(lambda: not processes.alive(daemon))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("- a\n- b\n", "mapping"),
        ("just a string", "mapping"),
        ("foo: 1\n", "foo"),
        ("files: {path: x}\n", "files"),
        ("files:\n  - path: /etc/passwd\n    content: x\n", "files[0].path"),
        ("files:\n  - path: ../x\n    content: x\n", "files[0].path"),
        ("files:\n  - path: ok\n  - path: a/../../x\n", "files[1].path"),
        ("files:\n  - path: x\n    content: x\n    owner: root\n", "files[0]"),
        ("files:\n  - path: x\n    mode: 0644\n", "files[0].mode"),
        ("files:\n  - content: x\n", "files[0].path"),
        ("setup: [1, 2]\n", "setup"),
        ("description: [1]\n", "description"),
        ("setup: 'unclosed\n", "YAML"),
    ],
)
def test_malformed_templates(provider, text, named):
    with pytest.raises(TemplateError) as excinfo:
        provider.create("lab1", text)
    assert named in str(excinfo.value)
    assert provider.list() == []


def test_bad_parameters(provider):
    with pytest.raises(TemplateError, match="a-b"):
        provider.create("lab1", SIMPLE, None, {"a-b": "x"})
    with pytest.raises(TemplateError, match="public_key"):
        provider.create("lab1", SIMPLE, None, {"public_key": "not a key"})
    with pytest.raises(TemplateError, match="parameter 'x'"):
        provider.create("lab1", SIMPLE, None, {"x": [1]})
    assert provider.list() == []


def test_empty_template_is_a_plain_lab():
    assert parse_template("# only a comment\n").files == ()


def test_a_template_nested_too_deep_is_a_template_error_not_a_crash():
    with pytest.raises(TemplateError, match="nested too deep"):
        parse_template("files: " + "[" * 5000 + "]" * 5000)


# --------------------------------------------------------------------------
# Suspend, resume, delete
# --------------------------------------------------------------------------


COUNTER = "nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > ~/counter; sleep 0.02; done' >/dev/null 2>&1 &"


def _counter(stack) -> int:
    with open(os.path.join(stack.extra["home"], "counter")) as f:
        return int(f.read().strip() or 0)


def test_suspend_freezes_the_whole_lab_and_resume_continues_it(provider):
    stack = provider.create("lab1", SIMPLE)
    assert ssh_run(stack, "echo before > before.txt").exit_status == 0
    # A background job that works all the time, started with setsid so that it
    # leaves the session's process tree.
    assert ssh_run(stack, "setsid " + COUNTER.replace("nohup ", "")).exit_status == 0
    assert wait_for(lambda: os.path.exists(os.path.join(stack.extra["home"], "counter")) and _counter(stack) > 3)
    sleeper = host_pid(provider, "lab1", start_background_sleep(stack))
    started = processes.create_time(sleeper)

    suspended = provider.suspend("lab1")
    assert suspended.status == states.SUSPEND_COMPLETE
    assert suspended.outputs.ssh_port == stack.outputs.ssh_port
    assert provider.get("lab1").status == states.SUSPEND_COMPLETE
    frozen_at = _counter(stack)
    time.sleep(0.4)
    assert _counter(stack) == frozen_at, "a process of the suspended lab kept running"

    resumed = provider.resume("lab1")
    assert resumed.status == states.RESUME_COMPLETE
    assert wait_for(lambda: _counter(stack) > frozen_at + 3)
    # The same processes carry on: nothing was restarted.
    assert processes.create_time(sleeper) == started
    assert provider.get("lab1").status == states.RESUME_COMPLETE
    assert ssh_run(resumed, "cat before.txt").stdout == "before\n"


def test_dead_lab_host_is_suspended_and_resume_restarts_it(provider):
    stack = provider.create("lab1", SIMPLE)
    assert ssh_run(stack, "echo kept > kept.txt").exit_status == 0
    start_background_sleep(stack, "1000.125")
    old = lab_host_pid(provider, "lab1")
    os.kill(old, 9)  # what a reboot does to it
    assert wait_for(lambda: not processes.alive(old))
    # The lab dies with its lab host: nothing of it is left running.
    assert wait_for(lambda: find_processes("sleep 1000.125") == [])

    current = provider.get("lab1")
    assert current.status == states.SUSPEND_COMPLETE
    assert "not running" in current.status_reason

    resumed = provider.resume("lab1")
    assert resumed.status == states.RESUME_COMPLETE
    assert lab_host_pid(provider, "lab1") != old
    assert ssh_run(resumed, "cat kept.txt").stdout == "kept\n"


def test_resume_moves_to_a_new_port_when_the_old_one_is_taken(provider):
    stack = provider.create("lab1", SIMPLE)
    os.kill(lab_host_pid(provider, "lab1"), 9)
    assert wait_for(lambda: provider.get("lab1").status == states.SUSPEND_COMPLETE)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # The killed lab host's socket may take a moment to go away: hold the port once it is free.
        deadline = time.monotonic() + 10
        while True:
            try:
                squatter.bind(("127.0.0.1", stack.outputs.ssh_port))
                break
            except OSError as error:
                assert error.errno == errno.EADDRINUSE and time.monotonic() < deadline
                time.sleep(0.05)
        squatter.listen()
        resumed = provider.resume("lab1")
    assert resumed.status == states.RESUME_COMPLETE
    assert resumed.outputs.ssh_port != stack.outputs.ssh_port
    assert provider.get("lab1").outputs.ssh_port == resumed.outputs.ssh_port
    assert ssh_run(resumed, "echo ok").stdout == "ok\n"


def test_delete_kills_everything(provider):
    stack = provider.create("lab1", SIMPLE)
    start_background_sleep(stack, "1000.375")
    assert ssh_run(stack, "setsid nohup sleep 1000.5 >/dev/null 2>&1 &").exit_status == 0
    everything = lab_processes(provider, "lab1")
    assert len(find_processes("sleep 1000.375") + find_processes("sleep 1000.5")) == 2
    # Deleting a suspended lab works as well.
    provider.suspend("lab1")

    assert provider.delete("lab1").status == states.DELETE_COMPLETE
    assert [pid for pid in everything if processes.alive(pid)] == []
    assert find_processes("sleep 1000.375") == find_processes("sleep 1000.5") == []
    assert not os.path.exists(stack.extra["stack_dir"])
    assert provider.get("lab1").status == states.DELETE_COMPLETE
    assert provider.delete("lab1").status == states.DELETE_COMPLETE
    assert provider.list() == []


def test_absent_stack(provider):
    assert provider.get("nothing").status == states.DELETE_COMPLETE
    assert provider.delete("nothing").status == states.DELETE_COMPLETE
    assert provider.suspend("nothing").status == states.DELETE_COMPLETE
    with pytest.raises(ProviderError):
        provider.resume("nothing")


def test_new_instance_manages_existing_stacks(make_provider):
    first = make_provider()
    stack = first.create("lab1", SIMPLE)
    first.create("lab2", SIMPLE)

    # A worker restart: a new instance knows only the root.
    second = make_provider()
    assert second.list() == ["lab1", "lab2"]
    found = second.get("lab1")
    assert found.status == states.CREATE_COMPLETE
    assert found.outputs.ssh_port == stack.outputs.ssh_port
    assert found.outputs.private_key == stack.outputs.private_key
    assert found.extra["host_key"] == stack.extra["host_key"]

    assert second.suspend("lab1").status == states.SUSPEND_COMPLETE
    assert first.get("lab1").status == states.SUSPEND_COMPLETE
    assert second.resume("lab1").status == states.RESUME_COMPLETE
    assert ssh_run(found, "echo ok").stdout == "ok\n"
    assert second.delete("lab1").status == states.DELETE_COMPLETE
    assert first.get("lab1").status == states.DELETE_COMPLETE
    assert second.list() == ["lab2"]


def _lab_hosts_for(stack_dir: str) -> list[int]:
    return [pid for pid in find_processes("labhost") if stack_dir in " ".join(processes_cmdline(pid))]


def processes_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return []


def test_create_twice_returns_the_same_stack(provider):
    first = provider.create("lab1", SIMPLE)
    pid = lab_host_pid(provider, "lab1")
    second = provider.create("lab1", SIMPLE)
    assert second.status == states.CREATE_COMPLETE
    assert second.outputs.ssh_port == first.outputs.ssh_port
    assert lab_host_pid(provider, "lab1") == pid
    assert _lab_hosts_for(first.extra["stack_dir"]) == [pid]

    # A redelivered create for a suspended stack brings it back up.
    provider.suspend("lab1")
    third = provider.create("lab1", SIMPLE)
    assert third.status == states.RESUME_COMPLETE
    assert _lab_hosts_for(first.extra["stack_dir"]) == [pid]


def test_half_created_stack_is_replaced(provider, root):
    os.makedirs(os.path.join(root, "lab1", "home"))
    assert provider.get("lab1").status == states.CREATE_FAILED
    stack = provider.create("lab1", SIMPLE)
    assert stack.status == states.CREATE_COMPLETE
    assert ssh_run(stack, "echo ok").stdout == "ok\n"


# --------------------------------------------------------------------------
# Sandbox
# --------------------------------------------------------------------------


def test_readonly_and_hidden_paths(make_provider, root):
    needs_sandbox()
    shown = os.path.join(os.path.dirname(root), f"hastexo-shown-{os.getpid()}")
    os.makedirs(os.path.join(shown, "hidden-dir"))
    os.chmod(shown, 0o755)
    try:
        for path, text in (("tool.sh", "echo tool"), ("hidden-dir/secret", "dir-secret"), ("secret.conf", "secret")):
            with open(os.path.join(shown, path), "w") as f:
                f.write(text)
            os.chmod(os.path.join(shown, path), 0o644)
        provider = make_provider(
            readonly_paths=[shown],
            hidden_paths=[os.path.join(shown, "hidden-dir"), os.path.join(shown, "secret.conf"), "/does/not/exist"],
        )
        stack = provider.create("lab1", SIMPLE)
        assert ssh_run(stack, f"cat {shown}/tool.sh").stdout == "echo tool"
        assert ssh_run(stack, f"touch {shown}/new").exit_status != 0
        assert ssh_run(stack, f"ls -A {shown}/hidden-dir").stdout == ""
        assert ssh_run(stack, f"cat {shown}/secret.conf").stdout == ""
        assert ssh_run(stack, "hostname").stdout.strip() == "lab"
        # The home and /tmp are writable.
        assert ssh_run(stack, "touch ~/mine /tmp/scratch && echo ok").stdout == "ok\n"
        assert os.path.exists(os.path.join(stack.extra["home"], "mine"))
    finally:
        shutil.rmtree(shown, ignore_errors=True)


def test_no_sandbox_works_and_warns_at_every_launch(make_provider, caplog):
    provider = make_provider(sandbox="none")
    assert provider.sandbox_mode == "none"
    with caplog.at_level(logging.WARNING, logger="hastexo_xblock.providers.local"):
        stack = provider.create("lab1", FULL_TEMPLATE, None, {"run": "r"})
        provider.suspend("lab1")
        provider.resume("lab1")
    assert stack.status == states.CREATE_COMPLETE
    warnings = [r for r in caplog.records if "WITHOUT A SANDBOX" in r.getMessage()]
    assert len(warnings) == 2  # create and resume
    assert ssh_run(stack, "echo $((6*7)); cat hello.txt").stdout == "42\nhello r\n"


def test_missing_bwrap_refuses_to_launch(make_provider, monkeypatch, caplog):
    real_which = shutil.which
    monkeypatch.setattr(probe.shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real_which(name))
    monkeypatch.setattr(probe, "_probes", {})
    for mode in ("auto", "bwrap"):
        provider = make_provider(sandbox=mode)
        with (
            caplog.at_level(logging.ERROR, logger="hastexo_xblock.providers.local"),
            pytest.raises(SandboxUnavailableError) as excinfo,
        ):
            provider.create("lab1", SIMPLE)
        # The learner is told little; the operator is told what is missing.
        assert "bwrap" not in str(excinfo.value)
        assert "bwrap is not installed" in excinfo.value.detail
        assert any("bwrap is not installed" in r.getMessage() for r in caplog.records)
        assert provider.list() == []


def test_egress_without_slirp4netns_refuses_to_launch(make_provider, monkeypatch):
    needs_sandbox()
    real_which = shutil.which
    monkeypatch.setattr(
        probe.shutil, "which", lambda name, *a, **k: None if name == "slirp4netns" else real_which(name)
    )
    monkeypatch.setattr(probe, "_probes", {})
    with pytest.raises(SandboxUnavailableError) as excinfo:
        make_provider(network="egress").create("lab1", SIMPLE)
    assert "slirp4netns" in excinfo.value.detail


# --------------------------------------------------------------------------
# Names and configuration
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "x/y", "", ".locks", "-x", "a" * 256, "x y"])
def test_invalid_names_are_rejected(provider, name):
    for call in (provider.get, provider.delete, provider.suspend, provider.resume):
        with pytest.raises(ProviderError):
            call(name)
    with pytest.raises(ProviderError):
        provider.create(name, SIMPLE)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"sandbox": "docker"}, "sandbox"),
        ({"root": 5}, "root"),
        ({"hidden_paths": "/etc"}, "hidden_paths"),
        ({"hidden_paths": ["relative/path"]}, "hidden_paths"),
        ({"readonly_paths": ["/proc"]}, "readonly_paths"),
        ({"readonly_paths": ["/"]}, "readonly_paths"),
        ({"setup_timeout": -1}, "setup_timeout"),
        ({"network": "bridge"}, "network"),
        ({"memory_limit": "lots"}, "memory_limit"),
        ({"memory_limit": "1M"}, "memory_limit"),
        ({"disk_limit": 0}, "disk_limit"),
        ({"disk_limit": "1M"}, "disk_limit"),
        ({"tmp_limit": None}, "tmp_limit"),
        ({"pids_limit": 2}, "pids_limit"),
        ({"pids_limit": "many"}, "pids_limit"),
        ({"cpu_limit": 0}, "cpu_limit"),
        ({"uid_base": 1000}, "uid_base"),
        ({"cgroup_root": "/tmp/x"}, "cgroup_root"),
    ],
)
def test_validate_config(config, key):
    with pytest.raises(ProviderConfigError, match=key):
        LocalProvider.validate_config("local", {"type": "local", **config})


def test_sizes_and_defaults():
    settings = SandboxSettings.from_config({"memory_limit": "1.5G", "disk_limit": "512MiB", "pids_limit": None})
    assert settings.memory_limit == 1536 * 1024**2
    assert settings.disk_limit == 512 * 1024**2
    assert settings.pids_limit is None
    assert settings.network == "none"
    assert SandboxSettings.from_config({}).tmp_limit == 256 * 1024**2


def test_validate_config_needs_no_bwrap(monkeypatch):
    # Settings are checked where they are read (the LMS, the gateway), which need no sandbox.
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    LocalProvider.validate_config("local", {"type": "local", "sandbox": "bwrap"})


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("HASTEXO_LOCAL_ROOT", str(tmp_path / "labs"))
    provider = LocalProvider("local", {"type": "local", "sandbox": "none"})
    assert provider.root == os.path.realpath(tmp_path / "labs")
