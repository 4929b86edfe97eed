"""The SSH side of a terminal session: one shell on the learner's lab, under a PTY.

:meth:`Terminal.open` connects with asyncssh to the stack's SSH endpoint and
starts a login shell (``term_type`` ``xterm-256color``).  The server must
present the host key pinned in ``Stack.host_key`` and nothing else: we pass
that key (and only it) as the trusted keys of this one connection, so neither
``~/.ssh/known_hosts``, ``~/.ssh/config`` nor an SSH agent of the account the
gateway runs under has any say.  A stack without a pinned key is refused
outright; we never connect unpinned.

The endpoint is ``Stack.ip`` on ``Stack.ssh_port``, unless the caller passes a
port (the learner's choice from the lab's configured ``ports``, already
checked by the caller): for SSH labs those ports name further SSH endpoints of
the same lab host, so the same user, private key and pinned host key apply —
an endpoint presenting any other host key is refused like the default one.

Errors are reported as :class:`TerminalError` subclasses whose message is safe
for the log (it never contains key material) but not meant for the browser:
the caller shows a generic text.

This module does not touch the database; it takes plain values (see
:class:`SSHTarget`), so it can be used and tested without Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncssh

from ..remote import SSHTarget

logger = logging.getLogger(__name__)

#: Seconds allowed for TCP connect + SSH handshake + authentication.
CONNECT_TIMEOUT = 10.0
#: Seconds allowed for opening the session channel and getting the PTY and shell.
SESSION_TIMEOUT = 10.0
TERM_TYPE = "xterm-256color"
DEFAULT_SIZE = (80, 24)
#: Largest chunk read from the shell at a time (one websocket frame at most this big).
READ_SIZE = 64 * 1024
#: Detect a lab that vanished without closing TCP (suspended VM, network cut).
KEEPALIVE_INTERVAL = 30
KEEPALIVE_COUNT_MAX = 3


class TerminalError(Exception):
    """The terminal could not be opened; the message is for the log, not the learner."""


class HostKeyNotPinned(TerminalError):
    """The stack has no (usable) pinned host key, so we refuse to connect."""


class HostKeyMismatch(TerminalError):
    """The server did not prove possession of the pinned host key."""


class ConnectFailed(TerminalError):
    """Network, timeout, authentication or channel failure."""


def pinned_host_keys(text: str) -> list[asyncssh.SSHKey]:
    """Parse the pinned host key(s) in ``text``.

    Accepts one OpenSSH public key line per line (``ssh-ed25519 AAAA… [comment]``),
    and tolerates a ``known_hosts``-style leading host field.  Returns an empty
    list when there is no usable key; the caller must then refuse to connect.
    """
    keys: list[asyncssh.SSHKey] = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        candidates = [line]
        parts = line.split(None, 1)
        if len(parts) == 2:
            # "[host]:port ssh-ed25519 AAAA…" — drop the host field.
            candidates.append(parts[1])
        for candidate in candidates:
            try:
                keys.append(asyncssh.import_public_key(candidate))
                break
            except (asyncssh.KeyImportError, ValueError):
                continue
    return keys


class Terminal:
    """An open shell on the lab.  Create with :meth:`open`; always :meth:`close`.

    :meth:`read` and :meth:`write` work on raw bytes; both are meant to be
    driven by one pump task each.  :meth:`write` waits for the SSH channel's
    flow control, which is what gives the websocket side backpressure.
    """

    def __init__(
        self, conn: asyncssh.SSHClientConnection, process: asyncssh.SSHClientProcess, size: tuple[int, int]
    ) -> None:
        self._conn = conn
        self._process = process
        self._closed = False
        #: (cols, rows) last requested for the PTY.
        self.size = size
        #: Set when output ended because the connection failed rather than the shell ending.
        self.lost = False

    @classmethod
    async def open(
        cls,
        target: SSHTarget,
        *,
        size: tuple[int, int] | Callable[[], tuple[int, int]] = DEFAULT_SIZE,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> Terminal:
        """Connect to ``target`` and start a login shell under a PTY of ``size`` (cols, rows).

        ``size`` may be a callable: it is called when the PTY is requested,
        after the SSH handshake, so the caller can pass the latest size it knows.

        Raises :class:`HostKeyNotPinned` (no pinned key: nothing was attempted),
        :class:`HostKeyMismatch` (the server's identity is not the pinned one)
        or :class:`ConnectFailed` (anything else, including the timeout).
        """
        host_keys = pinned_host_keys(target.host_key)
        if not host_keys:
            raise HostKeyNotPinned(f"no pinned host key for {target.host}:{target.port}")
        if not target.host or not target.username:
            raise ConnectFailed("the stack has no SSH address or user")
        try:
            client_key = asyncssh.import_private_key(target.private_key)
        except (asyncssh.KeyImportError, ValueError, TypeError) as error:
            raise ConnectFailed(f"the stack's private key cannot be used: {type(error).__name__}") from None

        try:
            conn = await asyncio.wait_for(
                asyncssh.connect(
                    target.host,
                    target.port,
                    username=target.username,
                    client_keys=[client_key],
                    # Only the pinned key(s), for this connection only: (trusted keys, CA keys, revoked keys).
                    known_hosts=(host_keys, [], []),
                    # Nothing from the gateway account's environment may influence the connection.
                    config=None,
                    agent_path=None,
                    password=None,
                    kbdint_auth=False,
                    preferred_auth="publickey",
                    connect_timeout=connect_timeout,
                    login_timeout=connect_timeout,
                    keepalive_interval=KEEPALIVE_INTERVAL,
                    keepalive_count_max=KEEPALIVE_COUNT_MAX,
                ),
                # asyncssh's own timeouts should fire first; this is the backstop.
                timeout=connect_timeout + 1,
            )
        except asyncssh.HostKeyNotVerifiable as error:
            raise HostKeyMismatch(f"{target.host}:{target.port}: {error.reason}") from None
        except asyncssh.KeyExchangeFailed as error:
            # The server does not even offer the pinned key's type: the identity has changed too.
            if "host key" in str(error.reason).lower():
                raise HostKeyMismatch(f"{target.host}:{target.port}: {error.reason}") from None
            raise ConnectFailed(f"{target.host}:{target.port}: key exchange failed: {error.reason}") from None
        except asyncssh.PermissionDenied as error:
            raise ConnectFailed(f"{target.host}:{target.port}: authentication refused: {error.reason}") from None
        except asyncssh.Error as error:
            raise ConnectFailed(f"{target.host}:{target.port}: {type(error).__name__}: {error.reason}") from None
        except TimeoutError:
            raise ConnectFailed(f"{target.host}:{target.port}: timed out after {connect_timeout:g} s") from None
        except OSError as error:
            raise ConnectFailed(f"{target.host}:{target.port}: {error.strerror or type(error).__name__}") from None

        cols, rows = size() if callable(size) else size
        try:
            process = await asyncio.wait_for(
                conn.create_process(
                    # No command: the server starts the user's login shell.
                    term_type=TERM_TYPE,
                    term_size=(cols, rows),
                    encoding=None,  # bytes both ways; the browser decodes UTF-8
                    # A PTY normally merges them already; if a server sends stderr separately anyway,
                    # an unread stderr buffer would grow and eventually stall the channel.
                    stderr=asyncssh.STDOUT,
                ),
                timeout=SESSION_TIMEOUT,
            )
        except BaseException as error:
            conn.close()
            if isinstance(error, (asyncssh.Error, OSError, TimeoutError)):
                raise ConnectFailed(
                    f"{target.host}:{target.port}: could not open a shell: {type(error).__name__}"
                ) from None
            raise
        return cls(conn, process, (cols, rows))

    async def read(self) -> bytes:
        """Return the next chunk of terminal output; ``b""`` once the session is over.

        After ``b""``, :attr:`lost` tells a dropped connection (keepalive
        timeout, reset) from a shell that ended normally.
        """
        try:
            data = await self._process.stdout.read(READ_SIZE)
        except (asyncssh.Error, OSError) as error:
            logger.warning("SSH session lost: %s", type(error).__name__)
            self.lost = True
            return b""
        return data or b""

    async def write(self, data: bytes) -> None:
        """Send input bytes to the shell, waiting while the channel's window is full."""
        if self._closed or not data:
            return
        try:
            self._process.stdin.write(data)
            await self._process.stdin.drain()
        except (asyncssh.Error, OSError, BrokenPipeError) as error:
            # The output pump notices the end and closes the session.
            logger.debug("SSH session write failed: %s", type(error).__name__)

    def resize(self, cols: int, rows: int) -> None:
        """Tell the remote PTY its new size (the shell gets SIGWINCH)."""
        if self._closed:
            return
        self.size = (cols, rows)
        try:
            self._process.change_terminal_size(cols, rows)
        except (asyncssh.Error, OSError) as error:
            logger.debug("SSH resize failed: %s", type(error).__name__)

    @property
    def exit_status(self) -> int | None:
        """The shell's exit status once it has ended, else ``None``."""
        return self._process.exit_status

    async def close(self) -> None:
        """Close the channel and the connection; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._process.close()
        self._conn.close()
        with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
            await asyncio.wait_for(self._conn.wait_closed(), timeout=5)
