"""The gateway's websocket server protocol: uvicorn's ``websockets-sansio``, lighter per message.

uvicorn's sans-I/O websocket protocol stops reading the socket after every
message it queues for the application and starts again when the application
has taken it.  For a terminal that is two changes of the event loop's watch
list per keystroke (on uvloop, two ``epoll_ctl`` calls batched through
``io_uring_enter``), in the busiest path of the gateway.

:class:`GatewayWebSocketProtocol` keeps the backpressure but applies it per
:data:`QUEUE_LIMIT` messages: reading stops once that many messages wait for
the application, and resumes when the application has taken them all
(uvicorn's own ``receive``).  At most :data:`QUEUE_LIMIT` messages of at most
``ws_max_size`` bytes wait per session, plus what arrived in the same read.

It also offers sessions a way past the ASGI queue for binary messages
(:class:`DirectAccess`), which a terminal keystroke and its echo take.

Select it with ``ws="hastexo_xblock.gateway.wsprotocol:GatewayWebSocketProtocol"``
(the default of :func:`.serve.uvicorn_options` and of ``python -m
hastexo_xblock.gateway``); uvicorn's ``--ws`` takes the same import string.
This module relies on attributes of uvicorn's class (``read_paused``,
``queue``, ``conn``, ``writable``, ``close_sent``, ``disconnected``,
``handshake_complete``, ``scope``); ``tests/test_gateway_wsprotocol.py``
drives it with a real websockets client protocol and checks that it still
pauses, resumes and takes both direct paths, so an uvicorn release that
changes them shows there.
"""

from __future__ import annotations

from collections.abc import Callable

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame
from websockets.http11 import Request

__all__ = ["DIRECT", "QUEUE_LIMIT", "DirectAccess", "GatewayWebSocketProtocol"]

#: The ASGI scope extension under which :class:`DirectAccess` is offered.
DIRECT = "hastexo.gateway.direct"

#: Messages that may wait for the application before the socket stops being read.
QUEUE_LIMIT = 16


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """``websockets-sansio`` that pauses reading only when :data:`QUEUE_LIMIT` messages wait."""

    def send_receive_event_to_app(self) -> None:
        was_paused = self.read_paused
        # The parent pauses reading after every message unless it believes reading is
        # paused already; let it queue the message, then decide on the queue's length.
        self.read_paused = True
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = was_paused
        if not self.read_paused and self.queue.qsize() >= QUEUE_LIMIT:
            self.read_paused = True
            self.transport.pause_reading()

    # --- the direct paths (see DirectAccess) -----------------------------------------------

    _sink: Callable[[bytes], bool] | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][DIRECT] = DirectAccess(self)

    def handle_bytes(self, event: Frame) -> None:
        sink = self._sink
        # Only a whole message, and only when nothing queued before it is still waiting (order).
        if sink is not None and event.fin and not self.close_sent and self.queue.empty() and sink(event.data):
            return
        super().handle_bytes(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._sink = None
        super().connection_lost(exc)

    def send_binary_nowait(self, data: bytes) -> bool:
        """Write one binary message now if the socket takes it (see :meth:`DirectAccess.send_binary_nowait`)."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        self.conn.send_binary(data)
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True


class DirectAccess:
    """Binary messages without the ASGI queue: ``scope["extensions"]["hastexo.gateway.direct"]``.

    A terminal keystroke is one small binary message each way.  Through ASGI
    each costs a task wake-up (``receive`` waits on a queue; the output pump
    waits for the lab's bytes) and a pass of the event loop; with this
    extension, a session hands input to the lab from the protocol's own
    callback and output to the socket from asyncssh's.  Both are offers that
    may be declined, and then the message takes the ASGI path, so ordering,
    backpressure and error handling stay where they are:

    * :meth:`set_binary_sink`: the protocol calls ``sink(data)`` for each whole
      binary message while no earlier message waits in the queue; ``sink``
      returns ``False`` to have it queued for ``receive`` as usual.
    * :meth:`send_binary_nowait`: sends a binary message at once and returns
      ``True``, or returns ``False`` (nothing sent) while the socket is not
      writable (the browser reads slowly), closing or closed; the caller then
      uses ASGI ``send``, which waits.

    Both must be called on the event loop that serves the connection.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: GatewayWebSocketProtocol) -> None:
        self._protocol = protocol

    def set_binary_sink(self, sink: Callable[[bytes], bool] | None) -> None:
        self._protocol._sink = sink

    def send_binary_nowait(self, data: bytes) -> bool:
        return self._protocol.send_binary_nowait(data)
