"""Fixtures and helpers for the local provider's tests, on real processes and real sandboxes.

This folder needs no Django: ``make test`` runs it twice, as root (with the
rest of the suite) and again as an unprivileged user (``make
test-local-unprivileged``), because the local provider isolates labs
differently in each case (per-lab uids, cgroups and home images need root).

Every test gets its own provider root under /var/tmp (not /tmp: the sandbox
mounts an empty /tmp) and deletes every lab it made, so no lab outlives it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator

import asyncssh
import psutil
import pytest

from hastexo_xblock.providers.base import ProviderStack
from hastexo_xblock.providers.local import LocalProvider, probe, processes
from hastexo_xblock.providers.local.config import SandboxSettings

ROOT_WORKER = os.geteuid() == 0
#: CI must run the sandbox tests, not skip them.
REQUIRE_SANDBOX = bool(os.environ.get("CI") or os.environ.get("HASTEXO_REQUIRE_SANDBOX"))

SIMPLE = "# hastexo local lab template\ndescription: test lab\n"


def sandbox_problem() -> str | None:
    """Why this machine cannot sandbox labs, or ``None`` when it can."""
    caps = probe.probe(SandboxSettings())
    return caps.bwrap_problem if caps.bwrap is None else None


def needs_sandbox() -> None:
    """Skip (or, in CI, fail) a test that needs a working bubblewrap sandbox."""
    problem = sandbox_problem()
    if problem:
        if REQUIRE_SANDBOX:
            pytest.fail(f"the local provider cannot sandbox labs here: {problem}")
        pytest.skip(f"no lab sandbox on this machine: {problem}")


@pytest.fixture
def root() -> Iterator[str]:
    base = "/var/tmp" if os.access("/var/tmp", os.W_OK) else tempfile.gettempdir()
    path = tempfile.mkdtemp(prefix="hastexo-local-test-", dir=base)
    os.chmod(path, 0o711)  # the labs' own users pass through it (root workers)
    yield path
    # Whatever a test left behind: kill it, then remove the files.
    cleaner = LocalProvider("cleanup", {"type": "local", "root": path, "sandbox": "none"})
    for name in cleaner.list():
        cleaner.delete(name)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_provider(root: str) -> Callable[..., LocalProvider]:
    def make(**config: object) -> LocalProvider:
        return LocalProvider("local", {"type": "local", "root": root, **config})

    return make


@pytest.fixture
def provider(make_provider: Callable[..., LocalProvider]) -> LocalProvider:
    needs_sandbox()
    return make_provider()


def run(coro):
    return asyncio.run(coro)


def known_hosts(stack: ProviderStack) -> asyncssh.SSHKnownHosts:
    return asyncssh.import_known_hosts(f"[127.0.0.1]:{stack.outputs.ssh_port} {stack.extra['host_key']}\n")


def connect(stack: ProviderStack, key=None, **kwargs):
    """An asyncssh connection to the lab, host key pinned to ``extra["host_key"]``."""
    if key is None:
        key = asyncssh.import_private_key(stack.outputs.private_key)
    options = {"known_hosts": known_hosts(stack), "client_keys": [key], "username": "learner"}
    options.update(kwargs)
    return asyncssh.connect("127.0.0.1", stack.outputs.ssh_port, **options)


def ssh_run(
    stack: ProviderStack, command: str, stdin: str | None = None, timeout: float = 30
) -> asyncssh.SSHCompletedProcess:
    """Run ``command`` in the lab with bash, as the learner would; return the completed process."""

    async def go():
        async with connect(stack) as conn:
            return await asyncio.wait_for(conn.run(command, input=stdin, check=False), timeout)

    return run(go())


def lab_host_pid(provider: LocalProvider, name: str) -> int:
    return provider._lab(name).read_state()["pid"]


def lab_processes(provider: LocalProvider, name: str) -> list[int]:
    """Host pids of the lab host and everything below it."""
    pid = lab_host_pid(provider, name)
    return [pid, *processes.descendants(pid)]


def host_pid(provider: LocalProvider, name: str, lab_pid: int) -> int:
    """The host's pid of the lab process that the lab itself calls ``lab_pid``."""
    for pid in lab_processes(provider, name):
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("NSpid:"):
                        ids = [int(v) for v in line.split()[1:]]
                        if len(ids) > 1 and ids[-1] == lab_pid:
                            return pid
        except OSError:
            continue
    raise LookupError(f"no process {lab_pid} in lab {name}")


def find_processes(marker: str) -> list[int]:
    """Host pids of live processes whose command line contains ``marker``."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(process.info["cmdline"] or ()):
                found.append(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def start_background_sleep(stack: ProviderStack, seconds: str = "1000") -> int:
    """Start ``sleep`` in the background of the lab; return its pid *in the lab*."""
    result = ssh_run(stack, f"nohup sleep {seconds} >/dev/null 2>&1 & echo $!")
    assert result.exit_status == 0, result.stderr
    return int(result.stdout.strip())
