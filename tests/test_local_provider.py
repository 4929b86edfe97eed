"""The local provider and its lab host, on real processes.

Every test gets its own provider root and deletes every stack it made (so no
lab host outlives the test).  The root is under /var/tmp rather than /tmp on
purpose: the sandbox mounts an empty /tmp, which would hide anything under
/tmp whether or not the provider hides it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import socket
import tempfile
import time

import asyncssh
import pytest

from hastexo_xblock import states
from hastexo_xblock.providers import labhost
from hastexo_xblock.providers.base import ProviderConfigError, ProviderError, ProviderStack, TemplateError
from hastexo_xblock.providers.local import LocalProvider, parse_template

HAVE_BWRAP = shutil.which("bwrap") is not None

SIMPLE = "# hastexo local lab template\ndescription: test lab\n"


# --------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path):
    base = "/var/tmp" if os.access("/var/tmp", os.W_OK) else str(tmp_path)
    path = tempfile.mkdtemp(prefix="hastexo-local-test-", dir=base)
    yield path
    # Whatever a test left behind: kill it, then remove the files.
    cleaner = LocalProvider("cleanup", {"type": "local", "root": path})
    for name in cleaner.list():
        cleaner.delete(name)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_provider(root):
    def make(**config):
        return LocalProvider("local", {"type": "local", "root": root, **config})

    return make


@pytest.fixture
def provider(make_provider):
    return make_provider()


def run(coro):
    return asyncio.run(coro)


def known_hosts(stack: ProviderStack):
    return asyncssh.import_known_hosts(f"[127.0.0.1]:{stack.outputs.ssh_port} {stack.extra['host_key']}\n")


def connect(stack: ProviderStack, key=None, **kwargs):
    """An asyncssh connection to the stack, host key pinned to ``extra["host_key"]``."""
    if key is None:
        key = asyncssh.import_private_key(stack.outputs.private_key)
    options = {"known_hosts": known_hosts(stack), "client_keys": [key], "username": "learner"}
    options.update(kwargs)
    return asyncssh.connect("127.0.0.1", stack.outputs.ssh_port, **options)


def ssh_run(stack: ProviderStack, command: str, stdin: str | None = None) -> asyncssh.SSHCompletedProcess:
    async def go():
        async with connect(stack) as conn:
            return await asyncio.wait_for(conn.run(command, input=stdin, check=False), 15)

    return run(go())


def proc_state(pid: int) -> str | None:
    info = labhost.read_proc_stat(pid)
    return info[0] if info else None


def server_pid(provider: LocalProvider, name: str) -> int:
    return provider._read_state(name)["pid"]


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def start_background_sleep(stack: ProviderStack) -> int:
    result = ssh_run(stack, "nohup sleep 1000 >/dev/null 2>&1 & echo $!")
    assert result.exit_status == 0, result.stderr
    return int(result.stdout.strip())


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

    # Home, user and environment.
    result = ssh_run(stack, 'echo "$HOME|$(pwd)|$USER|${DJANGO_SETTINGS_MODULE-unset}"')
    home = stack.extra["home"]
    assert result.stdout.strip() == f"{home}|{home}|learner|unset"

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
        assert f.read().strip() == home
    assert ssh_run(stack, "bin/check.sh").stdout == "checked\n"


def test_setup_failure_is_create_failed_and_can_be_retried(provider):
    stack = provider.create("lab1", "setup: |\n  echo broken-setup-output\n  exit 3\n")
    assert stack.status == states.CREATE_FAILED
    assert "status 3" in stack.status_reason
    assert "broken-setup-output" in stack.status_reason
    assert stack.outputs is None
    assert provider.get("lab1").status == states.CREATE_FAILED
    assert not labhost.process_alive(server_pid(provider, "lab1"))

    # A failed stack is cleaned up and created anew.
    stack = provider.create("lab1", SIMPLE)
    assert stack.status == states.CREATE_COMPLETE
    assert ssh_run(stack, "echo ok").stdout == "ok\n"


def test_setup_timeout_is_create_failed(make_provider):
    provider = make_provider(setup_timeout=0.5, start_timeout=1.5)
    stack = provider.create(
        "lab1", "setup: |\n  nohup sleep 1000 >/dev/null 2>&1 &\n  echo $! > bg.pid\n  sleep 1000\n"
    )
    assert stack.status == states.CREATE_FAILED
    assert "did not finish" in stack.status_reason
    with open(os.path.join(stack.extra["home"], "bg.pid")) as f:
        background = int(f.read())
    assert wait_for(lambda: not labhost.process_alive(background))


def test_setup_background_processes_stay_in_the_tree(provider):
    stack = provider.create("lab1", "setup: |\n  nohup sleep 1000 >/dev/null 2>&1 &\n  echo $! > daemon.pid\n")
    assert stack.status == states.CREATE_COMPLETE
    with open(os.path.join(stack.extra["home"], "daemon.pid")) as f:
        daemon = int(f.read())
    assert daemon in labhost.descendants(server_pid(provider, "lab1"))
    provider.delete("lab1")
    assert wait_for(lambda: not labhost.process_alive(daemon))


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


# --------------------------------------------------------------------------
# Suspend, resume, delete
# --------------------------------------------------------------------------


def test_suspend_and_resume(provider):
    stack = provider.create("lab1", SIMPLE)
    assert ssh_run(stack, "echo before > before.txt").exit_status == 0
    sleeper = start_background_sleep(stack)
    server = server_pid(provider, "lab1")
    # The learner's background job stays in the stack's process tree.
    assert sleeper in labhost.descendants(server)
    start_time = labhost.read_proc_stat(sleeper)[2]

    suspended = provider.suspend("lab1")
    assert suspended.status == states.SUSPEND_COMPLETE
    assert suspended.outputs.ssh_port == stack.outputs.ssh_port
    assert proc_state(server) == "T"
    assert proc_state(sleeper) == "T"
    assert provider.get("lab1").status == states.SUSPEND_COMPLETE

    resumed = provider.resume("lab1")
    assert resumed.status == states.RESUME_COMPLETE
    assert wait_for(lambda: proc_state(server) not in ("T", None))
    assert wait_for(lambda: proc_state(sleeper) not in ("T", None))
    assert labhost.read_proc_stat(sleeper)[2] == start_time
    assert provider.get("lab1").status == states.RESUME_COMPLETE
    assert ssh_run(resumed, "cat before.txt").stdout == "before\n"


def test_dead_lab_host_is_suspended_and_resume_restarts_it(provider):
    stack = provider.create("lab1", SIMPLE)
    assert ssh_run(stack, "echo kept > kept.txt").exit_status == 0
    old = server_pid(provider, "lab1")
    os.kill(old, 9)  # what a reboot does to it
    assert wait_for(lambda: not labhost.process_alive(old))

    current = provider.get("lab1")
    assert current.status == states.SUSPEND_COMPLETE
    assert "not running" in current.status_reason

    resumed = provider.resume("lab1")
    assert resumed.status == states.RESUME_COMPLETE
    assert server_pid(provider, "lab1") != old
    assert ssh_run(resumed, "cat kept.txt").stdout == "kept\n"


def test_resume_moves_to_a_new_port_when_the_old_one_is_taken(provider):
    stack = provider.create("lab1", SIMPLE)
    os.kill(server_pid(provider, "lab1"), 9)
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
    sleeper = start_background_sleep(stack)
    server = server_pid(provider, "lab1")
    # Deleting a suspended stack works as well.
    provider.suspend("lab1")

    assert provider.delete("lab1").status == states.DELETE_COMPLETE
    assert not labhost.process_alive(server)
    assert not labhost.process_alive(sleeper)
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
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        is_lab_host = stack_dir.encode() in argv and any(a.endswith(b"labhost.py") for a in argv)
        if is_lab_host and labhost.process_alive(int(entry)):
            pids.append(int(entry))
    return pids


def test_create_twice_returns_the_same_stack(provider):
    first = provider.create("lab1", SIMPLE)
    pid = server_pid(provider, "lab1")
    second = provider.create("lab1", SIMPLE)
    assert second.status == states.CREATE_COMPLETE
    assert second.outputs.ssh_port == first.outputs.ssh_port
    assert server_pid(provider, "lab1") == pid
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


@pytest.mark.skipif(not HAVE_BWRAP, reason="bwrap is not installed")
def test_bwrap_sandbox(make_provider, root):
    hidden_dir = tempfile.mkdtemp(prefix="hastexo-hidden-", dir=os.path.dirname(root))
    hidden_file = os.path.join(os.path.dirname(root), f"hastexo-hidden-{os.getpid()}.conf")
    try:
        with open(os.path.join(hidden_dir, "secret"), "w") as f:
            f.write("dir-secret")
        with open(hidden_file, "w") as f:
            f.write("file-secret")
        with open(os.path.join(root, "secret.txt"), "w") as f:
            f.write("root-secret")
        provider = make_provider(sandbox="bwrap", hidden_paths=[hidden_dir, hidden_file, "/does/not/exist"])
        assert provider.sandbox_mode == "bwrap"
        other = provider.create("other", SIMPLE)
        stack = provider.create("lab1", SIMPLE)

        def check(command):
            return ssh_run(stack, command)

        assert check(f"cat {root}/secret.txt").exit_status != 0
        assert check(f"ls {other.extra['stack_dir']}/home").exit_status != 0
        assert check(f"cat {other.extra['stack_dir']}/id_ed25519").exit_status != 0
        assert check(f"cat {stack.extra['stack_dir']}/host_key").exit_status != 0
        assert check("head -c 5 /etc/passwd").stdout == "root:"
        assert check("touch /etc/hastexo-test-x").exit_status != 0
        assert not os.path.exists("/etc/hastexo-test-x")
        assert check(f"ls -A {hidden_dir}").stdout == ""
        assert check(f"cat {hidden_file}").stdout == ""
        assert check("hostname").stdout.strip() == "lab"
        # The home and /tmp are writable.
        assert check("touch ~/mine /tmp/scratch && echo ok").stdout == "ok\n"
        assert os.path.exists(os.path.join(stack.extra["home"], "mine"))
    finally:
        shutil.rmtree(hidden_dir, ignore_errors=True)
        if os.path.exists(hidden_file):
            os.unlink(hidden_file)


def test_no_sandbox_works_and_warns(make_provider, caplog):
    with caplog.at_level(logging.WARNING, logger="hastexo_xblock.providers.local"):
        provider = make_provider(sandbox="none")
    assert provider.sandbox_mode == "none"
    assert any(labhost.NOSANDBOX_WARNING in r.getMessage() for r in caplog.records)
    stack = provider.create("lab1", FULL_TEMPLATE, None, {"run": "r"})
    assert stack.status == states.CREATE_COMPLETE
    assert ssh_run(stack, "echo $((6*7)); cat hello.txt").stdout == "42\nhello r\n"


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
        ({"setup_timeout": -1}, "setup_timeout"),
    ],
)
def test_validate_config(config, key):
    with pytest.raises(ProviderConfigError, match=key):
        LocalProvider.validate_config("local", {"type": "local", **config})


def test_validate_config_bwrap_missing(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(ProviderConfigError, match="sandbox"):
        LocalProvider.validate_config("local", {"type": "local", "sandbox": "bwrap"})


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("HASTEXO_LOCAL_ROOT", str(tmp_path / "labs"))
    provider = LocalProvider("local", {"type": "local", "sandbox": "none"})
    assert provider.root == os.path.realpath(tmp_path / "labs")
