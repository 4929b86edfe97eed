"""The browser ↔ gateway websocket protocol: close codes, limits and control messages.

The definition itself is data, in ``static/js/gateway-protocol.json``, so the
front end's bundle imports the very same file; this module loads it once and
gives Python names to it (:class:`CloseCode`, :data:`LIMITS`) and parses the
browser's control messages strictly (:func:`parse_control`).

Messages
--------
* browser → gateway, binary: raw terminal input (at most ``max_input_bytes``);
* browser → gateway, text: one control message, a JSON object of at most
  ``max_control_bytes`` (see :func:`parse_control`);
* gateway → browser, binary: raw terminal output;
* gateway → browser, text: ``{"type":"status","status":…}``,
  ``{"type":"error","message":…}`` or ``{"type":"pong"}``.

Anything else the browser sends ends the session with a documented close code
(:attr:`CloseCode.INVALID_MESSAGE` or :attr:`CloseCode.MESSAGE_TOO_BIG`).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

#: Where the definition lives (shipped with the static files; the JS bundle imports it).
DEFINITION_PATH = ("static", "js", "gateway-protocol.json")


def _load() -> dict[str, Any]:
    path = resources.files("hastexo_xblock").joinpath(*DEFINITION_PATH)
    return json.loads(path.read_text(encoding="utf-8"))


DEFINITION: dict[str, Any] = _load()

#: Close codes by name (``CloseCode.BAD_TICKET == 4001``).
CloseCode = enum.IntEnum(  # type: ignore[misc]
    "CloseCode", {name: entry["code"] for name, entry in DEFINITION["close_codes"].items()}
)

#: What the browser does after each close code (``"reconnect"``, ``"give_up"``, …).
ACTIONS: dict[int, str] = {entry["code"]: entry["action"] for entry in DEFINITION["close_codes"].values()}

#: Codes after which reconnecting cannot help (the browser shows the error and stops).
NO_RECONNECT: frozenset[int] = frozenset(code for code, action in ACTIONS.items() if action in ("give_up", "ended"))

LIMITS: dict[str, int] = DEFINITION["limits"]
MAX_CONTROL_BYTES: int = LIMITS["max_control_bytes"]
MAX_INPUT_BYTES: int = LIMITS["max_input_bytes"]
MIN_SIZE: int = LIMITS["min_terminal_size"]
MAX_SIZE: int = LIMITS["max_terminal_size"]


class ProtocolViolation(Exception):
    """The browser sent something the protocol does not allow; close with :attr:`code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Ping:
    """``{"type": "ping"}``: answer with a pong."""


@dataclass(frozen=True)
class Resize:
    """``{"type": "resize", "cols": N, "rows": M}``, clamped to the allowed size."""

    cols: int
    rows: int


def _whole(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolViolation(CloseCode.INVALID_MESSAGE, f"resize: {name} is not a whole number")
    return min(max(value, MIN_SIZE), MAX_SIZE)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check_input(data: bytes) -> None:
    """Raise :class:`ProtocolViolation` if a binary input message is too long."""
    if len(data) > MAX_INPUT_BYTES:
        raise ProtocolViolation(CloseCode.MESSAGE_TOO_BIG, f"input message of {len(data)} bytes")


def parse_control(text: str) -> Ping | Resize:
    """Parse one control message; raise :class:`ProtocolViolation` for anything not allowed.

    Checked in order of cost: the length first (before any parsing, so a huge
    or deeply nested text costs nothing), then that it is a JSON object (no
    NaN/Infinity, no duplicate keys) of a known ``type`` with exactly its fields.
    """
    if len(text) > MAX_CONTROL_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_CONTROL_BYTES:
        raise ProtocolViolation(CloseCode.MESSAGE_TOO_BIG, f"control message of {len(text)} characters")
    try:
        message = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError):
        raise ProtocolViolation(CloseCode.INVALID_MESSAGE, "control message is not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolViolation(CloseCode.INVALID_MESSAGE, "control message is not a JSON object")
    kind = message.get("type")
    if kind == "ping" and message.keys() == {"type"}:
        return Ping()
    if kind == "resize" and message.keys() == {"type", "cols", "rows"}:
        return Resize(_whole(message["cols"], "cols"), _whole(message["rows"], "rows"))
    if kind in ("ping", "resize"):
        raise ProtocolViolation(CloseCode.INVALID_MESSAGE, f"{kind}: unexpected or missing fields")
    raise ProtocolViolation(CloseCode.INVALID_MESSAGE, "unknown control message type")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result
