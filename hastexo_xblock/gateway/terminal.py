"""The SSH side of a terminal session: one shell on the learner's lab, under a PTY.

:meth:`Terminal.open` logs in to the stack's SSH endpoint with :func:`connect`
— the gateway's options over :func:`hastexo_xblock.ssh.connect`, the package's
one pinned-host-key login: only the key pinned in ``Stack.host_key`` is
trusted, a stack without one is refused outright — and starts a login shell
(``term_type`` ``xterm-256color``).  The desktop relays (``vnc.py``,
``guac.py``) log in with the same :func:`connect`.

The endpoint is ``Stack.ip`` on ``Stack.ssh_port``, unless the caller passes a
port (the learner's choice from the lab's configured ``ports``, already
checked by the caller): for SSH labs those ports name further SSH endpoints of
the same lab host, so the same user, private key and pinned host key apply —
an endpoint presenting any other host key is refused like the default one.

Errors are reported as :class:`TerminalError` (``ssh.SSHError``) subclasses —
``HostKeyNotPinned``, ``HostKeyMismatch``, ``ConnectFailed``, the very classes
of ``ssh.py`` — whose message is safe for the log (it never contains key
material) but not meant for the browser: the caller shows a generic text.

This module does not touch the database; it takes plain values (see
:class:`SSHTarget`), so it can be used and tested without Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncssh

from .. import ssh
from ..ssh import ConnectFailed, HostKeyMismatch, HostKeyNotPinned, SSHTarget, pinned_host_keys
from ..ssh import SSHError as TerminalError
from .transport import drop_empty_ignores

__all__ = [
    "BufferedSession",
    "ConnectFailed",
    "HostKeyMismatch",
    "HostKeyNotPinned",
    "SSHTarget",
    "Stream",
    "Terminal",
    "TerminalError",
    "connect",
    "pinned_host_keys",
]

logger = logging.getLogger(__name__)

#: Seconds allowed for TCP connect + SSH handshake + authentication.
CONNECT_TIMEOUT = 10.0
#: Seconds allowed for opening the session channel and getting the PTY and shell.
SESSION_TIMEOUT = 10.0
TERM_TYPE = "xterm-256color"
DEFAULT_SIZE = (80, 24)
#: Output buffered for the reader beyond which the SSH channel stops delivering (and, once
#: its window is used up, the lab stops sending): the gateway never holds more than this plus
#: one SSH window (2 MiB) per session, however slowly the browser reads.
HIGH_WATER = 256 * 1024
#: Ciphers preferred, fastest first on hardware with AES instructions (AES-GCM runs in
#: OpenSSL; chacha20-poly1305, asyncssh's default first choice, costs more CPU per packet
#: here).  The server picks from this list, so any server that offers one of them works.
ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
#: Detect a lab that vanished without closing TCP (suspended VM, network cut).
KEEPALIVE_INTERVAL = 30
KEEPALIVE_COUNT_MAX = 3


async def connect(target: SSHTarget, *, connect_timeout: float = CONNECT_TIMEOUT) -> asyncssh.SSHClientConnection:
    """An SSH connection to ``target`` that trusts its pinned host key and nothing else.

    Shared by the terminal and the desktop relays (:mod:`.vnc`, :mod:`.guac`), so every
    way into a lab checks the same identity.  Raises :class:`HostKeyNotPinned` (no pinned
    key: nothing was attempted), :class:`HostKeyMismatch` (the server's identity is not
    the pinned one) or :class:`ConnectFailed` (anything else, including the timeout).
    """
    if not pinned_host_keys(target.host_key):
        raise HostKeyNotPinned(f"no pinned host key for {target.host}:{target.port}")
    if not target.host or not target.username:
        raise ConnectFailed("the stack has no SSH address or user")
    conn = await ssh.connect(
        target,
        timeout=connect_timeout,
        encryption_algs=ENCRYPTION_ALGS,
        # Terminal bytes are small or already dense; zlib would only cost CPU on loopback/LAN.
        compression_algs=None,
        keepalive_interval=KEEPALIVE_INTERVAL,
        keepalive_count_max=KEEPALIVE_COUNT_MAX,
    )
    drop_empty_ignores(conn)  # AES-GCM (preferred) needs no ignore packet before every keystroke
    return conn


class BufferedSession(asyncssh.SSHClientSession[bytes]):
    """Receives a channel's output (a shell's or a forwarded socket's) into one buffer, by callback.

    asyncssh calls :meth:`data_received` from its packet handling; the bytes
    go to :attr:`sink` if one is set and takes them, else into the buffer,
    which :meth:`Stream.read` hands out whole, so many SSH packets become one
    read.  Above :data:`HIGH_WATER` the channel is paused until the next read: asyncssh then stops
    granting window to the server, which is the end-to-end backpressure.
    """

    # Hundreds of these live in one process: no per-instance dict, and waiters are
    # futures made only while someone waits (an asyncio.Event costs a deque each).
    __slots__ = ("buffer", "channel", "ended", "held", "lost", "paused", "reader", "sink", "writer")

    def __init__(self) -> None:
        self.channel: asyncssh.SSHClientChannel[bytes] | None = None
        self.buffer = bytearray()
        #: Set while the reader waits for output / the writer waits for window.
        self.reader: asyncio.Future[None] | None = None
        self.writer: asyncio.Future[None] | None = None
        self.paused = False
        self.ended = False
        self.lost = False
        #: Offered output first, while nothing is buffered or held; returns whether it took it.
        self.sink: Callable[[bytes], bool] | None = None
        #: The reader took output it has not passed on yet: later output must queue behind it.
        self.held = False

    def _wake_reader(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)

    def _wake_writer(self) -> None:
        if self.writer is not None and not self.writer.done():
            self.writer.set_result(None)

    def connection_made(self, channel: asyncssh.SSHClientChannel[bytes]) -> None:  # type: ignore[override]
        self.channel = channel

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        # stdout and (if a server sends it separately despite the PTY) stderr alike.
        if self.sink is not None and not self.buffer and not self.held and self.sink(data):
            return
        self.buffer += data
        if len(self.buffer) >= HIGH_WATER and not self.paused and self.channel is not None:
            self.paused = True
            self.channel.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        return False  # let asyncssh close the channel once the server has sent everything

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            logger.warning("SSH session lost: %s", type(exc).__name__)
            self.lost = True
        self.ended = True
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        if self.writer is None or self.writer.done():
            self.writer = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_writer()
        self.writer = None


class Stream:
    """A byte stream over one SSH channel with end-to-end flow control; always :meth:`close`.

    :meth:`read` and :meth:`write` work on raw bytes; each is meant to be
    driven by one task.  Flow control runs both ways: output stops being
    accepted from the lab while the reader does not take it (see
    :data:`HIGH_WATER`), and :meth:`write` waits while the lab's window is full.
    Closing the stream closes its SSH connection too (one connection per stream).
    """

    def __init__(
        self,
        conn: asyncssh.SSHClientConnection,
        channel: asyncssh.SSHClientChannel[bytes],
        session: BufferedSession,
    ) -> None:
        self._conn = conn
        self._channel = channel
        self._session = session
        self._closed = False

    @property
    def lost(self) -> bool:
        """Whether output ended because the connection failed rather than the remote end closing."""
        return self._session.lost

    @property
    def buffered(self) -> int:
        """Output bytes received from the lab and not yet read."""
        return len(self._session.buffer)

    @property
    def paused(self) -> bool:
        """Whether the channel is paused because the reader is behind."""
        return self._session.paused

    async def read(self) -> bytes:
        """Return all terminal output received so far (waiting for some); ``b""`` once the session is over.

        After ``b""``, :attr:`lost` tells a dropped connection (keepalive
        timeout, reset) from a shell that ended normally.
        """
        session = self._session
        while not session.buffer:
            if session.ended:
                return b""
            session.reader = asyncio.get_running_loop().create_future()
            try:
                await session.reader
            finally:
                session.reader = None
        return self.read_nowait()

    def read_nowait(self) -> bytes:
        """All output received so far (possibly ``b""``), without waiting."""
        session = self._session
        session.held = True  # before resume_reading() below can deliver more
        data = bytes(session.buffer)
        session.buffer.clear()
        if session.paused and not session.ended:
            session.paused = False
            self._channel.resume_reading()  # may deliver buffered data into the buffer at once
        return data

    def set_sink(self, sink: Callable[[bytes], bool] | None) -> None:
        """Offer output to ``sink(data)`` as it arrives, before buffering it; ``None`` stops that.

        ``sink`` returns whether it took the bytes; if not, they are buffered
        for :meth:`read` as usual.  It is offered output only while nothing is
        buffered and nothing :meth:`read` returned is still held (see
        :meth:`passed_on`), so output never overtakes output.
        """
        self._session.sink = sink

    def passed_on(self) -> None:
        """The output returned by the last :meth:`read` has been delivered: the sink may take output again."""
        self._session.held = False

    def write_nowait(self, data: bytes) -> bool:
        """Send ``data`` to the shell if the channel's window takes it now; ``False`` (nothing sent) if not.

        ``False`` means the caller must use :meth:`write`, which waits.
        """
        session = self._session
        if self._closed or session.ended or session.writer is not None:
            return False
        try:
            self._channel.write(data)
        except (asyncssh.Error, OSError, BrokenPipeError) as error:
            # As in write(): the output side notices the end and closes the session.
            logger.debug("SSH session write failed: %s", type(error).__name__)
        return True

    async def write(self, data: bytes) -> None:
        """Send input bytes to the shell, waiting while the channel's window is full."""
        if self._closed or not data or self._session.ended:
            return
        try:
            self._channel.write(data)
        except (asyncssh.Error, OSError, BrokenPipeError) as error:
            # The output side notices the end and closes the session.
            logger.debug("SSH session write failed: %s", type(error).__name__)
            return
        writer = self._session.writer
        if writer is not None and not self._session.ended:
            await asyncio.shield(writer)  # shared by nobody else, but a cancelled write must not cancel it

    async def close(self) -> None:
        """Close the channel and the connection; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._channel.close()
        self._conn.close()
        with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
            await asyncio.wait_for(self._conn.wait_closed(), timeout=5)


class Terminal(Stream):
    """An open shell on the lab, under a PTY.  Create with :meth:`open`; always :meth:`close`."""

    def __init__(
        self,
        conn: asyncssh.SSHClientConnection,
        channel: asyncssh.SSHClientChannel[bytes],
        session: BufferedSession,
        size: tuple[int, int],
    ) -> None:
        super().__init__(conn, channel, session)
        #: (cols, rows) last requested for the PTY.
        self.size = size

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
        conn = await connect(target, connect_timeout=connect_timeout)
        cols, rows = size() if callable(size) else size
        try:
            channel, session = await asyncio.wait_for(
                conn.create_session(
                    BufferedSession,
                    # No command: the server starts the user's login shell.
                    term_type=TERM_TYPE,
                    term_size=(cols, rows),
                    encoding=None,  # bytes both ways; the browser decodes UTF-8
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
        return cls(conn, channel, session, (cols, rows))

    def resize(self, cols: int, rows: int) -> None:
        """Tell the remote PTY its new size (the shell gets SIGWINCH)."""
        if self._closed:
            return
        self.size = (cols, rows)
        try:
            self._channel.change_terminal_size(cols, rows)
        except (asyncssh.Error, OSError) as error:
            logger.debug("SSH resize failed: %s", type(error).__name__)

    @property
    def exit_status(self) -> int | None:
        """The shell's exit status once it has ended, else ``None``."""
        return self._channel.get_exit_status()
