"""SSH from the workers to a lab: is it answering, is it who it was, and run a script on it.

asyncssh is used with explicit time-outs; callers run these from synchronous
code through :func:`run_sync`.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncssh

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
    deadline: float,
    pinned: str | None = None,
    attempt_timeout: float = 5.0,
    first_delay: float = 0.1,
    max_delay: float = 2.0,
) -> str:
    """Wait until ``host:port`` answers SSH; return its host key line.

    Retries with a growing delay until ``deadline`` (a ``time.monotonic()``
    value), then raises ``TimeoutError``.  When ``pinned`` is given the
    presented key must match it, else :class:`HostKeyMismatch` is raised at
    once (no retry: that is not a transient fault).
    """
    delay = first_delay
    last_error: BaseException | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"SSH on {host}:{port} did not answer in time ({last_error!r})")
        try:
            key = await fetch_host_key(host, port, min(attempt_timeout, remaining))
        except (TimeoutError, OSError, asyncssh.Error) as error:
            last_error = error
        else:
            if pinned and not same_key(pinned, key):
                raise HostKeyMismatch(f"host key of {host}:{port} does not match the pinned key")
            return key
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, max_delay)


@dataclass(frozen=True)
class RemoteResult:
    """What a script run on the lab returned."""

    exit_status: int
    stdout: str
    stderr: str


async def run_script(
    host: str,
    port: int,
    user: str,
    private_key: str,
    host_key: str,
    script: str,
    args: Sequence[str] = (),
    timeout: float = 300.0,
) -> RemoteResult:
    """Run ``script`` on the lab with bash, ``args`` as its arguments; return exit status and output.

    The script travels on standard input (``bash -s -- ARGS``): nothing is
    written to the lab's disk first, and nothing depends on SFTP.  Only the
    pinned ``host_key`` is trusted.  Raises ``TimeoutError`` when the script
    runs longer than ``timeout`` seconds (the session is closed), and
    ``OSError``/``asyncssh.Error`` when the lab cannot be reached.
    """
    if not host_key:
        raise asyncssh.Error(0, "no pinned host key for the lab")
    known_hosts = asyncssh.import_known_hosts(f"[{host}]:{port} {host_key}\n" if port != 22 else f"{host} {host_key}\n")
    key = asyncssh.import_private_key(private_key)
    command = "bash -s -- " + " ".join(shlex.quote(arg) for arg in args)

    async def run() -> RemoteResult:
        async with asyncssh.connect(
            host,
            port,
            client_keys=[key],
            known_hosts=known_hosts,
            config=None,
            agent_path=None,
            connect_timeout=min(timeout, 30.0),
            # No user name configured: asyncssh's default (the worker's own user).
            **({"username": user} if user else {}),
        ) as connection:
            result = await connection.run(command, input=script, check=False)
            status = result.exit_status if result.exit_status is not None else -1
            return RemoteResult(status, str(result.stdout or ""), str(result.stderr or ""))

    try:
        return await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        raise TimeoutError(f"the script did not finish within {timeout:.0f} s") from None
