"""RDP desktops through guacd: the gateway speaks the Guacamole protocol to guacd and to the browser.

Where an operator runs guacd (the Guacamole project's proxy daemon; see the
``guacd`` setting), an ``rdp`` lab is shown like this::

    browser (guacamole-common-js) ──ws──▶ gateway ──TCP──▶ guacd ──RDP──▶ tunnel listener
                                             └──────── SSH (pinned host key) ──────────┘──▶ lab's RDP server

* The gateway connects to guacd, selects ``rdp`` and answers guacd's ``args``
  itself (:func:`handshake`): the screen size the browser asked for (query
  ``width``, ``height``, ``dpi`` next to the ticket), the media types, and the
  connection values: ``hostname``/``port`` of a **tunnel listener** the
  gateway opened for this session only, ``username`` (the stack's SSH user)
  and ``password`` (the stack's password, decrypted for this alone), and
  ``read-only`` for read-only tickets.  The browser never sees them.
* The tunnel listener (:class:`Tunnel`) binds ``guacd.tunnel_bind`` on an
  ephemeral port, accepts exactly one connection (guacd's), then stops
  listening, and relays it through a ``direct-tcpip`` (or
  ``direct-streamlocal``) channel of the lab's SSH connection to the RDP
  server: the ticket's port on the lab host's loopback, else the stack's
  recorded endpoint (``Stack.desktop``), else ``127.0.0.1:3389``.
* After guacd's ``ready`` the gateway sends the browser the tunnel's
  internal "open" instruction (opcode ``""`` with a session id, as
  guacamole-common-js's ``WebSocketTunnel`` expects) and relays
  instructions both ways, whole instructions per websocket text frame.
  The browser's internal ``ping`` instructions are answered here.  For
  read-only tickets only ``sync``, ``nop``, ``ack`` and ``disconnect`` pass;
  ``key`` and ``mouse`` count as learner activity.

This websocket carries Guacamole instructions only (no JSON status messages):
errors reach the browser as a Guacamole ``error`` instruction followed by the
gateway's close code (:mod:`.protocol`); a suspended or deleted lab closes
with 4010 and the reason ``suspended`` or ``deleted``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from . import tickets
from .activity import tracker
from .protocol import CloseCode, ProtocolViolation
from .session import MSG_INVALID, Receive, Send, WebsocketSession
from .terminal import SSHTarget, Stream, TerminalError
from .vnc import Endpoint, desktop_endpoint, open_stream

logger = logging.getLogger(__name__)

SUBPROTOCOL = "guacamole"
DEFAULT_RDP = "127.0.0.1:3389"
MSG_GUACD_FAILED = "Could not open the lab's desktop."
#: Longest instruction accepted from either side (guacd sends images in blobs of a few KiB).
MAX_INSTRUCTION = 1024 * 1024
HANDSHAKE_TIMEOUT = 15.0
#: What a read-only viewer may send: nothing that acts on the desktop.
READ_ONLY_OPCODES = frozenset({"sync", "nop", "ack", "disconnect"})
ACTIVITY_OPCODES = frozenset({"key", "mouse", "touch"})
#: Guacamole status codes used in the ``error`` instructions the gateway sends.
STATUS_UPSTREAM_ERROR = "515"
STATUS_SESSION_CLOSED = "521"
DEFAULT_SIZE = (1024, 768, 96)


class GuacError(Exception):
    """A peer broke the Guacamole protocol or guacd refused the connection (message for the log)."""


def encode(*elements: str) -> str:
    """One Guacamole instruction: ``LENGTH.VALUE,…;`` (lengths in Unicode code points)."""
    return ",".join(f"{len(element)}.{element}" for element in elements) + ";"


class Parser:
    """Splits Guacamole text, however it is chunked, into whole instructions."""

    __slots__ = ("_buffer", "_limit")

    def __init__(self, limit: int = MAX_INSTRUCTION) -> None:
        self._buffer = ""
        self._limit = limit

    def feed(self, text: str) -> tuple[str, list[list[str]]]:
        """Take more text; return ``(the whole instructions' text, their elements)``; keeps the rest."""
        buffer = self._buffer + text if self._buffer else text
        instructions: list[list[str]] = []
        position = 0  # start of the instruction being parsed
        end = len(buffer)
        while True:
            elements: list[str] = []
            cursor = position
            complete = False
            while True:
                dot = buffer.find(".", cursor, min(end, cursor + 12))
                if dot < 0:
                    if end - cursor >= 12 or (end > cursor and not buffer[cursor:end].isdigit()):
                        raise GuacError("malformed instruction length")
                    break
                digits = buffer[cursor:dot]
                if not digits.isdigit():
                    raise GuacError("malformed instruction length")
                length = int(digits)
                if length > self._limit or dot - position + length > self._limit:
                    raise GuacError(f"instruction longer than {self._limit}")
                stop = dot + 1 + length
                if stop >= end:
                    break
                elements.append(buffer[dot + 1 : stop])
                terminator = buffer[stop]
                cursor = stop + 1
                if terminator == ";":
                    complete = True
                    break
                if terminator != ",":
                    raise GuacError("malformed instruction separator")
            if not complete:
                if end - position > self._limit:
                    raise GuacError(f"instruction longer than {self._limit}")
                break
            instructions.append(elements)
            position = cursor
        self._buffer = buffer[position:]
        return buffer[:position], instructions


class GuacdConnection:
    """A TCP connection to guacd that yields whole instructions."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._parser = Parser()
        self._queue: list[list[str]] = []

    async def send(self, text: str) -> None:
        self.writer.write(text.encode("utf-8"))
        await self.writer.drain()

    async def read_text(self) -> tuple[str, list[list[str]]]:
        """The next whole instructions (text and elements); ``("", [])`` at end of stream."""
        while True:
            data = await self.reader.read(65536)
            if not data:
                return "", []
            text, instructions = self._parser.feed(self._decoder.decode(data))
            if instructions:
                return text, instructions

    async def expect(self, opcode: str) -> list[str]:
        """The next instruction's arguments if its opcode is ``opcode``; guacd's ``error`` raises."""
        while not self._queue:
            text, instructions = await self.read_text()
            if not text:
                raise GuacError("guacd closed the connection during the handshake")
            self._queue.extend(instructions)
        instruction = self._queue.pop(0)
        if instruction[0] == "error":
            raise GuacError(f"guacd refused: {instruction[1:2]}")
        if instruction[0] != opcode:
            raise GuacError(f"guacd sent {instruction[0]!r}, expected {opcode!r}")
        return instruction[1:]

    def take_early(self) -> str:
        """Instructions guacd sent after the handshake's last one and that were read with it."""
        early = "".join(encode(*instruction) for instruction in self._queue)
        self._queue.clear()
        return early

    def close(self) -> None:
        self.writer.close()


async def handshake(
    guacd: GuacdConnection, values: Mapping[str, str], size: tuple[int, int, int] = DEFAULT_SIZE
) -> str:
    """Select RDP, send the client's size and media, answer guacd's ``args`` from ``values``; return the id.

    Arguments guacd asks for that ``values`` has no entry for are sent empty (guacd's defaults).
    """
    await guacd.send(encode("select", "rdp"))
    wanted = await guacd.expect("args")
    width, height, dpi = size
    await guacd.send(
        encode("size", str(width), str(height), str(dpi))
        + encode("audio", "audio/L16", "audio/L8")
        + encode("video")
        + encode("image", "image/png", "image/jpeg", "image/webp")
    )
    answer = []
    for name in wanted:
        # Protocol 1.1+: the first argument names guacd's version; saying the same accepts it.
        answer.append(name if name.startswith("VERSION_") else values.get(name, ""))
    await guacd.send(encode("connect", *answer))
    ready = await guacd.expect("ready")
    return ready[0] if ready else ""


class Tunnel:
    """A one-connection TCP listener that guacd connects to; relayed through the lab's SSH to the RDP server."""

    def __init__(self, open_channel: Any, bind: str) -> None:
        self._open_channel = open_channel
        self._bind = bind
        self._server: asyncio.Server | None = None
        self._relay: asyncio.Task[None] | None = None
        self.port = 0
        self.error: BaseException | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self._bind, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None or self._relay is not None:
            writer.close()  # one connection only: guacd's
            return
        self._server.close()
        self._relay = asyncio.current_task()  # type: ignore[assignment]
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            writer.close()  # the session ended: asyncio must not see the handler's cancellation as an error

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            stream: Stream = await self._open_channel()
        except Exception as error:  # reported by the session: guacd sees the connection fail
            self.error = error
            writer.close()
            return
        try:
            await _pipe(reader, writer, stream)
        finally:
            await stream.close()
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._relay is not None and not self._relay.done():
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._relay


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: Stream) -> None:
    """Copy both ways between a TCP connection and an SSH channel until either ends (both apply backpressure)."""

    async def up() -> None:
        while data := await reader.read(65536):
            await stream.write(data)

    async def down() -> None:
        while data := await stream.read():
            writer.write(data)
            await writer.drain()

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def requested_size(query: Mapping[str, list[str]]) -> tuple[int, int, int]:
    """The screen size the browser asked for (``width``, ``height``, ``dpi`` query values), clamped."""

    def number(name: str, default: int, low: int, high: int) -> int:
        try:
            return min(max(int((query.get(name) or [""])[0]), low), high)
        except ValueError:
            return default

    width, height, dpi = DEFAULT_SIZE
    return number("width", width, 320, 4096), number("height", height, 200, 4096), number("dpi", dpi, 48, 384)


class GuacSession(WebsocketSession):
    """One accepted websocket bound to one RDP desktop of one lab, through guacd (see the module docstring)."""

    def __init__(
        self,
        receive: Receive,
        send: Send,
        ticket: tickets.Ticket,
        stack: Any,
        *,
        guacd: Mapping[str, Any],
        size: tuple[int, int, int] = DEFAULT_SIZE,
        subprotocol: str | None = None,
    ) -> None:
        super().__init__(receive, send, ticket, stack)
        self._guacd = dict(guacd)
        self._size = size
        self._subprotocol = subprotocol
        self._target: SSHTarget | None = SSHTarget.from_stack(stack)
        self._endpoint: Endpoint = desktop_endpoint(stack, ticket.port, DEFAULT_RDP)
        self._credentials: dict[str, str] | None = {"username": stack.ssh_user or "", "password": stack.password or ""}
        self._parser = Parser()
        self._connection: GuacdConnection | None = None

    async def _send_text(self, text: str) -> bool:
        return await self._send({"type": "websocket.send", "text": text})

    async def _fail(self, message: str, code: int) -> None:
        await self._send_text(encode("error", message, STATUS_UPSTREAM_ERROR))
        await self._close(code)

    async def _stack_down(self) -> None:
        logger.info("stack %s: no longer up (%s); closing the session", self._stack_label, self._down_status)
        await self._send_text(encode("error", f"The lab is {self._down_status}.", STATUS_SESSION_CLOSED))
        await self._send({"type": "websocket.close", "code": int(CloseCode.STACK_DOWN), "reason": self._down_status})

    # --- browser → guacd ------------------------------------------------------------

    async def _received(self, data: bytes | None, text: str | None) -> None:
        if text is None:
            raise ProtocolViolation(CloseCode.INVALID_MESSAGE, "binary message on a Guacamole tunnel")
        await self._input(text)

    async def _input(self, text: str) -> None:
        try:
            _, instructions = self._parser.feed(text)
        except GuacError as error:
            raise ProtocolViolation(CloseCode.INVALID_MESSAGE, f"Guacamole: {error}") from None
        out = []
        for instruction in instructions:
            opcode = instruction[0]
            if opcode == "":
                # The tunnel's own instructions: answer pings, never pass them on.
                if instruction[1:2] == ["ping"]:
                    await self._send_text(encode(*instruction))
                continue
            if self._read_only and opcode not in READ_ONLY_OPCODES:
                continue
            if opcode in ACTIVITY_OPCODES:
                tracker.record(self._stack_id, self._suspend_timeout)
            out.append(encode(*instruction))
        if out and self._connection is not None:
            await self._connection.send("".join(out))

    # --- guacd → browser ---------------------------------------------------------------

    async def _pump_output(self, connection: GuacdConnection) -> bool:
        early = connection.take_early()
        if early and not await self._send_text(early):
            return False
        while True:
            text, _ = await connection.read_text()
            if not text:
                return True
            if not await self._send_text(text):
                return False

    # --- the whole session ---------------------------------------------------------------

    async def _open(self) -> tuple[GuacdConnection, Tunnel]:
        """Start the tunnel listener, connect to guacd and do the handshake."""
        assert self._target is not None and self._credentials is not None
        target, endpoint, credentials = self._target, self._endpoint, self._credentials
        self._target = self._credentials = None
        tunnel = Tunnel(lambda: open_stream(target, endpoint), self._guacd["tunnel_bind"])
        await tunnel.start()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self._guacd["host"], self._guacd["port"]), HANDSHAKE_TIMEOUT
            )
        except (OSError, TimeoutError) as error:
            await tunnel.close()
            raise GuacError(f"cannot reach guacd at {self._guacd['host']}:{self._guacd['port']}: {error}") from None
        connection = GuacdConnection(reader, writer)
        values = {
            "hostname": self._guacd["tunnel_host"],
            "port": str(tunnel.port),
            **credentials,
            "security": "any",
            "ignore-cert": "true",
            "read-only": "true" if self._read_only else "",
        }
        try:
            await asyncio.wait_for(handshake(connection, values, self._size), HANDSHAKE_TIMEOUT)
        except BaseException:
            connection.close()
            await tunnel.close()
            if isinstance(tunnel.error, TerminalError):
                raise tunnel.error from None
            raise
        return connection, tunnel

    async def run(self) -> None:
        """Accept, connect to guacd, relay until one side ends, clean up.  Never raises for I/O errors."""
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if self._subprotocol:
            accept["subprotocol"] = self._subprotocol
        if not await self._send(accept):
            return
        token = self._register()
        reader = asyncio.create_task(self._read_client(), name="gateway-guac-reader")
        tasks: list[asyncio.Task[Any]] = [reader]
        opened: tuple[GuacdConnection, Tunnel] | None = None
        opener = asyncio.create_task(self._open(), name="gateway-guac-open")
        tasks.append(opener)
        try:
            if not await self._step({reader, self._down, opener}, opener):
                return
            try:
                opened = opener.result()
            except (TerminalError, GuacError, TimeoutError) as error:
                if not await self._identity_refused(error):
                    logger.warning(
                        "stack %s: RDP session through guacd failed: %s", self._stack_label, error or "timeout"
                    )
                    await self._fail(MSG_GUACD_FAILED, CloseCode.CONNECT_FAILED)
                return
            connection, _ = opened
            self._connection = connection
            # guacamole-common-js's WebSocketTunnel is open once it has the tunnel's id.
            await self._send_text(encode("", secrets.token_hex(16)))
            mode = " (read-only)" if self._read_only else ""
            logger.info("stack %s: RDP session open on %s%s", self._stack_label, self._endpoint, mode)
            output = asyncio.create_task(self._pump_output(connection), name="gateway-guac-output")
            tasks.append(output)
            await asyncio.wait({reader, self._down, output}, return_when=asyncio.FIRST_COMPLETED)
            if self._down.done():
                await self._stack_down()
            elif output.done() and output.result():
                await self._close(CloseCode.NORMAL)
            elif self._violation is not None:
                await self._fail(MSG_INVALID, self._violation.code)
        finally:
            tracker.unregister(token)
            await self._stop_tasks(tasks, quiet=(opener,))
            if opened is None and not opener.cancelled() and opener.exception() is None:
                opened = opener.result()
            if opened is not None:
                opened[0].close()
                await opened[1].close()
            logger.info("stack %s: RDP session ended", self._stack_label)
