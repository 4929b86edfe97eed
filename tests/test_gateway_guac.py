"""RDP sessions through guacd, the gateway's side, against a small Guacamole-protocol server written for the tests.

No real guacd here (Debian 12 does not package it).  The server below plays
guacd: it checks the gateway's handshake (select, size, audio, video, image,
connect with values in the order of its ``args``), connects to the host and
port the gateway gave it (the gateway's tunnel listener, which relays through
the lab's SSH to a server in a real local lab), reports the first bytes it
read there, and echoes every instruction it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hastexo_xblock.gateway import guac
from hastexo_xblock.gateway.activity import tracker

from . import test_gateway, test_gateway_vnc
from .test_gateway import ticket_for
from .test_gateway_vnc import desktop_stack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

gateway = test_gateway.gateway
desktop_lab = test_gateway_vnc.desktop_lab

ARGS = ["VERSION_1_5_0", "hostname", "port", "username", "password", "read-only", "security", "ignore-cert", "domain"]


def instruction_reader(reader: asyncio.StreamReader) -> Callable[[], Awaitable[list[str]]]:
    """What a guacd reads from the gateway: one whole instruction per call (``EOFError`` at the end)."""
    parser = guac.Parser()
    queue: list[list[str]] = []

    async def next_instruction() -> list[str]:
        while not queue:
            data = await reader.read(65536)
            if not data:
                raise EOFError
            queue.extend(parser.feed(data.decode())[1])
        return queue.pop(0)

    return next_instruction


class FakeGuacd:
    """A Guacamole-protocol server in its own thread: the handshake checked, then an echo."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-guacd", daemon=True)
        self.handshakes: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.port = 0

    def start(self) -> None:
        self.thread.start()
        server = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop)
        self._server = server.result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        next_instruction = instruction_reader(reader)
        try:
            seen: dict[str, Any] = {}
            select = await next_instruction()
            if select != ["select", "rdp"]:
                self.problems.append(f"select: {select}")
            writer.write(guac.encode("args", *ARGS).encode())
            for opcode in ("size", "audio", "video", "image", "connect"):
                instruction = await next_instruction()
                if instruction[0] != opcode:
                    self.problems.append(f"expected {opcode}, got {instruction[0]}")
                seen[opcode] = instruction[1:]
            values = dict(zip(ARGS, seen["connect"], strict=True))
            seen["values"] = values
            self.handshakes.append(seen)
            # Like guacd: connect to the RDP host given (the gateway's tunnel).
            peer_reader, _peer_writer = await asyncio.open_connection(values["hostname"], int(values["port"]))
            greeting = await asyncio.wait_for(peer_reader.readexactly(12), 10)
            try:  # the tunnel takes one connection only
                await asyncio.open_connection(values["hostname"], int(values["port"]))
                seen["second_connection"] = "accepted"
            except OSError:
                seen["second_connection"] = "refused"
            writer.write((guac.encode("ready", "$fake-connection") + guac.encode("name", greeting.decode())).encode())
            while True:
                writer.write(guac.encode(*await next_instruction()).encode())
                await writer.drain()
        except (EOFError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as error:
            self.problems.append(f"ended: {type(error).__name__}")
        finally:
            writer.close()


@pytest.fixture(scope="module")
def fake_guacd() -> Iterator[FakeGuacd]:
    server = FakeGuacd()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def guacd_setting(fake_guacd, hastexo_settings):
    hastexo_settings(guacd={"host": "127.0.0.1", "port": fake_guacd.port})
    return fake_guacd


class GuacClient:
    """The browser's side, as guacamole-common-js's WebSocketTunnel behaves."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.parser = guac.Parser()
        self.instructions: list[list[str]] = []
        self.received: list[str] = []

    async def expect(self, opcode: str, timeout: float = 10) -> list[str]:
        seen = 0
        while True:
            for instruction in self.instructions[seen:]:
                if instruction[0] == opcode:
                    self.instructions.remove(instruction)
                    return instruction
            seen = len(self.instructions)
            message = await asyncio.wait_for(self.ws.recv(), timeout)
            assert isinstance(message, str)
            self.received.append(message)
            text, found = self.parser.feed(message)
            assert text == message, "a websocket message carried a partial instruction"
            self.instructions.extend(found)

    async def send(self, *elements: str) -> None:
        await self.ws.send(guac.encode(*elements))


async def open_rdp(gateway, token: str) -> GuacClient:
    ws = await connect(
        f"{gateway.ws_base}?ticket={token}&width=800&height=600&dpi=120", subprotocols=["guacamole"], open_timeout=10
    )
    assert ws.subprotocol == "guacamole"
    client = GuacClient(ws)
    opened = await client.expect("")  # the tunnel's id: guacamole-common-js is open from here
    assert len(opened) == 2 and len(opened[1]) == 32
    return client


def rdp_stack(lab, **fields: Any):
    # The "RDP server" is the lab's VNC socket: what matters is that guacd's connection reaches the lab.
    return desktop_stack(lab, protocol="rdp", password="rdp-secret-pw", **fields)


def test_rdp_through_guacd(gateway, desktop_lab, guacd_setting, caplog):
    caplog.set_level("DEBUG")
    stack = rdp_stack(desktop_lab)
    received: list[str] = []

    async def go() -> list[list[str]]:
        client = await open_rdp(gateway, ticket_for(stack, protocol="rdp"))
        name = await client.expect("name")
        await client.send("", "ping", "12345")
        assert await client.expect("") == ["", "ping", "12345"]  # answered by the gateway
        await client.send("key", "65307", "1")
        await client.send("mouse", "10", "20", "1")
        await client.send("sync", "42")
        echoed = [await client.expect("key"), await client.expect("mouse"), await client.expect("sync")]
        assert stack.pk in tracker.pending  # RDP input is activity too
        await client.ws.close()
        received.extend(client.received)
        return [name, *echoed]

    name, key, mouse, sync = gateway.call(go(), timeout=60)
    # guacd's RDP connection reached the lab through the gateway's SSH tunnel.
    assert name == ["name", "RFB 003.008\n"]
    assert (key, mouse, sync) == (["key", "65307", "1"], ["mouse", "10", "20", "1"], ["sync", "42"])
    handshake = guacd_setting.handshakes[-1]
    assert handshake["size"] == ["800", "600", "120"]
    assert "image/png" in handshake["image"]
    values = handshake["values"]
    assert values["VERSION_1_5_0"] == "VERSION_1_5_0"
    assert (values["hostname"], values["username"], values["password"]) == ("127.0.0.1", "learner", "rdp-secret-pw")
    assert values["read-only"] == "" and values["domain"] == ""
    assert values["port"].isdigit()
    assert handshake["second_connection"] == "refused"
    # The RDP password went to guacd only: not to the browser, not to any log.
    assert "rdp-secret-pw" not in "".join(received)
    assert "rdp-secret-pw" not in caplog.text


def test_rdp_read_only_passes_no_input(gateway, desktop_lab, guacd_setting):
    stack = rdp_stack(desktop_lab)

    async def go() -> list[list[str]]:
        client = await open_rdp(gateway, ticket_for(stack, protocol="rdp", read_only=True))
        await client.expect("name")
        await client.send("key", "65307", "1")
        await client.send("mouse", "10", "20", "1")
        await client.send("clipboard", "1", "text/plain")
        await client.send("size", "1920", "1080")
        await client.send("sync", "7")
        await client.expect("sync")
        assert stack.pk not in tracker.pending  # a viewer's input is neither passed on nor activity
        rest = list(client.instructions)
        await client.ws.close()
        return rest

    rest = gateway.call(go(), timeout=60)
    assert not [i for i in rest if i[0] in ("key", "mouse", "clipboard", "size")]
    assert guacd_setting.handshakes[-1]["values"]["read-only"] == "true"


def test_without_guacd_the_gateway_refuses_rdp(gateway, desktop_lab):
    stack = rdp_stack(desktop_lab)

    async def go() -> tuple[Any, int | None]:
        ws = await connect(f"{gateway.ws_base}?ticket={ticket_for(stack, protocol='rdp')}", open_timeout=10)
        messages = []
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                messages.append(message)
        return messages, ws.close_code

    messages, code = gateway.call(go(), timeout=30)
    assert code == 4400
    assert messages == ['{"type": "error", "message": "protocol not supported yet"}']


def test_guacd_unreachable_is_an_error_instruction(gateway, desktop_lab, hastexo_settings):
    hastexo_settings(guacd={"host": "127.0.0.1", "port": 1})
    stack = rdp_stack(desktop_lab)

    async def go() -> tuple[list[Any], int | None]:
        ws = await connect(f"{gateway.ws_base}?ticket={ticket_for(stack, protocol='rdp')}", subprotocols=["guacamole"])
        messages = []
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                messages.append(message)
        return messages, ws.close_code

    messages, code = gateway.call(go(), timeout=30)
    assert code == 1011
    assert guac.Parser().feed(messages[-1])[1] == [["error", "Could not open the lab's desktop.", "515"]]


@pytest.mark.parametrize("cut", range(1, 30))
def test_instructions_split_anywhere_parse_the_same(cut):
    text = guac.encode("key", "65307", "1") + guac.encode("", "ping", "1") + guac.encode("név", "ü…")
    parser = guac.Parser()
    first, a = parser.feed(text[:cut])
    second, b = parser.feed(text[cut:])
    assert first + second == text
    assert a + b == [["key", "65307", "1"], ["", "ping", "1"], ["név", "ü…"]]


@pytest.mark.parametrize("bad", ["x.key;", "3.key:", "99999999999999.x;", "3;key;"])
def test_malformed_instructions_are_refused(bad):
    with pytest.raises(guac.GuacError):
        guac.Parser(limit=1000).feed(bad)
