"""The gateway's ASGI application: a learner's browser ↔ websocket ↔ SSH ↔ lab.

Plain ASGI (no Channels, no Starlette).  Importing this module calls
``django.setup()``, so ``DJANGO_SETTINGS_MODULE`` must be set.  Serve it with::

    DJANGO_SETTINGS_MODULE=... uvicorn hastexo_xblock.gateway.asgi:application \\
        --host 127.0.0.1 --port 8001 --ws websockets --no-access-log

``--no-access-log`` matters: websocket URLs carry tickets.  (uvicorn also logs
accepted websockets with their query string on ``uvicorn.error``; this module
installs a filter there that replaces the ticket with ``<redacted>``.)

Routes
------
* websocket ``/ws?ticket=…`` — also with any prefix ending in ``/ws``
  (``/hastexo-gateway/ws``), as it sits behind the LMS load balancer;
* HTTP ``GET /healthz`` (or ``…/healthz``) → ``200 ok``;
* anything else → 404;
* ``lifespan`` starts and stops the activity flusher (:mod:`.activity`).

Websocket protocol
------------------
After ``accept`` the server sends ``{"type":"status","status":"connecting"}``,
then ``{"type":"status","status":"connected"}`` once the shell is up.

* browser → gateway, binary: raw terminal input (dropped for read-only tickets);
* browser → gateway, text: JSON control, ``{"type":"resize","cols":N,"rows":M}``
  (1..1000 each) or ``{"type":"ping"}`` (answered ``{"type":"pong"}``); anything
  else is ignored;
* gateway → browser, binary: raw terminal output;
* gateway → browser, text: ``{"type":"status","status":…}`` or
  ``{"type":"error","message":…}``.

Close codes
-----------
====  ==============================================================================
1000  the shell ended (``exit``); preceded by ``{"type":"status","status":"closed"}``
1011  SSH failed (could not connect, no pinned host key, or the connection was lost
      mid-session); preceded by an error: "Could not connect to the lab." or, when the
      host key is not the pinned one, "The lab's identity has changed; the connection
      was refused."  (A database failure while checking the ticket also refuses the
      handshake with 1011, i.e. HTTP 403.)
4001  invalid, tampered, expired or reused ticket, or a ticket that does not match
      the stack (name or learner).  Sent *instead of* accept, so the handshake
      fails (uvicorn answers HTTP 403; a browser sees close code 1006 without
      ever having seen ``open``).
4004  the lab is not running (or no longer exists); preceded by an error
      "The lab is not running."
4010  the lab was suspended or deleted during the session; preceded by
      ``{"type":"status","status":"suspended"|"deleted"|<status>}``
4400  the ticket's protocol is not supported here; error "protocol not supported yet"
4403  the ticket names a port the lab does not offer (not, or no longer, one of the
      numbers in ``Stack.spec["ports"]``); error "That port is not available for this
      lab."  No SSH connection is attempted.
====  ==============================================================================

Ports
-----
A ticket carries the learner's port choice (``port``, or ``None``).  ``None``
means the lab's default endpoint, ``Stack.ip`` on ``Stack.ssh_port``.  A port is
honoured only if it is one of the lab's configured ``Stack.spec["ports"]``
numbers (checked again here although the ticket is signed: the lab may no
longer offer it).  For SSH labs, the ports name further SSH endpoints of the
lab host: the terminal connects to ``Stack.ip`` on that port with the same
user and key and requires the same pinned host key.  Desktop protocols (RDP,
VNC) will use the port to pick their endpoint once they are supported.

Neither the ticket nor any key is ever logged or sent back; ticket failures
are logged with their reason only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import django
from django.apps import apps

if not apps.ready:
    django.setup()

from django.db import IntegrityError, transaction

from .. import states
from ..conf import get_settings
from ..models import Stack, UsedTicket
from . import tickets
from .activity import run_db, suspend_timeout_for, tracker
from .terminal import (
    DEFAULT_SIZE,
    HostKeyMismatch,
    HostKeyNotPinned,
    SSHTarget,
    Terminal,
    TerminalError,
)

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CLOSE_NORMAL = 1000
CLOSE_ERROR = 1011
CLOSE_BAD_TICKET = 4001
CLOSE_NOT_RUNNING = 4004
CLOSE_STACK_DOWN = 4010
CLOSE_UNSUPPORTED = 4400
CLOSE_PORT_NOT_OFFERED = 4403

MSG_CONNECT_FAILED = "Could not connect to the lab."
MSG_IDENTITY_CHANGED = "The lab's identity has changed; the connection was refused."
MSG_NOT_RUNNING = "The lab is not running."
MSG_UNSUPPORTED = "protocol not supported yet"
MSG_PORT_NOT_OFFERED = "That port is not available for this lab."

#: Terminal size bounds accepted from the browser.
MIN_SIZE, MAX_SIZE = 1, 1000
#: Input typed before the shell is up is kept up to this many bytes; the rest is dropped.
MAX_PENDING_INPUT = 64 * 1024


# --- keep tickets out of uvicorn's log --------------------------------------------

_TICKET_IN_URL = re.compile(r"(ticket=)[^&\s\"']+")


def redact(text: str) -> str:
    """``text`` with any ``ticket=…`` query value replaced by ``<redacted>``."""
    return _TICKET_IN_URL.sub(r"\1<redacted>", text)


class RedactTickets(logging.Filter):
    """Logging filter that removes ticket values from a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "ticket=" in record.msg:
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


for _name in ("uvicorn.error", "uvicorn.access", "uvicorn"):
    if not any(isinstance(f, RedactTickets) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(RedactTickets())


# --- database helpers (run in worker threads) -----------------------------------


def _verify_ticket(token: str) -> tickets.Ticket:
    """Verify ``token`` and spend it (one ``UsedTicket`` row; a duplicate id means reuse)."""

    def consume(ticket: tickets.Ticket) -> bool:
        try:
            with transaction.atomic():
                UsedTicket.objects.create(
                    ticket_id=ticket.ticket_id, expires_at=datetime.fromtimestamp(ticket.expires, tz=UTC)
                )
        except IntegrityError:
            return False
        return True

    return tickets.verify(get_settings().ticket_secret, token, consume=consume)


def _load_stack(stack_id: int) -> Stack | None:
    return Stack.objects.filter(pk=stack_id).first()


def offered_ports(stack: Stack) -> frozenset[int]:
    """The port numbers the lab offers (``stack.spec["ports"]``, see :func:`tickets.offered_ports`)."""
    spec = stack.spec if isinstance(stack.spec, dict) else {}
    return tickets.offered_ports(spec.get("ports"))


def port_allowed(stack: Stack, port: int | None) -> bool:
    """Whether a ticket's ``port`` may be used: ``None`` (the default endpoint) or an offered port."""
    if port is None:
        return True
    return isinstance(port, int) and not isinstance(port, bool) and port in offered_ports(stack)


# --- the terminal session ---------------------------------------------------------


class TerminalSession:
    """One accepted websocket bound to one SSH shell on one stack.

    :meth:`run` owns everything it starts: on return, the pumps are cancelled,
    the SSH connection is closed and the session is unregistered from the
    activity tracker, whatever ended it.
    """

    def __init__(self, receive: Receive, send: Send, ticket: tickets.Ticket, stack: Stack) -> None:
        """Bind to ``stack``; the SSH endpoint is the ticket's port if it has one (the caller
        has checked it with :func:`port_allowed`), else the stack's ``ssh_port``."""
        self._receive = receive
        self._send_raw = send
        self._ticket = ticket
        self._stack_id: int = stack.pk
        self._stack_label = f"{stack.pk}/{stack.name}"
        self._target = SSHTarget.from_stack(stack, port=ticket.port)
        self._suspend_timeout = suspend_timeout_for(stack, get_settings()["suspend_timeout"])
        self._read_only = bool(ticket.read_only)
        self._size: tuple[int, int] = DEFAULT_SIZE
        self._pending = bytearray()
        self._terminal: Terminal | None = None
        self._send_lock = asyncio.Lock()
        self._client_gone = False
        self._closed = False
        self._down = asyncio.Event()
        self._down_status = ""

    # --- sending ----------------------------------------------------------------

    async def _send(self, message: Message) -> bool:
        """Send one ASGI message; ``False`` (and no exception) once the client is gone."""
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
        await self._send({"type": "websocket.close", "code": code})

    async def _fail(self, message: str, code: int) -> None:
        await self._send_json({"type": "error", "message": message})
        await self._close(code)

    # --- browser → lab ------------------------------------------------------------

    async def _read_client(self) -> None:
        """Read websocket messages until the browser disconnects."""
        while True:
            message = await self._receive()
            kind = message.get("type")
            if kind == "websocket.disconnect":
                self._client_gone = True
                return
            if kind != "websocket.receive":
                continue
            if message.get("bytes") is not None:
                await self._input(message["bytes"])
            elif message.get("text") is not None:
                await self._control(message["text"])

    async def _input(self, data: bytes) -> None:
        if self._read_only or not data:
            return  # read-only: dropped here, server-side, whatever the browser does
        tracker.record(self._stack_id, self._suspend_timeout)
        if self._terminal is not None:
            # Awaiting the SSH channel's drain stops us reading the websocket: backpressure.
            await self._terminal.write(data)
        elif len(self._pending) + len(data) <= MAX_PENDING_INPUT:
            self._pending += data
        else:
            logger.debug("stack %s: input before the shell was up dropped", self._stack_label)

    async def _control(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            logger.debug("stack %s: ignored a malformed control message", self._stack_label)
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            await self._send_json({"type": "pong"})
        elif kind == "resize":
            cols, rows = message.get("cols"), message.get("rows")
            if not all(
                isinstance(v, int) and not isinstance(v, bool) and MIN_SIZE <= v <= MAX_SIZE for v in (cols, rows)
            ):
                logger.debug("stack %s: ignored a resize out of bounds", self._stack_label)
                return
            self._size = (cols, rows)
            if self._terminal is not None:
                self._terminal.resize(cols, rows)
        else:
            logger.debug("stack %s: ignored an unknown control message", self._stack_label)

    # --- lab → browser --------------------------------------------------------------

    async def _pump_output(self, terminal: Terminal) -> bool:
        """Copy shell output to the browser; ``True`` if the shell ended, ``False`` if the browser left."""
        while True:
            data = await terminal.read()
            if not data:
                return True
            # Awaiting the send is the flow control: we read no more than the browser takes.
            if not await self._send({"type": "websocket.send", "bytes": data}):
                return False

    def _on_down(self, status: str) -> None:
        """Activity tracker callback: the stack is no longer up."""
        self._down_status = status
        self._down.set()

    # --- the whole session ------------------------------------------------------------

    async def run(self) -> None:
        """Accept, connect, pump until one side ends, then clean up.  Never raises for I/O errors."""
        if not await self._send({"type": "websocket.accept"}):
            return
        token = tracker.register(self._stack_id, self._on_down)
        reader = asyncio.create_task(self._read_client(), name="gateway-ws-reader")
        down = asyncio.create_task(self._down.wait(), name="gateway-stack-down")
        tasks: list[asyncio.Task[Any]] = [reader, down]
        terminal: Terminal | None = None
        opener: asyncio.Task[Terminal] | None = None
        try:
            await self._send_json({"type": "status", "status": "connecting"})
            # The PTY size is read when the PTY is requested (after the SSH handshake), so
            # a resize the browser sends on open usually arrives in time to be the initial one.
            opener = asyncio.create_task(self._open_terminal(), name="gateway-ssh-open")
            tasks.append(opener)
            await asyncio.wait({reader, down, opener}, return_when=asyncio.FIRST_COMPLETED)
            if not opener.done():
                if down.done():
                    await self._stack_down()
                return  # browser gone or stack down; `finally` cancels the connect
            try:
                terminal = opener.result()
            except HostKeyMismatch as error:
                logger.error("stack %s: SSH host key mismatch, connection refused: %s", self._stack_label, error)
                await self._fail(MSG_IDENTITY_CHANGED, CLOSE_ERROR)
                return
            except HostKeyNotPinned as error:
                logger.error("stack %s: refusing to connect: %s", self._stack_label, error)
                await self._fail(MSG_CONNECT_FAILED, CLOSE_ERROR)
                return
            except TerminalError as error:
                logger.warning("stack %s: SSH connection failed: %s", self._stack_label, error)
                await self._fail(MSG_CONNECT_FAILED, CLOSE_ERROR)
                return

            # Typed while connecting: deliver in order before new input goes straight through.
            while self._pending:
                data = bytes(self._pending)
                self._pending.clear()
                await terminal.write(data)
            self._terminal = terminal
            if self._size != terminal.size:
                terminal.resize(*self._size)
            if self._client_gone or reader.done():
                return
            await self._send_json({"type": "status", "status": "connected"})
            mode = " (read-only)" if self._read_only else ""
            logger.info("stack %s: terminal session open on port %d%s", self._stack_label, self._target.port, mode)

            output = asyncio.create_task(self._pump_output(terminal), name="gateway-ssh-output")
            tasks.append(output)
            await asyncio.wait({reader, down, output}, return_when=asyncio.FIRST_COMPLETED)
            if output.done() and output.result():
                if terminal.lost and not down.done():
                    await self._fail(MSG_CONNECT_FAILED, CLOSE_ERROR)
                elif down.done():
                    await self._stack_down()
                else:
                    await self._send_json({"type": "status", "status": "closed"})
                    await self._close(CLOSE_NORMAL)
            elif down.done():
                await self._stack_down()
            # else: the browser went away.
        finally:
            tracker.unregister(token)
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for task, result in zip(tasks, results, strict=True):
                # The opener's errors were reported above (or no longer matter: the session was over).
                if isinstance(result, Exception) and task is not opener:
                    logger.warning("stack %s: session task failed: %r", self._stack_label, result)
            if terminal is None and opener is not None and not opener.cancelled() and opener.exception() is None:
                terminal = opener.result()  # opened just as the session was ending
            if terminal is not None:
                await terminal.close()
            logger.info("stack %s: terminal session ended", self._stack_label)

    async def _open_terminal(self) -> Terminal:
        return await Terminal.open(self._target, size=lambda: self._size)

    async def _stack_down(self) -> None:
        logger.info("stack %s: no longer up (%s); closing the session", self._stack_label, self._down_status)
        await self._send_json({"type": "status", "status": self._down_status})
        await self._close(CLOSE_STACK_DOWN)


# --- ASGI entry points ---------------------------------------------------------------


def _route(path: str, name: str) -> bool:
    return path == f"/{name}" or path.endswith(f"/{name}")


async def _reject(send: Send, code: int) -> None:
    """Refuse the websocket handshake (the ASGI server answers HTTP 403)."""
    await send({"type": "websocket.close", "code": code})


async def _refuse(send: Send, stack_id: int, message: str, code: int) -> None:
    """Accept, send ``{"type":"error","message":message}`` and close with ``code``.

    Accepting first lets the browser be told why (a refused handshake carries no reason).
    """
    await send({"type": "websocket.accept"})
    try:
        await send({"type": "websocket.send", "text": json.dumps({"type": "error", "message": message})})
        await send({"type": "websocket.close", "code": code})
    except Exception as error:
        logger.debug("websocket for stack %s: client gone: %s", stack_id, type(error).__name__)


async def _websocket(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    if message.get("type") != "websocket.connect":
        return
    if not _route(scope.get("path", ""), "ws"):
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 404, "headers": []})
            await send({"type": "websocket.http.response.body", "body": b"not found"})
        else:
            await _reject(send, CLOSE_NOT_RUNNING)
        return

    client = (scope.get("client") or ("?", 0))[0]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    token = (query.get("ticket") or [""])[0]
    if not token:
        logger.warning("websocket from %s rejected: no ticket", client)
        await _reject(send, CLOSE_BAD_TICKET)
        return
    try:
        ticket = await run_db(_verify_ticket, token)
    except tickets.TicketError as error:
        # The reason only: never the ticket itself.
        logger.warning("websocket from %s rejected: %s", client, error)
        await _reject(send, CLOSE_BAD_TICKET)
        return
    except Exception:
        logger.exception("websocket from %s: ticket check failed", client)
        await _reject(send, CLOSE_ERROR)
        return

    try:
        stack = await run_db(_load_stack, ticket.stack_id)
    except Exception:
        logger.exception("websocket from %s: loading stack %s failed", client, ticket.stack_id)
        await _reject(send, CLOSE_ERROR)
        return
    if stack is not None and (stack.name != ticket.stack_name or stack.anonymous_user_id != ticket.learner):
        logger.warning(
            "websocket from %s rejected: ticket does not match stack %s (name or learner differs)",
            client,
            ticket.stack_id,
        )
        await _reject(send, CLOSE_BAD_TICKET)
        return

    if stack is None or stack.status not in states.UP:
        status = "missing" if stack is None else stack.status
        logger.info("websocket for stack %s refused: lab not running (%s)", ticket.stack_id, status)
        await _refuse(send, ticket.stack_id, MSG_NOT_RUNNING, CLOSE_NOT_RUNNING)
        return
    if ticket.protocol != "ssh":
        logger.info("websocket for stack %s refused: protocol %r not supported", ticket.stack_id, ticket.protocol)
        await _refuse(send, ticket.stack_id, MSG_UNSUPPORTED, CLOSE_UNSUPPORTED)
        return
    if not port_allowed(stack, ticket.port):
        logger.info("websocket for stack %s refused: port %r is not offered by the lab", ticket.stack_id, ticket.port)
        await _refuse(send, ticket.stack_id, MSG_PORT_NOT_OFFERED, CLOSE_PORT_NOT_OFFERED)
        return

    if not tracker.running:
        tracker.start()  # served without lifespan events: start the flusher on first use
    await TerminalSession(receive, send, ticket, stack).run()


async def _http(scope: Scope, receive: Receive, send: Send) -> None:
    if scope.get("method") in ("GET", "HEAD") and _route(scope.get("path", ""), "healthz"):
        status, body = 200, b"ok"
    else:
        status, body = 404, b"not found"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                tracker.start()
            except Exception as error:
                await send({"type": "lifespan.startup.failed", "message": f"{type(error).__name__}: {error}"})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await tracker.stop()
            finally:
                await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI 3 application: websocket terminal sessions, ``/healthz`` and lifespan."""
    kind = scope["type"]
    if kind == "websocket":
        await _websocket(scope, receive, send)
    elif kind == "http":
        await _http(scope, receive, send)
    elif kind == "lifespan":
        await _lifespan(receive, send)
