"""The gateway's uvicorn websocket protocol, driven byte by byte by a real websockets client protocol.

No sockets: the server protocol (``wsprotocol.GatewayWebSocketProtocol``,
uvicorn's sans-I/O implementation underneath) writes into a recording
transport, and the client side is ``websockets``' own ``ClientProtocol``, so
every frame on the wire is a real, masked client frame.  Each behaviour that
differs from uvicorn's is checked against uvicorn's own class as the control.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.uri import parse_uri

from hastexo_xblock.gateway.wsprotocol import DIRECT, QUEUE_LIMIT, DirectAccess, GatewayWebSocketProtocol


class RecordingTransport(asyncio.Transport):
    """Collects what the server writes and whether it reads."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.reading = True
        self.closing = False

    def write(self, data: Any) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8095)}.get(name, default)


class Connection:
    """A server protocol of ``protocol_class`` and a websockets client, handshake done."""

    def __init__(self, protocol_class: type[WebSocketsSansIOProtocol], app: Any) -> None:
        config = uvicorn.Config(app, ws=protocol_class, lifespan="off", log_level="warning")
        config.load()
        self.server = protocol_class(config, ServerState(), {}, _loop=asyncio.get_running_loop())
        self.transport = RecordingTransport()
        self.server.connection_made(self.transport)
        self.client = ClientProtocol(parse_uri("ws://127.0.0.1:8095/hastexo-gateway/ws"))
        self.client.send_request(self.client.connect())
        self.flush_to_server()

    def flush_to_server(self) -> None:
        """Hand what the client wrote to the server."""
        self.server.data_received(b"".join(self.client.data_to_send()))

    def to_client(self) -> list[Any]:
        """Hand what the server wrote to the client; the frames it received."""
        data, self.transport.written = bytes(self.transport.written), bytearray()
        self.client.receive_data(data)
        return [event for event in self.client.events_received() if hasattr(event, "opcode")]

    def send_binary(self, data: bytes) -> None:
        self.client.send_binary(data)
        self.flush_to_server()

    def send_text(self, text: str) -> None:
        self.client.send_text(text.encode())
        self.flush_to_server()


class App:
    """An ASGI app that accepts and then only reads when told to; it keeps what it read."""

    def __init__(self) -> None:
        self.receive: Any = None
        self.send: Any = None
        self.scope: dict[str, Any] = {}
        self.accepted = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        self.accepted.set()
        await asyncio.sleep(3600)


@contextlib.asynccontextmanager
async def accepted(protocol_class: type[WebSocketsSansIOProtocol]) -> AsyncIterator[tuple[Connection, App]]:
    """A connection whose handshake the app has accepted; torn down on exit."""
    app = App()
    connection = Connection(protocol_class, app)
    await asyncio.wait_for(app.accepted.wait(), 5)
    connection.to_client()  # the 101 response
    try:
        yield connection, app
    finally:
        connection.server.connection_lost(None)
        for task in list(connection.server.tasks):
            task.cancel()


async def _queued(app: App, count: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(app.receive(), 1) for _ in range(count)]


@pytest.mark.parametrize("protocol_class", [WebSocketsSansIOProtocol, GatewayWebSocketProtocol])
def test_reading_pauses_only_once_the_queue_is_full(protocol_class: type[WebSocketsSansIOProtocol]) -> None:
    """uvicorn's class stops reading after every message; the gateway's after QUEUE_LIMIT waiting ones."""

    async def scenario() -> None:
        async with accepted(protocol_class) as (connection, app):
            connection.send_binary(b"a")
            if protocol_class is WebSocketsSansIOProtocol:
                assert not connection.transport.reading  # the control: one message is enough
                await _queued(app, 1)
                assert connection.transport.reading
                return
            assert connection.transport.reading
            for index in range(1, QUEUE_LIMIT - 1):
                connection.send_binary(bytes([index]))
            assert connection.transport.reading  # QUEUE_LIMIT - 1 waiting
            connection.send_text('{"type": "ping"}')
            assert not connection.transport.reading  # QUEUE_LIMIT waiting
            messages = await _queued(app, QUEUE_LIMIT)
            assert [m["bytes"] for m in messages[:-1]] == [b"a"] + [bytes([i]) for i in range(1, QUEUE_LIMIT - 1)]
            assert messages[-1] == {"type": "websocket.receive", "text": '{"type": "ping"}'}
            assert connection.transport.reading  # all taken: reading again

    asyncio.run(scenario())


def test_the_binary_sink_takes_whole_messages_and_keeps_their_order() -> None:
    async def scenario() -> None:
        async with accepted(GatewayWebSocketProtocol) as (connection, app):
            direct = app.scope["extensions"][DIRECT]
            assert isinstance(direct, DirectAccess)
            taken: list[bytes] = []
            accept = [True]

            def sink(data: bytes) -> bool:
                if accept[0]:
                    taken.append(data)
                return accept[0]

            direct.set_binary_sink(sink)
            connection.send_binary(b"k1")
            assert taken == [b"k1"]
            assert connection.server.queue.empty()  # it never reached the queue

            # A declined message is queued for receive() as usual ...
            accept[0] = False
            connection.send_binary(b"k2")
            # ... and while it waits, later binary messages queue behind it, not past it.
            accept[0] = True
            connection.send_binary(b"k3")
            assert taken == [b"k1"]
            assert [m["bytes"] for m in await _queued(app, 2)] == [b"k2", b"k3"]

            # A text message (a resize) queued before a keystroke keeps the keystroke behind it.
            connection.send_text('{"type": "ping"}')
            connection.send_binary(b"k4")
            assert [m.get("text") or m.get("bytes") for m in await _queued(app, 2)] == ['{"type": "ping"}', b"k4"]
            assert taken == [b"k1"]

            # Fragmented messages take the queue whole.
            connection.client.send_binary(b"fr", fin=False)
            connection.client.send_continuation(b"ag", fin=True)
            connection.flush_to_server()
            assert [m["bytes"] for m in await _queued(app, 1)] == [b"frag"]

            direct.set_binary_sink(None)
            connection.send_binary(b"k5")
            assert [m["bytes"] for m in await _queued(app, 1)] == [b"k5"]
            assert taken == [b"k1"]

    asyncio.run(scenario())


def test_send_binary_nowait_sends_a_frame_only_when_the_socket_takes_it() -> None:
    async def scenario() -> None:
        async with accepted(GatewayWebSocketProtocol) as (connection, app):
            direct = app.scope["extensions"][DIRECT]
            assert direct.send_binary_nowait(b"echo")
            frames = connection.to_client()
            assert [(f.opcode, f.data) for f in frames] == [(Opcode.BINARY, b"echo")]

            connection.server.pause_writing()  # the browser reads slowly: the kernel buffer is full
            assert not direct.send_binary_nowait(b"later")
            assert connection.to_client() == []
            connection.server.resume_writing()
            assert direct.send_binary_nowait(b"later")
            assert [f.data for f in connection.to_client()] == [b"later"]

            await app.send({"type": "websocket.close", "code": 1000})
            assert not direct.send_binary_nowait(b"after close")
            assert [f.opcode for f in connection.to_client()] == [Opcode.CLOSE]

    asyncio.run(scenario())


def test_a_malformed_handshake_is_answered_as_uvicorn_answers_it() -> None:
    """No scope is made for a request that is not a websocket handshake: nothing to offer, no crash."""

    async def scenario() -> None:
        async def never_called(scope: dict[str, Any], receive: Any, send: Any) -> None:
            raise AssertionError("no application for a malformed handshake")

        config = uvicorn.Config(never_called, ws=GatewayWebSocketProtocol, lifespan="off", log_level="warning")
        config.load()
        server = GatewayWebSocketProtocol(config, ServerState(), {}, _loop=asyncio.get_running_loop())
        transport = RecordingTransport()
        server.connection_made(transport)
        server.data_received(
            b"GET /hastexo-gateway/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"  # no Sec-WebSocket-Key
        )
        assert bytes(transport.written).startswith(b"HTTP/1.1 400")
        assert transport.closing
        server.connection_lost(None)

    asyncio.run(scenario())
