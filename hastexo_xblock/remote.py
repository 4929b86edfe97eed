"""SSH from the workers to a lab: is it answering, is it who it was, and run a script on it.

asyncssh is used with explicit time-outs; callers run these from synchronous
code through :func:`run_sync`.  Logins go through :func:`ssh.connect` (only
the pinned host key is trusted); :class:`HostKeyMismatch` and
:class:`SSHTarget` are ``ssh.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncssh

from . import timing
from .ssh import HostKeyMismatch, SSHTarget, connect, same_key

__all__ = ["HostKeyMismatch", "RemoteResult", "SSHTarget", "run_script", "run_scripts", "same_key", "wait_for_ssh"]

T = TypeVar("T")


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
        probe,
        deadline,
        timing.SSH,
        what=f"SSH on {host}:{port}",
        retry_on=(TimeoutError, OSError, asyncssh.Error),
        fatal=(HostKeyMismatch,),  # an OSError (ssh.SSHError), but not a fault that passes
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
    lab cannot be reached or logged in to in time: the login's failures are
    ``ssh.SSHError`` (an ``OSError``), :class:`HostKeyMismatch` when the lab
    is not who it was.
    """
    deadline = timing.Deadline.after(total_timeout)
    command = "bash -s -- " + " ".join(shlex.quote(arg) for arg in args)
    results: list[RemoteResult] = []
    connection = await connect(login, timeout=min(30.0, total_timeout))
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
