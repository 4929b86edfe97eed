"""Desktop sessions over VNC: an accepted websocket bound to the lab's VNC server, through the lab's SSH.

Where the VNC server is
-----------------------
The gateway never connects to a VNC server directly.  It logs in to the lab's
SSH endpoint exactly as the terminal does (same user, key and pinned host key,
:func:`.terminal.connect`) and opens one channel from there
(:func:`desktop_endpoint`):

* the ticket's port, when the learner picked one of the lab's ``ports``: a
  ``direct-tcpip`` channel to that port on the lab host's loopback
  (``127.0.0.1:<port>``);
* else the endpoint recorded for the stack at launch (``Stack.desktop``, from
  the provider: ``unix:/path`` for a Unix socket, reached with
  ``direct-streamlocal``, or ``host:port``);
* else ``127.0.0.1:5901`` (display ``:1``) on the lab host.

Passwords
---------
No VNC password ever reaches the browser.  The gateway does both RFB
handshakes itself (:mod:`.rfb`): towards the browser it offers the security
type "None" only; towards the server it picks "None" when offered (the local
provider's Xtigervnc listens on a Unix socket of mode 0600 inside the lab,
with ``-SecurityTypes None``: only the lab's user, hence only SSH, reaches
it), otherwise "VNC authentication", answering the challenge with the stack's
``password`` (decrypted from the database only for this, see
:mod:`hastexo_xblock.secrets`).  Heat labs whose VNC server insists on a
password therefore work without that password ever leaving the gateway.

The websocket
-------------
Binary frames carry RFB both ways (noVNC/websockify style; the ``binary``
subprotocol is accepted when offered).  Text frames are the same JSON messages
as the terminal's (:mod:`.protocol`): ``status`` (``connecting`` before the
first RFB byte, ``connected``, ``suspended``/``deleted`` before close 4010),
``error`` before an error close, and ``pong`` for the browser's ``ping``; a
``resize`` control message is ignored (desktops resize in RFB, SetDesktopSize).
The first binary frame the browser receives is the gateway's own RFB
ProtocolVersion.

The browser's stream goes through :class:`.rfb.ClientFilter`: read-only tickets
lose their key, pointer, cut-text (and QEMU key, XVP, SetDesktopSize)
messages here, whatever the browser does; key and pointer input count as
learner activity (:mod:`.activity`).  The ClientInit's shared flag is always
set, so a second viewer never disconnects the learner.

Flow control is the terminal's: the output pump awaits each websocket send
while the SSH channel buffers at most :data:`.terminal.HIGH_WATER` before it
stops granting the lab window; input waits for the lab's window.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from . import rfb, tickets
from .activity import tracker
from .protocol import CloseCode, Ping, ProtocolViolation, parse_control
from .session import (
    MSG_CONNECT_FAILED,
    MSG_INVALID,
    Message,
    Receive,
    Send,
    WebsocketSession,
)
from .terminal import (
    CONNECT_TIMEOUT,
    SESSION_TIMEOUT,
    BufferedSession,
    ConnectFailed,
    SSHTarget,
    Stream,
    TerminalError,
    connect,
)

logger = logging.getLogger(__name__)

MSG_DESKTOP_FAILED = "Could not open the lab's desktop."
#: Default VNC endpoint on the lab host when neither a port nor a recorded endpoint says otherwise.
DEFAULT_VNC = "127.0.0.1:5901"
#: Seconds for the server's side of the RFB handshake, and for the browser's.
SERVER_HANDSHAKE_TIMEOUT = 10.0
CLIENT_HANDSHAKE_TIMEOUT = 30.0
#: The websocket subprotocol noVNC and websockify use for raw binary RFB.
SUBPROTOCOL = "binary"


@dataclass(frozen=True)
class Endpoint:
    """Where, seen from the lab's SSH server, a desktop server listens: a Unix socket or host:port."""

    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """``unix:/path`` or ``host:port`` (``[v6]:port``) → :class:`Endpoint`; ``ValueError`` otherwise."""
    text = (text or "").strip()
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/"):
            raise ValueError("a desktop socket path must be absolute")
        return Endpoint(path=path)
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a desktop endpoint: {text!r}")
    return Endpoint(host=host, port=int(port))


def desktop_endpoint(stack: Any, port: int | None, default: str = DEFAULT_VNC) -> Endpoint:
    """The endpoint of a session: the ticket's ``port`` on the lab host, the stack's, or ``default``."""
    if port is not None:
        return Endpoint(host="127.0.0.1", port=int(port))
    recorded = getattr(stack, "desktop", "") or ""
    return parse_endpoint(recorded or default)


async def open_stream(target: SSHTarget, endpoint: Endpoint, *, connect_timeout: float = CONNECT_TIMEOUT) -> Stream:
    """Connect to the lab (pinned host key) and open one channel to ``endpoint``; raises :class:`TerminalError`."""
    conn = await connect(target, connect_timeout=connect_timeout)
    try:
        if endpoint.path:
            opening = conn.create_unix_connection(BufferedSession, endpoint.path, encoding=None)
        else:
            opening = conn.create_connection(BufferedSession, endpoint.host, endpoint.port, encoding=None)
        channel, session = await asyncio.wait_for(opening, timeout=SESSION_TIMEOUT)
    except BaseException as error:
        conn.close()
        if isinstance(error, (asyncssh.Error, OSError, TimeoutError)):
            reason = getattr(error, "reason", "") or type(error).__name__
            raise ConnectFailed(f"{target.host}:{target.port}: could not open {endpoint}: {reason}") from None
        raise
    return Stream(conn, channel, session)  # type: ignore[arg-type]


class ExactReader:
    """Reads exact byte counts from a :class:`Stream` (the handshake); keeps what came beyond."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self.buffer = bytearray()

    async def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            data = await self._stream.read()
            if not data:
                raise rfb.RFBError("the VNC server closed the connection during the handshake")
            self.buffer += data
        result = bytes(self.buffer[:count])
        del self.buffer[:count]
        return result


async def server_handshake(stream: Stream, password: str | None) -> tuple[bytes, str]:
    """Do the client's side of the handshake with the VNC server, up to (not including) ClientInit.

    Returns ``(bytes the server sent beyond the handshake, security type used)``.  Raises
    :class:`.rfb.RFBError` when the server speaks no RFB 3.x, offers no usable
    security type or refuses the password.
    """
    reader = ExactReader(stream)
    major, minor = rfb.parse_version(await reader.read(12))
    if major != 3:
        raise rfb.RFBError(f"unsupported RFB version {major}.{minor}")
    minor = 8 if minor >= 8 else 7 if minor == 7 else 3
    await stream.write(b"RFB 003.%03d\n" % minor)

    async def reason() -> str:
        (length,) = struct.unpack(">I", await reader.read(4))
        return (await reader.read(min(length, 4096))).decode("utf-8", "replace")

    if minor == 3:
        (chosen,) = struct.unpack(">I", await reader.read(4))
        if chosen == rfb.SECURITY_INVALID:
            raise rfb.RFBError(f"the VNC server refused the connection: {await reason()}")
    else:
        count = (await reader.read(1))[0]
        if count == 0:
            raise rfb.RFBError(f"the VNC server refused the connection: {await reason()}")
        offered = set(await reader.read(count))
        if rfb.SECURITY_NONE in offered:
            chosen = rfb.SECURITY_NONE
        elif rfb.SECURITY_VNC_AUTH in offered and password:
            chosen = rfb.SECURITY_VNC_AUTH
        else:
            raise rfb.RFBError(f"no usable VNC security type in {sorted(offered)} (password: {bool(password)})")
        await stream.write(bytes([chosen]))
    if chosen == rfb.SECURITY_VNC_AUTH:
        if not password:
            raise rfb.RFBError("the VNC server wants a password and the stack has none")
        await stream.write(rfb.vnc_auth_response(password, await reader.read(16)))
    elif chosen != rfb.SECURITY_NONE:
        raise rfb.RFBError(f"unsupported VNC security type {chosen}")
    if minor == 8 or chosen == rfb.SECURITY_VNC_AUTH:
        (result,) = struct.unpack(">I", await reader.read(4))
        if result != 0:
            why = await reason() if minor == 8 else "no reason given"
            raise rfb.RFBError(f"VNC authentication failed: {why}")
    return bytes(reader.buffer), {rfb.SECURITY_NONE: "None", rfb.SECURITY_VNC_AUTH: "VncAuth"}[chosen]


@dataclass
class _Inbox:
    """Bytes from the browser during its handshake, and a waiter for more."""

    data: bytearray = field(default_factory=bytearray)
    waiter: asyncio.Future[None] | None = None

    def put(self, chunk: bytes) -> None:
        self.data += chunk
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def take(self, count: int) -> bytes:
        while len(self.data) < count:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        result = bytes(self.data[:count])
        del self.data[:count]
        return result


class VncSession(WebsocketSession):
    """One accepted websocket bound to one VNC server of one lab (see the module docstring).

    :meth:`run` owns everything it starts and cleans it up, like :class:`.session.TerminalSession`.
    """

    def __init__(
        self, receive: Receive, send: Send, ticket: tickets.Ticket, stack: Any, *, subprotocol: str | None = None
    ) -> None:
        """Bind to ``stack``; the caller has checked the ticket and its port."""
        super().__init__(receive, send, ticket, stack)
        self._subprotocol = subprotocol
        #: Dropped once connected: neither the key nor the VNC password stays in memory.
        self._target: SSHTarget | None = SSHTarget.from_stack(stack)
        self._password: str | None = stack.password or None
        self._endpoint = desktop_endpoint(stack, ticket.port)
        self._filter = rfb.ClientFilter(read_only=self._read_only)
        self._inbox = _Inbox()
        self._stream: Stream | None = None  # set once both handshakes are done: input then goes straight on
        self._write_lock = asyncio.Lock()

    # --- browser → lab ------------------------------------------------------------

    async def _received(self, data: bytes | None, text: str | None) -> None:
        if data is not None:
            await self._input(data)
        elif isinstance(parse_control(text or ""), Ping):
            await self._send_json({"type": "pong"})

    def _client_left(self) -> None:
        self._inbox.put(b"")  # wakes a browser handshake waiting for bytes that will not come

    async def _input(self, data: bytes) -> None:
        if self._stream is None:
            if len(self._inbox.data) + len(data) > rfb.MAX_MESSAGE:
                raise ProtocolViolation(CloseCode.MESSAGE_TOO_BIG, "too much input during the RFB handshake")
            self._inbox.put(data)
            return
        async with self._write_lock:
            await self._forward(data)

    async def _forward(self, data: bytes) -> None:
        """Filter ``data`` and write what passes to the lab (caller holds the write lock)."""
        try:
            filtered = self._filter.feed(data)
        except rfb.RFBError as error:
            raise ProtocolViolation(CloseCode.INVALID_MESSAGE, f"RFB: {error}") from None
        if filtered.activity:
            tracker.record(self._stack_id, self._suspend_timeout)
        if filtered.forward and self._stream is not None:
            await self._stream.write(filtered.forward)

    # --- the two handshakes -----------------------------------------------------------

    async def _client_handshake(self, stream: Stream) -> None:
        """Be the server to the browser: security "None" only; forward its ClientInit as shared."""
        if not await self._send({"type": "websocket.send", "bytes": rfb.VERSION_3_8}):
            raise rfb.RFBError("the browser left")
        major, minor = rfb.parse_version(await self._inbox.take(12))
        if major != 3:
            raise rfb.RFBError(f"the browser speaks RFB {major}.{minor}")
        if minor < 7:
            await self._send({"type": "websocket.send", "bytes": struct.pack(">I", rfb.SECURITY_NONE)})
        else:
            await self._send({"type": "websocket.send", "bytes": bytes([1, rfb.SECURITY_NONE])})
            choice = (await self._inbox.take(1))[0]
            if choice != rfb.SECURITY_NONE:
                raise rfb.RFBError(f"the browser chose security type {choice}")
            if minor >= 8:
                await self._send({"type": "websocket.send", "bytes": struct.pack(">I", 0)})
        await self._inbox.take(1)  # ClientInit: whatever the browser asked, the session is shared
        async with self._write_lock:
            await stream.write(b"\x01")
            # From here on the reader writes straight through the filter; what came early goes first.
            early, self._inbox.data = bytes(self._inbox.data), bytearray()
            self._stream = stream
            if early:
                await self._forward(early)

    async def _open(self) -> tuple[Stream, bytes]:
        """Connect, open the channel and do the server's handshake; returns the stream and early bytes."""
        assert self._target is not None
        target, password = self._target, self._password
        self._target = self._password = None
        stream = await open_stream(target, self._endpoint)
        try:
            early, security = await asyncio.wait_for(server_handshake(stream, password), SERVER_HANDSHAKE_TIMEOUT)
        except BaseException:
            await stream.close()
            raise
        logger.debug("stack %s: VNC server at %s accepted security %s", self._stack_label, self._endpoint, security)
        return stream, early

    # --- lab → browser --------------------------------------------------------------

    async def _pump_output(self, stream: Stream, early: bytes) -> bool:
        """Copy RFB from the lab to the browser; ``True`` if the server ended, ``False`` if the browser left."""
        data = early
        while True:
            if data and not await self._send({"type": "websocket.send", "bytes": data}):
                return False
            data = await stream.read()
            if not data:
                return True

    # --- the whole session ------------------------------------------------------------

    async def run(self) -> None:
        """Accept, connect, do both handshakes, relay until one side ends, clean up.  Never raises for I/O."""
        accept: Message = {"type": "websocket.accept"}
        if self._subprotocol:
            accept["subprotocol"] = self._subprotocol
        if not await self._send(accept):
            return
        token = self._register()
        reader = asyncio.create_task(self._read_client(), name="gateway-vnc-reader")
        down = self._down
        tasks: list[asyncio.Task[Any]] = [reader]
        stream: Stream | None = None
        opener: asyncio.Task[tuple[Stream, bytes]] | None = None
        handshake: asyncio.Task[None] | None = None
        try:
            await self._send_json({"type": "status", "status": "connecting"})
            opener = asyncio.create_task(self._open(), name="gateway-vnc-open")
            tasks.append(opener)
            if not await self._step({reader, down, opener}, opener):
                return
            try:
                stream, early = opener.result()
            except (TerminalError, rfb.RFBError, TimeoutError) as error:
                await self._connect_failed(error)
                return
            await self._send_json({"type": "status", "status": "connected"})
            handshake = asyncio.create_task(
                asyncio.wait_for(self._client_handshake(stream), CLIENT_HANDSHAKE_TIMEOUT), name="gateway-vnc-client"
            )
            tasks.append(handshake)
            if not await self._step({reader, down, handshake}, handshake):
                return
            try:
                handshake.result()
            except (rfb.RFBError, TimeoutError) as error:
                logger.info("stack %s: browser RFB handshake failed: %s", self._stack_label, error or "timed out")
                await self._fail(MSG_INVALID, CloseCode.INVALID_MESSAGE)
                return
            mode = " (read-only)" if self._read_only else ""
            logger.info("stack %s: desktop session open on %s%s", self._stack_label, self._endpoint, mode)

            output = asyncio.create_task(self._pump_output(stream, early), name="gateway-vnc-output")
            tasks.append(output)
            await asyncio.wait({reader, down, output}, return_when=asyncio.FIRST_COMPLETED)
            await self._relay_ended(output, stream.lost)
        finally:
            tracker.unregister(token)
            # The opener's and the browser handshake's errors were answered above.
            await self._stop_tasks(tasks, quiet=(opener, handshake))
            if stream is None and opener is not None and not opener.cancelled() and opener.exception() is None:
                stream = opener.result()[0]
            if stream is not None:
                await stream.close()
            logger.info("stack %s: desktop session ended", self._stack_label)

    async def _connect_failed(self, error: BaseException) -> None:
        if await self._identity_refused(error):
            return
        if isinstance(error, rfb.RFBError):
            logger.warning("stack %s: VNC handshake with %s failed: %s", self._stack_label, self._endpoint, error)
            await self._fail(MSG_DESKTOP_FAILED, CloseCode.CONNECT_FAILED)
        else:
            logger.warning("stack %s: desktop connection failed: %s", self._stack_label, error or "timed out")
            await self._fail(MSG_CONNECT_FAILED, CloseCode.CONNECT_FAILED)
