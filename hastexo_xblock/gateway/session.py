"""One terminal session: an accepted websocket bound to one SSH shell on one lab.

The hot path is short on purpose: a keystroke is one ``receive`` → one
``channel.write``; shell output is one buffer filled by asyncssh's callback
(:mod:`.terminal`) and sent as one binary frame.  Output that keeps arriving
is coalesced so that a session sends at most one frame per
:data:`FRAME_BUDGET` while it streams, whereas the first chunk after a pause
(a keystroke's echo) goes out at once.

Under the gateway's own uvicorn protocol (:mod:`.wsprotocol`) the keystroke
and its echo take a shorter way still: the keystroke goes to the SSH channel
from the websocket protocol's callback, the echo to the socket from
asyncssh's, with no task woken in between.  Whatever that way declines
(output within the frame budget, a socket or SSH window that would make a
send wait, anything but plain input) takes the ASGI path above.

Flow control is end to end: the output pump awaits each ``send``, which
uvicorn holds while the browser's socket is full; meanwhile the terminal's
buffer fills, pauses the SSH channel, and asyncssh stops granting the lab
window.  Memory per session stays bounded however slowly the browser reads.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ..conf import get_settings
from . import tickets
from .activity import suspend_timeout_for, tracker
from .protocol import MAX_INPUT_BYTES, CloseCode, Ping, ProtocolViolation, check_input, parse_control
from .terminal import DEFAULT_SIZE, HostKeyMismatch, HostKeyNotPinned, SSHTarget, Terminal, TerminalError

if TYPE_CHECKING:
    from .wsprotocol import DirectAccess

logger = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MSG_CONNECT_FAILED = "Could not connect to the lab."
MSG_IDENTITY_CHANGED = "The lab's identity has changed; the connection was refused."
MSG_NOT_RUNNING = "The lab is not running."
MSG_UNSUPPORTED = "protocol not supported yet"
MSG_PORT_NOT_OFFERED = "That port is not available for this lab."
MSG_INVALID = "The browser sent a message the gateway does not understand."

#: Input typed before the shell is up is kept up to this many bytes; the rest is dropped.
MAX_PENDING_INPUT = 64 * 1024
#: Seconds: while output streams, a session sends at most one frame this often.
FRAME_BUDGET = 0.005
#: Output chunks at least this large go out at once (the per-frame cost is already small).
COALESCE_BELOW = 16 * 1024


class WebsocketSession(abc.ABC):
    """What every session kind shares: the serialised send side, errors, and the stack-down signal.

    Subclasses (:class:`TerminalSession`, :class:`.vnc.VncSession`, :class:`.guac.GuacSession`)
    implement ``run()``; they must register with the activity tracker with :meth:`_on_down`.
    """

    def __init__(
        self, receive: Receive, send: Send, ticket: tickets.Ticket, stack: Any, direct: DirectAccess | None = None
    ) -> None:
        #: The server's way past the ASGI queue, when it offers one (see :mod:`.wsprotocol`).
        self._direct = direct
        self._loop = asyncio.get_running_loop()
        self._receive = receive
        self._send_raw = send
        self._stack_id: int = stack.pk
        self._stack_label = f"{stack.pk}/{stack.name}"
        self._suspend_timeout = suspend_timeout_for(stack, get_settings()["suspend_timeout"])
        self._read_only = bool(ticket.read_only)
        self._send_lock = asyncio.Lock()
        self._client_gone = False
        self._closed = False
        #: Resolved by the activity tracker when the stack is no longer up (a future, not a task).
        self._down: asyncio.Future[None] = self._loop.create_future()
        self._down_status = ""
        self._violation: ProtocolViolation | None = None

    # --- sending ----------------------------------------------------------------

    async def _send(self, message: Message) -> bool:
        """Send one ASGI message; ``False`` (and no exception) once the client is gone.

        Serialised: the output pump and the control replies never await the
        server's write side at the same time.
        """
        async with self._send_lock:
            if self._client_gone or self._closed:
                return False
            try:
                await self._send_raw(message)
            except Exception as error:  # uvicorn raises ClientDisconnected (an OSError) and others
                logger.debug("stack %s: websocket send failed: %s", self._stack_label, type(error).__name__)
                self._client_gone = True
                return False
            if message["type"] == "websocket.close":
                self._closed = True
            return True

    async def _send_json(self, payload: dict[str, Any]) -> bool:
        return await self._send({"type": "websocket.send", "text": json.dumps(payload)})

    async def _close(self, code: int) -> None:
        await self._send({"type": "websocket.close", "code": int(code)})

    async def _fail(self, message: str, code: int) -> None:
        await self._send_json({"type": "error", "message": message})
        await self._close(code)

    def _on_down(self, status: str) -> None:
        """Activity tracker callback: the stack is no longer up."""
        self._down_status = status
        if not self._down.done():
            self._down.set_result(None)

    async def _stack_down(self) -> None:
        logger.info("stack %s: no longer up (%s); closing the session", self._stack_label, self._down_status)
        await self._send_json({"type": "status", "status": self._down_status})
        await self._close(CloseCode.STACK_DOWN)

    # --- browser → lab ------------------------------------------------------------

    async def _read_client(self) -> None:
        """Read websocket messages until the browser disconnects or breaks the protocol.

        Each message goes to :meth:`_received`; a :class:`ProtocolViolation`
        it raises ends the reading and is kept in ``_violation`` for
        ``run()`` to answer with its close code.
        """
        while True:
            message = await self._receive()
            kind = message.get("type")
            if kind == "websocket.disconnect":
                self._client_gone = True
                self._client_left()
                return
            if kind != "websocket.receive":
                continue
            try:
                await self._received(message.get("bytes"), message.get("text"))
            except ProtocolViolation as violation:
                logger.info("stack %s: closing: %s", self._stack_label, violation.reason)
                self._violation = violation
                return

    @abc.abstractmethod
    async def _received(self, data: bytes | None, text: str | None) -> None:
        """One websocket message from the browser: binary ``data`` or ``text``; raise ProtocolViolation."""

    def _client_left(self) -> None:
        """The browser disconnected (a hook for sessions that must wake a waiting handshake)."""
        return None  # optional: only sessions that wait on a handshake override it

    # --- the parts of run() every kind shares ---------------------------------------

    def _register(self) -> int:
        """Register with the activity tracker (with the stack's suspend timeout, which bounds its write interval)."""
        return tracker.register(self._stack_id, self._on_down, self._suspend_timeout)

    async def _step(self, waiting: set[asyncio.Future[Any]], step: asyncio.Future[Any]) -> bool:
        """Wait for ``step``; ``False`` (after telling the browser why, if it is there) when the session ended first.

        The session ends first when the browser goes away, breaks the protocol
        or the stack goes down (all in ``waiting`` with ``step``).
        """
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if step.done():
            return True
        if self._down.done():
            await self._stack_down()
        elif self._violation is not None:
            await self._fail(MSG_INVALID, self._violation.code)
        return False

    async def _identity_refused(self, error: BaseException) -> bool:
        """Answer a connection that failed on the lab's identity (close 4011); ``False`` for other errors."""
        if isinstance(error, HostKeyMismatch):
            logger.error("stack %s: SSH host key mismatch, connection refused: %s", self._stack_label, error)
            await self._fail(MSG_IDENTITY_CHANGED, CloseCode.IDENTITY_CHANGED)
            return True
        if isinstance(error, HostKeyNotPinned):
            # Nothing to verify the lab against: as final as a changed identity.
            logger.error("stack %s: refusing to connect: %s", self._stack_label, error)
            await self._fail(MSG_CONNECT_FAILED, CloseCode.IDENTITY_CHANGED)
            return True
        return False

    async def _relay_ended(self, output: asyncio.Task[bool], lost: bool) -> None:
        """Tell the browser how the relay ended, once the reader, the stack-down signal or ``output`` is done.

        ``output`` returns ``True`` when the lab's side ended: lost (``lost``:
        1011, unless the stack went down), the stack down (4010) or a normal
        end (status ``closed``, 1000).  Otherwise the stack went down or the
        browser broke the protocol; if the browser simply left, nothing is sent.
        """
        if output.done() and output.result():
            if lost and not self._down.done():
                await self._fail(MSG_CONNECT_FAILED, CloseCode.CONNECT_FAILED)
            elif self._down.done():
                await self._stack_down()
            else:
                await self._send_json({"type": "status", "status": "closed"})
                await self._close(CloseCode.NORMAL)
        elif self._down.done():
            await self._stack_down()
        elif self._violation is not None:
            await self._fail(MSG_INVALID, self._violation.code)

    async def _stop_tasks(
        self, tasks: list[asyncio.Task[Any]], quiet: tuple[asyncio.Task[Any] | None, ...] = ()
    ) -> None:
        """Cancel and await ``tasks``; log what failed unexpectedly (the ``quiet`` ones' errors were answered)."""
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, Exception) and task not in quiet:
                logger.warning("stack %s: session task %s failed: %r", self._stack_label, task.get_name(), result)


class TerminalSession(WebsocketSession):
    """One accepted websocket bound to one SSH shell on one stack.

    :meth:`run` owns everything it starts: on return, the pumps are cancelled,
    the SSH connection is closed and the session is unregistered from the
    activity tracker, whatever ended it.
    """

    def __init__(
        self, receive: Receive, send: Send, ticket: tickets.Ticket, stack: Any, direct: DirectAccess | None = None
    ) -> None:
        """Bind to ``stack``; the SSH endpoint is the ticket's port if it has one (the caller
        has checked it), else the stack's ``ssh_port``."""
        super().__init__(receive, send, ticket, stack, direct)
        #: Loop time of the last output frame (the frame budget counts from it).
        self._last_sent = -1.0
        #: Dropped once connected: the private key need not stay in memory for the whole session.
        self._target: SSHTarget | None = SSHTarget.from_stack(stack, port=ticket.port)
        self._port = self._target.port
        self._size: tuple[int, int] = DEFAULT_SIZE
        self._pending = bytearray()
        self._terminal: Terminal | None = None

    # --- browser → lab ------------------------------------------------------------

    async def _received(self, data: bytes | None, text: str | None) -> None:
        if data is not None:
            check_input(data)
            await self._input(data)
        else:
            await self._control(text or "")

    async def _input(self, data: bytes) -> None:
        if self._read_only or not data:
            return  # read-only: dropped here, server-side, whatever the browser does
        tracker.record(self._stack_id, self._suspend_timeout)
        terminal = self._terminal
        if terminal is not None:
            # Waits only while the lab's window is full, which stops us reading the websocket.
            await terminal.write(data)
        elif len(self._pending) + len(data) <= MAX_PENDING_INPUT:
            self._pending += data
        else:
            logger.debug("stack %s: input before the shell was up dropped", self._stack_label)

    def _input_nowait(self, data: bytes) -> bool:
        """The direct path of :meth:`_input` (see :class:`.wsprotocol.DirectAccess`): ``True`` if done.

        Declines (``False``, so the message takes the queue and :meth:`_input`)
        whatever is not plain input the lab's window takes at once: read-only
        input, oversized messages (the queue path answers those), input while
        the lab is not reading.
        """
        terminal = self._terminal
        if terminal is None or self._read_only or not data or len(data) > MAX_INPUT_BYTES:
            return False
        if self._violation is not None or self._client_gone:
            return False  # the session is ending: nothing more reaches the lab (as on the queue path)
        if not terminal.write_nowait(data):
            return False
        tracker.record(self._stack_id, self._suspend_timeout)
        return True

    async def _control(self, text: str) -> None:
        control = parse_control(text)
        if isinstance(control, Ping):
            await self._send_json({"type": "pong"})
            return
        self._size = (control.cols, control.rows)
        if self._terminal is not None:
            self._terminal.resize(control.cols, control.rows)

    # --- lab → browser --------------------------------------------------------------

    def _output_nowait(self, data: bytes) -> bool:
        """The direct path of :meth:`_pump_output`: send ``data`` now if nothing asks for waiting; ``True`` if sent.

        Declines while a frame went out less than :data:`FRAME_BUDGET` ago (the
        pump then gathers what streams in), while another send is under way,
        and whenever the socket would make a send wait (the pump's awaited
        send is the flow control).
        """
        direct = self._direct
        if direct is None or self._client_gone or self._closed or self._send_lock.locked():
            return False
        now = self._loop.time()
        if now < self._last_sent + FRAME_BUDGET or not direct.send_binary_nowait(data):
            return False
        self._last_sent = now
        return True

    async def _pump_output(self, terminal: Terminal) -> bool:
        """Copy shell output to the browser; ``True`` if the shell ended, ``False`` if the browser left.

        Output the direct path (:meth:`_output_nowait`) declined lands here.
        """
        loop = self._loop
        while True:
            data = await terminal.read()
            if not data:
                return True
            wait = self._last_sent + FRAME_BUDGET - loop.time()
            if wait > 0 and len(data) < COALESCE_BELOW:
                # Output is streaming: gather what else arrives within this frame's budget.
                await asyncio.sleep(wait)
                data += terminal.read_nowait()
            # Awaiting the send is the flow control: we read no more than the browser takes.
            if not await self._send({"type": "websocket.send", "bytes": data}):
                return False
            self._last_sent = loop.time()
            terminal.passed_on()

    # --- the whole session ------------------------------------------------------------

    async def run(self) -> None:
        """Accept, connect, pump until one side ends, then clean up.  Never raises for I/O errors."""
        if not await self._send({"type": "websocket.accept"}):
            return
        token = self._register()
        reader = asyncio.create_task(self._read_client(), name="gateway-ws-reader")
        down = self._down
        tasks: list[asyncio.Task[Any]] = [reader]
        terminal: Terminal | None = None
        opener: asyncio.Task[Terminal] | None = None
        try:
            await self._send_json({"type": "status", "status": "connecting"})
            # The PTY size is read when the PTY is requested (after the SSH handshake), so
            # a resize the browser sends on open usually arrives in time to be the initial one.
            opener = asyncio.create_task(self._open_terminal(), name="gateway-ssh-open")
            tasks.append(opener)
            if not await self._step({reader, down, opener}, opener):
                return  # browser gone, protocol broken or stack down; `finally` cancels the connect
            try:
                terminal = opener.result()
            except TerminalError as error:
                if not await self._identity_refused(error):
                    logger.warning("stack %s: SSH connection failed: %s", self._stack_label, error)
                    await self._fail(MSG_CONNECT_FAILED, CloseCode.CONNECT_FAILED)
                return

            # Typed while connecting: deliver in order before new input goes straight through.
            while self._pending:
                data = bytes(self._pending)
                self._pending.clear()
                await terminal.write(data)
            self._terminal = terminal
            if self._direct is not None:
                # Keystrokes and their echo skip the ASGI queue and the pump's wake-up.
                terminal.set_sink(self._output_nowait)
                self._direct.set_binary_sink(self._input_nowait)
            if self._size != terminal.size:
                terminal.resize(*self._size)
            if self._client_gone or reader.done():
                if self._violation is not None:
                    await self._fail(MSG_INVALID, self._violation.code)
                return
            await self._send_json({"type": "status", "status": "connected"})
            mode = " (read-only)" if self._read_only else ""
            logger.info("stack %s: terminal session open on port %d%s", self._stack_label, self._port, mode)

            output = asyncio.create_task(self._pump_output(terminal), name="gateway-ssh-output")
            tasks.append(output)
            await asyncio.wait({reader, down, output}, return_when=asyncio.FIRST_COMPLETED)
            await self._relay_ended(output, terminal.lost)
        finally:
            tracker.unregister(token)
            if self._direct is not None:
                self._direct.set_binary_sink(None)
            # The opener's errors were answered above (or no longer matter: the session was over).
            await self._stop_tasks(tasks, quiet=(opener,))
            if terminal is None and opener is not None and not opener.cancelled() and opener.exception() is None:
                terminal = opener.result()  # opened just as the session was ending
            if terminal is not None:
                terminal.set_sink(None)
                await terminal.close()
            logger.info("stack %s: terminal session ended", self._stack_label)

    async def _open_terminal(self) -> Terminal:
        assert self._target is not None
        try:
            return await Terminal.open(self._target, size=lambda: self._size)
        finally:
            self._target = None
