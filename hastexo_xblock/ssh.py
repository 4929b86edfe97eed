"""The one way this package logs in to a lab over SSH: only the pinned host key is trusted.

Every SSH login to a lab — the gateway's terminals (``gateway/terminal.py``),
the workers' checks and hooks (``remote.py``) — goes through :func:`connect`.
The server must prove possession of the host key pinned on the stack
(``Stack.host_key``) and nothing else is trusted: that key, and only it, is
passed as the trusted keys of this one connection, so neither
``~/.ssh/known_hosts``, ``~/.ssh/config``, nor an SSH agent or password of
the account the process runs under has any say.  A target without a usable
pinned key is refused before anything is sent.

Failures are :class:`SSHError` subclasses (themselves ``OSError``, so callers
that treat an unreachable lab as an ``OSError`` keep doing so):
:class:`HostKeyNotPinned`, :class:`HostKeyMismatch` (possibly an impostor:
not a fault to retry) and :class:`ConnectFailed`.  Messages are safe for the
log (never key material), not meant for the learner.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import asyncssh


class SSHError(OSError):
    """An SSH login to a lab failed; the message is for the log, not the learner."""


class HostKeyNotPinned(SSHError):
    """The target has no (usable) pinned host key, so no connection was attempted."""


class HostKeyMismatch(SSHError):
    """The server did not prove possession of the pinned host key (or presented another one)."""


class ConnectFailed(SSHError):
    """Network, time-out, authentication or key failure."""


@dataclass(frozen=True)
class SSHTarget:
    """Where and as whom to log in to a lab, and the only host key trusted.  ``repr`` never shows the keys."""

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


def pinned_host_keys(text: str) -> list[asyncssh.SSHKey]:
    """Parse the pinned host key(s) in ``text``.

    Accepts one OpenSSH public key line per line (``ssh-ed25519 AAAA… [comment]``),
    and tolerates a ``known_hosts``-style leading host field.  Returns an empty
    list when there is no usable key; :func:`connect` then refuses to connect.
    """
    keys: list[asyncssh.SSHKey] = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        candidates = [line]
        parts = line.split(None, 1)
        if len(parts) == 2:
            candidates.append(parts[1])  # "[host]:port ssh-ed25519 AAAA…": drop the host field
        for candidate in candidates:
            try:
                keys.append(asyncssh.import_public_key(candidate))
                break
            except (asyncssh.KeyImportError, ValueError):
                continue
    return keys


def same_key(a: str, b: str) -> bool:
    """Compare two OpenSSH public key lines by type and key data (comments ignored)."""
    return a.split()[:2] == b.split()[:2]


async def connect(target: SSHTarget, *, timeout: float, **options: Any) -> asyncssh.SSHClientConnection:
    """Log in to ``target`` with its private key, trusting only its pinned host key; return the connection.

    ``timeout`` bounds the TCP connect, the key exchange and the login
    together.  ``options`` are further ``asyncssh.connect`` options (ciphers,
    keepalive, a tunnel) that cannot weaken the pinning: the trust options
    are set here and win.  An empty user name means asyncssh's default (the
    process's own user).  Raises :class:`HostKeyNotPinned`,
    :class:`HostKeyMismatch` or :class:`ConnectFailed`.
    """
    where = f"{target.host}:{target.port}"
    host_keys = pinned_host_keys(target.host_key)
    if not host_keys:
        raise HostKeyNotPinned(f"no pinned host key for {where}")
    try:
        client_key = asyncssh.import_private_key(target.private_key)
    except (asyncssh.KeyImportError, ValueError, TypeError) as error:
        raise ConnectFailed(f"{where}: the stack's private key cannot be used: {type(error).__name__}") from None
    timeout = max(0.1, timeout)
    trust = {
        "client_keys": [client_key],
        # Only the pinned key(s), for this connection only: (trusted keys, CA keys, revoked keys).
        "known_hosts": (host_keys, [], []),
        # Nothing from the account's environment may influence the connection.
        "config": None,
        "agent_path": None,
        "password": None,
        "kbdint_auth": False,
        "preferred_auth": "publickey",
        "connect_timeout": timeout,
        "login_timeout": timeout,
    }
    if target.username:
        trust["username"] = target.username
    try:
        # asyncssh's own time-outs should fire first; this is the backstop.
        return await asyncio.wait_for(asyncssh.connect(target.host, target.port, **{**options, **trust}), timeout + 1)
    except asyncssh.HostKeyNotVerifiable as error:
        raise HostKeyMismatch(f"{where}: {error.reason}") from None
    except asyncssh.KeyExchangeFailed as error:
        # The server does not even offer the pinned key's type: the identity has changed too.
        if "host key" in str(error.reason).lower():
            raise HostKeyMismatch(f"{where}: {error.reason}") from None
        raise ConnectFailed(f"{where}: key exchange failed: {error.reason}") from None
    except asyncssh.PermissionDenied as error:
        raise ConnectFailed(f"{where}: authentication refused: {error.reason}") from None
    except asyncssh.Error as error:
        raise ConnectFailed(f"{where}: {type(error).__name__}: {error.reason}") from None
    except TimeoutError:
        raise ConnectFailed(f"{where}: timed out after {timeout:g} s") from None
    except OSError as error:
        raise ConnectFailed(f"{where}: {error.strerror or type(error).__name__}") from None
