"""The parts of the RFB (VNC) protocol the gateway itself speaks.  Pure: no I/O, no Django.

The gateway stands between the browser (noVNC) and the lab's VNC server and
does two handshakes (see :mod:`.vnc`):

* towards the **server** it is the client: it picks the RFB version, the
  security type "None" when the server offers it, otherwise "VNC
  authentication", answering the server's challenge with the password from
  the stack record (:func:`vnc_auth_response`);
* towards the **browser** it is the server: it offers the security type
  "None" only, so no VNC password ever reaches the browser.

After both handshakes the bytes are relayed, server → browser as they come,
browser → server through a :class:`ClientFilter`, which finds the message
boundaries of the client's stream (whatever the websocket framing) so that
it can drop input on read-only sessions and note learner activity.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

#: What the gateway tells the browser (and the server) it speaks.
VERSION_3_8 = b"RFB 003.008\n"
SECURITY_INVALID = 0
SECURITY_NONE = 1
SECURITY_VNC_AUTH = 2

# Client → server message types (RFC 6143 §7.5 and the registered extensions noVNC uses).
SET_PIXEL_FORMAT = 0
SET_ENCODINGS = 2
FRAMEBUFFER_UPDATE_REQUEST = 3
KEY_EVENT = 4
POINTER_EVENT = 5
CLIENT_CUT_TEXT = 6
ENABLE_CONTINUOUS_UPDATES = 150
CLIENT_FENCE = 248
XVP = 250
SET_DESKTOP_SIZE = 251
QEMU = 255
QEMU_EXTENDED_KEY_EVENT = 0

#: Messages that act on the learner's desktop: dropped for read-only sessions.  Besides
#: key, pointer and cut text (4, 5, 6) that is the QEMU extended key event (noVNC sends
#: keys that way when the server supports it, as TigerVNC does), XVP (power actions) and
#: SetDesktopSize (an observer must not resize the learner's screen).
INPUT_TYPES = frozenset({KEY_EVENT, POINTER_EVENT, CLIENT_CUT_TEXT, QEMU, XVP, SET_DESKTOP_SIZE})
#: Messages that count as learner activity (keep the lab from being suspended).
ACTIVITY_TYPES = frozenset({KEY_EVENT, POINTER_EVENT, CLIENT_CUT_TEXT, QEMU})

#: Longest client message accepted (a cut text of about this size): keeps a session's memory bounded.
MAX_MESSAGE = 1024 * 1024


class RFBError(Exception):
    """The peer does not speak RFB as the gateway expects; the message is for the log."""


def parse_version(data: bytes) -> tuple[int, int]:
    """``(major, minor)`` of a 12-byte ProtocolVersion message, or :class:`RFBError`."""
    if len(data) != 12 or not data.startswith(b"RFB ") or data[7:8] != b"." or data[11:12] != b"\n":
        raise RFBError("not an RFB protocol version")
    try:
        return int(data[4:7]), int(data[8:11])
    except ValueError:
        raise RFBError("not an RFB protocol version") from None


def _des_key(password: str) -> bytes:
    # VNC authentication uses the first 8 bytes of the password, zero-padded, with each
    # byte's bits in reverse order (a quirk of the original implementation) as a DES key.
    raw = password.encode("latin-1", "replace")[:8].ljust(8, b"\0")
    return bytes(int(f"{byte:08b}"[::-1], 2) for byte in raw)


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """The 16-byte answer to a VNC authentication ``challenge`` (DES-ECB with the password)."""
    if len(challenge) != 16:
        raise RFBError("VNC authentication challenge is not 16 bytes")
    key = _des_key(password)
    # Single DES as three-key TripleDES with K1 = K2 = K3 (cryptography has no plain DES).
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # noqa: S305 - RFB's VNC authentication is DES-ECB by definition
    return encryptor.update(challenge) + encryptor.finalize()


@dataclass
class Filtered:
    """What :meth:`ClientFilter.feed` returns: bytes to forward, and whether there was input."""

    forward: bytes
    activity: bool
    dropped: int = 0


def _message_length(buffer: bytes | bytearray | memoryview, start: int) -> int | None:
    """Length of the client message at ``buffer[start:]``, ``None`` if more bytes are needed.

    Raises :class:`RFBError` for an unknown message type or a length over :data:`MAX_MESSAGE`.
    """
    available = len(buffer) - start
    kind = buffer[start]
    if kind == SET_PIXEL_FORMAT:
        return 20
    if kind in (FRAMEBUFFER_UPDATE_REQUEST, ENABLE_CONTINUOUS_UPDATES):
        return 10
    if kind == KEY_EVENT:
        return 8
    if kind == POINTER_EVENT:
        return 6
    if kind == XVP:
        return 4
    if kind == SET_ENCODINGS:
        if available < 4:
            return None
        (count,) = struct.unpack_from(">H", buffer, start + 2)
        return 4 + 4 * count
    if kind == CLIENT_CUT_TEXT:
        if available < 8:
            return None
        (length,) = struct.unpack_from(">i", buffer, start + 4)
        # A negative length is the extended clipboard's (RFB "Extended Clipboard" pseudo-encoding).
        length = 8 + abs(length)
    elif kind == CLIENT_FENCE:
        if available < 9:
            return None
        length = 9 + buffer[start + 8]
    elif kind == SET_DESKTOP_SIZE:
        if available < 7:
            return None
        length = 8 + 16 * buffer[start + 6]
    elif kind == QEMU:
        if available < 2:
            return None
        if buffer[start + 1] != QEMU_EXTENDED_KEY_EVENT:
            raise RFBError(f"unsupported QEMU client message {buffer[start + 1]}")
        return 12
    else:
        raise RFBError(f"unknown client message type {kind}")
    if length > MAX_MESSAGE:
        raise RFBError(f"client message of {length} bytes")
    return length


class ClientFilter:
    """Splits the browser's RFB stream (after the handshake) into messages, whatever the framing.

    ``read_only``: drop every message in :data:`INPUT_TYPES`.  Messages are
    forwarded whole: a message split across websocket frames is held until its
    last byte arrives (at most :data:`MAX_MESSAGE` bytes).  An unknown message
    type raises :class:`RFBError`, because past it the boundaries are lost; the
    session then ends (a filter that guessed could let input through).
    """

    __slots__ = ("_pending", "read_only")

    def __init__(self, *, read_only: bool) -> None:
        self.read_only = read_only
        self._pending = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held back."""
        return len(self._pending)

    def feed(self, data: bytes) -> Filtered:
        """Take the next bytes from the browser; return whole messages to forward."""
        if self._pending:
            self._pending += data
            buffer: bytes | bytearray = self._pending
        else:
            buffer = data
        out: list[memoryview] = []
        view = memoryview(buffer)
        start = 0
        run_start = 0  # start of the current run of forwarded messages
        activity = False
        dropped = 0
        end = len(buffer)
        try:
            while start < end:
                length = _message_length(buffer, start)
                if length is None or start + length > end:
                    break
                kind = buffer[start]
                if kind in ACTIVITY_TYPES:
                    activity = True
                if self.read_only and kind in INPUT_TYPES:
                    if run_start < start:
                        out.append(view[run_start:start])
                    dropped += 1
                    run_start = start + length
                start += length
            if run_start < start:
                out.append(view[run_start:start])
            forward = b"".join(out)
            rest = bytes(view[start:])
        finally:
            out.clear()
            view.release()
        self._pending = bytearray(rest)
        if activity and self.read_only:
            activity = False  # an observer's input is not the learner's activity
        return Filtered(forward, activity, dropped)
