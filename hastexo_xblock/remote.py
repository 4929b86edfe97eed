"""SSH from the workers to a lab: is it answering, is it who it was, and run a script on it.

asyncssh is used with explicit time-outs; callers run these from synchronous
code through :func:`run_sync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncssh

from . import timing

T = TypeVar("T")


class HostKeyMismatch(Exception):
    """The lab presented a host key other than the pinned one."""


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code (a Celery task, a view)."""
    return asyncio.run(coro)


async def fetch_host_key(host: str, port: int, timeout: float) -> str:
    """Complete an SSH key exchange with ``host:port`` and return its host key.

    The key is returned as an OpenSSH public key line.  Raises ``OSError``,
    ``asyncssh.Error`` or ``asyncio.TimeoutError`` when the server does not
    answer properly within ``timeout`` seconds.
    """
    key = await asyncio.wait_for(asyncssh.get_server_host_key(host, port, config=None), timeout)
    if key is None:
        raise asyncssh.Error(0, "the server presented no host key")
    return key.export_public_key("openssh").decode().strip()


def same_key(a: str, b: str) -> bool:
    """Compare two OpenSSH public key lines by type and key data (comments ignored)."""
    return a.split()[:2] == b.split()[:2]


async def wait_for_ssh(
    host: str,
    port: int,
    deadline: timing.Deadline,
    pinned: str | None = None,
    attempt_timeout: float = 5.0,
) -> str:
    """Wait until ``host:port`` answers SSH; return its host key line.

    Retries with :data:`timing.SSH` backoff until ``deadline``, then raises
    ``TimeoutError``.  When ``pinned`` is given the presented key must match
    it, else :class:`HostKeyMismatch` is raised at once (no retry: that is
    not a transient fault).
    """

    async def probe() -> str:
        key = await fetch_host_key(host, port, max(0.1, min(attempt_timeout, deadline.remaining())))
        if pinned and not same_key(pinned, key):
            raise HostKeyMismatch(f"host key of {host}:{port} does not match the pinned key")
        return key

    return await timing.poll_async(
        probe, deadline, timing.SSH, what=f"SSH on {host}:{port}", retry_on=(TimeoutError, OSError, asyncssh.Error)
    )


@dataclass(frozen=True)
class RemoteResult:
    """What a script run on the lab returned (output capped, see :func:`run_scripts`)."""

    exit_status: int
    stdout: str
    stderr: str
    #: The script was stopped because it ran out of time (``exit_status`` is -1).
    timed_out: bool = False


#: Bytes of each output stream kept per script; the rest is read and dropped.
OUTPUT_LIMIT = 64 * 1024


@dataclass(frozen=True)
class SSHTarget:
    """Where and as whom to log in to a lab, and the only host key trusted.  ``repr`` never shows the key."""

    host: str
    port: int
    username: str
    private_key: str = field(repr=False)
    host_key: str = field(repr=False)

    @classmethod
    def from_stack(cls, stack: Any, port: int | None = None) -> SSHTarget:
        """Build a target from a ``Stack`` row (``ip``, ``ssh_port``, ``ssh_user``, keys).

        ``port``, when given, replaces ``ssh_port`` (another SSH endpoint of the
        same host; the caller has checked it is one the lab offers).  Everything
        else, the pinned host key included, is the stack's.
        """
        return cls(
            host=stack.ip or "",
            port=int(port) if port is not None else int(stack.ssh_port or 22),
            username=stack.ssh_user or "",
            private_key=stack.private_key or "",
            host_key=stack.host_key or "",
        )


def _connect(login: SSHTarget, connect_timeout: float) -> Any:
    if not login.host_key:
        raise asyncssh.Error(0, "no pinned host key for the lab")
    known_hosts = asyncssh.import_known_hosts(
        f"[{login.host}]:{login.port} {login.host_key}\n" if login.port != 22 else f"{login.host} {login.host_key}\n"
    )
    return asyncssh.connect(
        login.host,
        login.port,
        client_keys=[asyncssh.import_private_key(login.private_key)],
        known_hosts=known_hosts,
        config=None,
        agent_path=None,
        connect_timeout=max(0.1, connect_timeout),
        # No user name configured: asyncssh's default (the worker's own user).
        **({"username": login.username} if login.username else {}),
    )


async def _read_capped(stream: Any, limit: int) -> str:
    kept: list[str] = []
    size = 0
    while True:
        chunk = await stream.read(16384)
        if not chunk:
            return "".join(kept)
        if size < limit:
            kept.append(chunk[: limit - size])
            size += len(kept[-1])


async def _run_one(connection: Any, command: str, script: str, timeout: float) -> RemoteResult:
    """Run one script on an open connection; a script past ``timeout`` is killed and marked timed out."""
    process = await connection.create_process(command, encoding="utf-8", errors="replace")
    try:
        process.stdin.write(script)
        process.stdin.write_eof()
        outputs = asyncio.gather(_read_capped(process.stdout, OUTPUT_LIMIT), _read_capped(process.stderr, OUTPUT_LIMIT))
        stdout, stderr = await asyncio.wait_for(outputs, timeout)
        await asyncio.wait_for(process.wait_closed(), max(0.1, min(5.0, timeout)))
    except TimeoutError:
        with contextlib.suppress(OSError, asyncssh.Error):
            process.kill()  # servers that honour signal requests stop it at once
        process.close()  # and closing the channel hangs it up everywhere else
        return RemoteResult(-1, "", "", timed_out=True)
    status = process.exit_status if process.exit_status is not None else -1
    return RemoteResult(status, stdout, stderr)


async def run_scripts(
    login: SSHTarget,
    scripts: Sequence[str],
    *,
    script_timeout: float,
    total_timeout: float,
    args: Sequence[str] = (),
) -> list[RemoteResult]:
    """Run each of ``scripts`` with bash on the lab, in order, over one SSH connection.

    Each script travels on standard input (``bash -s -- ARGS``): nothing is
    written to the lab's disk first, and nothing depends on SFTP.  Only the
    pinned host key is trusted.  A script gets ``script_timeout`` seconds and
    all of them together ``total_timeout``; a script that runs out of time is
    stopped and its result has ``timed_out`` set, and scripts the total left no
    time for are not started (also ``timed_out``).  Output beyond
    :data:`OUTPUT_LIMIT` per stream is dropped.  Returns one result per
    script.  Raises ``OSError``/``asyncssh.Error``/``TimeoutError`` when the
    lab cannot be reached or logged in to in time.
    """
    deadline = timing.Deadline.after(total_timeout)
    command = "bash -s -- " + " ".join(shlex.quote(arg) for arg in args)
    results: list[RemoteResult] = []
    connection = await _connect(login, min(30.0, total_timeout))  # asyncssh bounds the whole login
    async with connection:
        for script in scripts:
            remaining = deadline.remaining()
            if remaining <= 0:
                results.append(RemoteResult(-1, "", "", timed_out=True))
                continue
            results.append(await _run_one(connection, command, script, min(script_timeout, remaining)))
    return results


async def run_script(
    login: SSHTarget,
    script: str,
    args: Sequence[str] = (),
    timeout: float = 300.0,
) -> RemoteResult:
    """Run one ``script`` on the lab (see :func:`run_scripts`) with ``args``.

    Raises ``TimeoutError`` when it runs longer than ``timeout`` seconds (it
    is stopped), and ``OSError``/``asyncssh.Error`` when the lab cannot be
    reached.
    """
    [result] = await run_scripts(login, [script], script_timeout=timeout, total_timeout=timeout, args=args)
    if result.timed_out:
        raise TimeoutError(f"the script did not finish within {timeout:.0f} s")
    return result
