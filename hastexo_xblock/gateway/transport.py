"""A TCP connector for asyncssh that sends the packets of one loop pass in one write.

asyncssh writes every SSH packet to its transport on its own, and before each
channel packet it sends an ``SSH_MSG_IGNORE`` (a countermeasure it applies to
every cipher).  A keystroke is therefore two packets and, on uvloop or
asyncio alike, two ``send`` system calls; measured on the gateway under
concurrent typing, those calls were the largest single cost.  Handing asyncssh a
transport that gathers the writes of one event-loop pass and sends them as one
buffer halves the calls without changing a byte on the wire.

asyncssh's ``tunnel`` option accepts any object with a ``create_connection``
coroutine, which is how this connector is plugged in.  The flush runs at the
end of the current loop pass (``call_soon``), so no data waits for a timer.

The ignore packets themselves are dropped where the cipher makes them
pointless (:func:`drop_empty_ignores`, on the one connection: the only place
this module reaches into an asyncssh object).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class _CoalescingTransport(asyncio.Transport):
    """Wraps a real transport; :meth:`write` defers and joins, everything else passes through."""

    __slots__ = ("_chunks", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._chunks: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._chunks:
            self._loop.call_soon(self._flush)
        self._chunks.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def _flush(self) -> None:
        chunks, self._chunks = self._chunks, []
        if chunks and not self._transport.is_closing():
            self._transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._chunks = []
        self._transport.abort()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._chunks))

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()


class _Relay(asyncio.Protocol):
    """Protocol on the real socket that hands the wrapped transport to asyncssh's protocol."""

    __slots__ = ("_loop", "inner")

    def __init__(self, inner: asyncio.Protocol, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self._loop = loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(_CoalescingTransport(transport, self._loop))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class CoalescingConnector:
    """Pass as ``asyncssh.connect(..., tunnel=CoalescingConnector())``."""

    async def create_connection(
        self, protocol_factory: Callable[[], asyncio.Protocol], host: str, port: int
    ) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        loop = asyncio.get_running_loop()
        inner = protocol_factory()
        transport, _ = await loop.create_connection(lambda: _Relay(inner, loop), host, port)
        return transport, inner


#: Ciphers whose packets need no ``SSH_MSG_IGNORE`` before them: authenticated encryption with a fresh
#: nonce per packet (RFC 4251 9.3.1's chosen-plaintext attack concerns CBC mode only).
AEAD_CIPHERS = frozenset({"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"})

_MSG_IGNORE = 2  # RFC 4253 11.2
_EMPTY_STRING = b"\0\0\0\0"  # an SSH string of length 0


def drop_empty_ignores(conn: Any) -> bool:
    """Stop ``conn`` sending the empty ``SSH_MSG_IGNORE`` asyncssh puts before every packet, on an AEAD cipher.

    asyncssh inserts that packet whatever the cipher (it calls its own
    ``send_packet`` for it); OpenSSH sends none with these ciphers, and
    measured under concurrent typing it was 10-15 % of the gateway's CPU per
    keystroke.  The connection's ``send_packet`` is wrapped on this one
    instance so that exactly that packet — type 2 with an empty payload — is
    skipped; every other packet, ignore packets with content included, goes
    out unchanged.  Nothing happens unless the negotiated cipher is in
    :data:`AEAD_CIPHERS` both ways.  Returns whether the wrapper was installed
    (``tests/test_gateway_transport.py`` checks on a real server that no
    empty ignore arrives, so a change in asyncssh shows there).
    """
    ciphers = {conn.get_extra_info("send_cipher"), conn.get_extra_info("recv_cipher")}
    if not ciphers <= AEAD_CIPHERS:
        return False
    send_packet = conn.send_packet

    def send_packet_without_empty_ignore(pkttype: int, *args: bytes, **kwargs: Any) -> None:
        if pkttype == _MSG_IGNORE and args == (_EMPTY_STRING,):
            return
        send_packet(pkttype, *args, **kwargs)

    conn.send_packet = send_packet_without_empty_ignore
    return True
