"""Short-lived, signed, single-use tickets that let a browser open one lab session.

The LMS mints a ticket for the learner who is looking at the unit; the
gateway accepts a websocket only with a valid one.  A ticket is
``base64url(json payload) + "." + base64url(HMAC-SHA256)``: it is bound to
the stack, the learner, the protocol, the port and the read-only flag, and
expires after ``ttl`` seconds.  Single use is enforced by the verifier's
``consume`` callback (the gateway records the ticket id in the database, so
it holds across gateway replicas).

This module is pure: no Django, no XBlock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

MAX_TTL = 60
_VERSION = 1
#: Longest text field (stack names, learner ids) a ticket may carry.
MAX_TEXT = 255
_PROTOCOL = re.compile(r"[a-z]{1,16}")
_TICKET_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


class TicketError(Exception):
    """The ticket is not acceptable; the message says why (safe to log, not to show)."""


class TicketExpired(TicketError):
    """The ticket's lifetime is over."""


class TicketReused(TicketError):
    """The ticket has been used before."""


@dataclass(frozen=True)
class Ticket:
    """What a ticket grants.

    ``learner`` is the anonymous user id the stack belongs to; ``actor`` is
    who asked (differs from the learner when staff view as a learner).
    """

    stack_id: int
    stack_name: str
    learner: str
    protocol: str
    port: int | None
    read_only: bool
    expires: float
    ticket_id: str
    actor: str = ""

    def __post_init__(self) -> None:
        _check_schema(self)


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _text(value: Any, *, allow_empty: bool = False) -> bool:
    return isinstance(value, str) and (allow_empty or value != "") and len(value) <= MAX_TEXT


def _check_schema(ticket: Ticket) -> None:
    """Raise :class:`TicketError` unless every field has exactly its type and range.

    Signed is not the same as well-formed: a ticket minted by a buggy or older
    LMS must not reach the database queries or the SSH connect with a string
    id, a list, a port out of range or a NaN expiry.
    """
    problems = []
    if not _whole(ticket.stack_id, 1, 2**63 - 1):
        problems.append("stack_id")
    for name in ("stack_name", "learner"):
        if not _text(getattr(ticket, name)):
            problems.append(name)
    if not _text(ticket.actor, allow_empty=True):
        problems.append("actor")
    if not isinstance(ticket.protocol, str) or not _PROTOCOL.fullmatch(ticket.protocol):
        problems.append("protocol")
    if ticket.port is not None and not _whole(ticket.port, 1, 65535):
        problems.append("port")
    if not isinstance(ticket.read_only, bool):
        problems.append("read_only")
    expires = ticket.expires
    if isinstance(expires, bool) or not isinstance(expires, (int, float)) or not math.isfinite(expires) or expires <= 0:
        problems.append("expires")
    if not isinstance(ticket.ticket_id, str) or not _TICKET_ID.fullmatch(ticket.ticket_id):
        problems.append("ticket_id")
    if problems:
        raise TicketError(f"malformed ticket payload: bad {', '.join(problems)}")


_FIELDS = frozenset(field.name for field in fields(Ticket)) | {"v"}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


def mint(
    secret: bytes,
    *,
    stack_id: int,
    stack_name: str,
    learner: str,
    protocol: str,
    port: int | None,
    read_only: bool,
    actor: str = "",
    ttl: int = MAX_TTL,
    now: float | None = None,
) -> str:
    """Return a signed ticket string valid for ``ttl`` seconds (at most :data:`MAX_TTL`).

    Raises :class:`TicketError` if a value does not fit the ticket's schema
    (the same check :func:`verify` makes), so a bad ticket is never issued.
    """
    if not secret:
        raise ValueError("a ticket secret is required")
    ttl = max(1, min(int(ttl), MAX_TTL))
    ticket = Ticket(
        stack_id=stack_id,
        stack_name=stack_name,
        learner=learner,
        protocol=protocol,
        port=port,
        read_only=bool(read_only),
        expires=(time.time() if now is None else now) + ttl,
        ticket_id=secrets.token_urlsafe(16),
        actor=actor or learner,
    )
    body = _b64(json.dumps({"v": _VERSION, **asdict(ticket)}, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_sign(secret, body)}"


def verify(
    secret: bytes,
    token: str,
    *,
    consume: Callable[[Ticket], bool] | None = None,
    now: float | None = None,
) -> Ticket:
    """Check ``token`` and return its :class:`Ticket`.

    ``consume(ticket)`` is called last and must return ``False`` if the
    ticket id was seen before.  Raises :class:`TicketError` (or a subclass)
    for a malformed, tampered, expired or reused ticket.
    """
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 4096:
        raise TicketError("malformed ticket")
    body, signature = token.split(".")
    if not hmac.compare_digest(_sign(secret, body), signature):
        raise TicketError("bad ticket signature")
    try:
        # Strict JSON: no NaN/Infinity, no duplicate keys (both would pass a lax parser).
        data = json.loads(_unb64(body), parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError, binascii.Error) as error:
        raise TicketError(f"malformed ticket payload: {type(error).__name__}") from None
    if not isinstance(data, dict) or data.keys() != _FIELDS:
        raise TicketError("malformed ticket payload: unexpected or missing fields")
    version = data.pop("v")
    if not _whole(version, _VERSION, _VERSION):
        raise TicketError("unknown ticket version")
    ticket = Ticket(**data)  # checks the schema
    current = time.time() if now is None else now
    if current >= ticket.expires:
        raise TicketExpired("ticket expired")
    if ticket.expires - current > MAX_TTL + 5:
        raise TicketError("ticket lifetime too long")
    if consume is not None and not consume(ticket):
        raise TicketReused("ticket already used")
    return ticket
