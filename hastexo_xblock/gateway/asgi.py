"""The gateway's ASGI application: a learner's browser ↔ websocket ↔ SSH ↔ lab.

Plain ASGI (no Channels, no Starlette).  Importing this module calls
``django.setup()``, so ``DJANGO_SETTINGS_MODULE`` must be set.  Serve it with::

    DJANGO_SETTINGS_MODULE=... python -m hastexo_xblock.gateway --host 127.0.0.1 --port 8001

which runs uvicorn with the settings in :mod:`.serve` (uvloop, websockets-sansio,
no permessage-deflate, no access log).  The access log must stay off: websocket
URLs carry tickets.  (uvicorn also logs
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
then ``{"type":"status","status":"connected"}`` once the shell is up.  The
messages, their limits and every close code (with what the browser should do
after it) are defined once, in ``static/js/gateway-protocol.json``; see
:mod:`.protocol`.  A refused ticket (4001) is sent *instead of* accept, so the
handshake fails (uvicorn answers HTTP 403).  A database failure while
checking the ticket refuses the handshake with 1011.

Ports
-----
A ticket carries the learner's port choice (``port``, or ``None``).  ``None``
means the lab's default endpoint, ``Stack.ip`` on ``Stack.ssh_port``.  A port is
honoured only if it is one of the lab's configured ``Stack.spec["ports"]``
numbers (checked again here although the ticket is signed: the lab may no
longer offer it).  For SSH labs, the ports name further SSH endpoints of the
lab host: the terminal connects to ``Stack.ip`` on that port with the same
user and key and requires the same pinned host key.  For desktop labs
(``vnc``, see :mod:`.vnc`) the ports name desktop servers on the lab host's
loopback, reached through the lab's default SSH endpoint; for ``rdp`` (see
:mod:`.guac`, needs the ``guacd`` setting) they name RDP servers there.

Desktop sessions take more from the query string than the ticket:
``width``, ``height`` and ``dpi`` (RDP only: the screen size guacd asks the
RDP server for).

Neither the ticket nor any key is ever logged or sent back; ticket failures
are logged with their reason only.
"""

from __future__ import annotations

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

from .. import fields, states
from ..conf import get_settings
from ..models import Stack, UsedTicket
from . import guac, tickets, vnc
from .activity import run_db, tracker
from .guac import GuacSession
from .protocol import CloseCode
from .session import MSG_NOT_RUNNING, MSG_PORT_NOT_OFFERED, MSG_UNSUPPORTED, TerminalSession, WebsocketSession
from .vnc import VncSession
from .wsprotocol import DIRECT

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

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


def port_allowed(stack: Stack, port: int | None) -> bool:
    """Whether a ticket's ``port`` may be used with ``stack``: the one rule, :func:`fields.port_offered`."""
    spec = stack.spec if isinstance(stack.spec, dict) else {}
    return fields.port_offered(port, spec.get("ports"))


#: The ticket protocols this gateway serves.
SESSIONS = frozenset({"ssh", "vnc", "rdp"})


# --- ASGI entry points ---------------------------------------------------------------


def _route(path: str, name: str) -> bool:
    return path == f"/{name}" or path.endswith(f"/{name}")


async def _reject(send: Send, code: int) -> None:
    """Refuse the websocket handshake (the ASGI server answers HTTP 403)."""
    await send({"type": "websocket.close", "code": int(code)})


async def _refuse(send: Send, stack_id: int, message: str, code: int) -> None:
    """Accept, send ``{"type":"error","message":message}`` and close with ``code``.

    Accepting first lets the browser be told why (a refused handshake carries no reason).
    """
    await send({"type": "websocket.accept"})
    try:
        await send({"type": "websocket.send", "text": json.dumps({"type": "error", "message": message})})
        await send({"type": "websocket.close", "code": int(code)})
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
            await _reject(send, CloseCode.NOT_RUNNING)
        return

    client = (scope.get("client") or ("?", 0))[0]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    token = (query.get("ticket") or [""])[0]
    if not token:
        logger.warning("websocket from %s rejected: no ticket", client)
        await _reject(send, CloseCode.BAD_TICKET)
        return
    try:
        ticket = await run_db(_verify_ticket, token)
    except tickets.TicketError as error:
        # The reason only: never the ticket itself.
        logger.warning("websocket from %s rejected: %s", client, error)
        await _reject(send, CloseCode.BAD_TICKET)
        return
    except Exception:
        logger.exception("websocket from %s: ticket check failed", client)
        await _reject(send, CloseCode.CONNECT_FAILED)
        return

    try:
        stack = await run_db(_load_stack, ticket.stack_id)
    except Exception:
        logger.exception("websocket from %s: loading stack %s failed", client, ticket.stack_id)
        await _reject(send, CloseCode.CONNECT_FAILED)
        return
    if stack is not None and (stack.name != ticket.stack_name or stack.anonymous_user_id != ticket.learner):
        logger.warning(
            "websocket from %s rejected: ticket does not match stack %s (name or learner differs)",
            client,
            ticket.stack_id,
        )
        await _reject(send, CloseCode.BAD_TICKET)
        return

    if stack is None or stack.status not in states.UP:
        status = "missing" if stack is None else stack.status
        logger.info("websocket for stack %s refused: lab not running (%s)", ticket.stack_id, status)
        await _refuse(send, ticket.stack_id, MSG_NOT_RUNNING, CloseCode.NOT_RUNNING)
        return
    guacd = get_settings()["guacd"] if ticket.protocol == "rdp" else None
    if ticket.protocol not in SESSIONS or (ticket.protocol == "rdp" and not guacd):
        logger.info("websocket for stack %s refused: protocol %r not supported", ticket.stack_id, ticket.protocol)
        await _refuse(send, ticket.stack_id, MSG_UNSUPPORTED, CloseCode.UNSUPPORTED)
        return
    if not port_allowed(stack, ticket.port):
        logger.info("websocket for stack %s refused: port %r is not offered by the lab", ticket.stack_id, ticket.port)
        await _refuse(send, ticket.stack_id, MSG_PORT_NOT_OFFERED, CloseCode.PORT_NOT_OFFERED)
        return

    if not tracker.running:
        tracker.start()  # served without lifespan events: start the flusher on first use
    offered = scope.get("subprotocols") or []
    if ticket.protocol == "rdp":
        session: WebsocketSession = GuacSession(
            receive,
            send,
            ticket,
            stack,
            guacd=guacd or {},
            size=guac.requested_size(query),
            subprotocol=guac.SUBPROTOCOL if guac.SUBPROTOCOL in offered else None,
        )
    elif ticket.protocol == "vnc":
        session = VncSession(
            receive, send, ticket, stack, subprotocol=vnc.SUBPROTOCOL if vnc.SUBPROTOCOL in offered else None
        )
    else:
        session = TerminalSession(receive, send, ticket, stack, (scope.get("extensions") or {}).get(DIRECT))
    # This frame lives as long as the session: keep neither the row (decrypted key, spec) nor the ticket.
    del stack, ticket, token, query
    await session.run()


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
    """The ASGI 3 application: websocket terminal and desktop sessions, ``/healthz`` and lifespan."""
    kind = scope["type"]
    if kind == "websocket":
        await _websocket(scope, receive, send)
    elif kind == "http":
        await _http(scope, receive, send)
    elif kind == "lifespan":
        await _lifespan(receive, send)
