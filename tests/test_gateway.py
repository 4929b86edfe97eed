"""End-to-end tests of the websocket gateway: a real uvicorn, a real asyncssh server, a real bash.

Topology (all in this process, each server in a thread with its own event loop)::

    websockets client (test) ──ws──▶ uvicorn + gateway.asgi ──ssh──▶ asyncssh server ──pty──▶ bash

The SSH server accepts only the generated client key and presents a generated
host key, whose public line is pinned in ``Stack.host_key``.  Each server's shell
first prints its own banner, so a test can tell which endpoint it reached.
"""

from __future__ import annotations

import asyncio
import copy
import getpass
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncssh
import pytest
import uvicorn
from django.db import connections
from django.db.backends.signals import connection_created
from django.utils import timezone
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hastexo_xblock import conf, fields, jobs, states
from hastexo_xblock.gateway import asgi, tickets
from hastexo_xblock.gateway.activity import ActivityTracker, effective_interval, tracker
from hastexo_xblock.gateway.serve import uvicorn_options
from hastexo_xblock.models import Stack, UsedTicket

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(60),
]

PROMPT = b"lab$ "

# --- the lab: an asyncssh server running bash under a real PTY --------------------------

# Runs in the child: become session leader and take the PTY as controlling terminal, so
# bash gets job control and SIGWINCH like under sshd.
_SHELL_WRAPPER = (
    "import fcntl, os, termios, sys; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execvp('bash', ['bash', '--norc', '--noprofile', '-i'])"
)


def _set_winsize(fd: int, cols: int, rows: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class LabServer:
    """An SSH server in its own thread; counts connections and shell sessions.

    Every shell starts by printing ``banner`` (then bash's output follows).
    """

    def __init__(self, host_key: asyncssh.SSHKey, client_public: str, home: str, banner: bytes = b"") -> None:
        self.host_key = host_key
        self.banner = banner
        self.client_public = client_public
        self.home = home
        self.connections = 0
        self.sessions = 0
        self.active = 0
        self.open_connections: list[asyncssh.SSHServerConnection] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-ssh-server", daemon=True)
        self.children: list[subprocess.Popen[bytes]] = []
        self.port = 0
        self._server: Any = None

    def start(self) -> None:
        self.thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _listen(self) -> Any:
        outer = self

        class CountingServer(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                outer.connections += 1
                outer.open_connections.append(conn)

        return await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(self.client_public),
            server_factory=CountingServer,
            process_factory=self._shell,
            encoding=None,
            line_editor=False,
            allow_pty=True,
        )

    async def _shell(self, process: asyncssh.SSHServerProcess) -> None:
        self.sessions += 1
        self.active += 1
        if self.banner:
            process.stdout.write(self.banner)
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        cols, rows = process.term_size[:2] if process.term_size[0] else (80, 24)
        _set_winsize(master, cols, rows)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.home,
            "TERM": process.term_type or "dumb",
            "PS1": PROMPT.decode(),
        }
        child = subprocess.Popen(
            [sys.executable, "-c", _SHELL_WRAPPER], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=self.home
        )
        self.children.append(child)
        os.close(slave)
        os.set_blocking(master, False)
        ended = loop.create_future()

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""  # EIO: the shell closed the PTY
            if data:
                process.stdout.write(data)
            else:
                loop.remove_reader(master)
                if not ended.done():
                    ended.set_result(None)

        async def pump_input() -> None:
            while True:
                try:
                    data = await process.stdin.read(65536)
                except asyncssh.TerminalSizeChanged as change:
                    _set_winsize(master, change.width, change.height)
                    continue
                except (asyncssh.Error, OSError):
                    return
                if not data:
                    return
                os.write(master, data)

        loop.add_reader(master, readable)
        feeder = loop.create_task(pump_input())
        try:
            await asyncio.wait({feeder, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not ended.done():
                child.kill()  # the client went away: hang up on the shell
            status = await loop.run_in_executor(None, child.wait)
            process.exit(status if status >= 0 else 255)
        finally:
            feeder.cancel()
            loop.remove_reader(master)
            os.close(master)
            self.active -= 1

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
                child.wait(5)
        if self._server is not None:
            self.loop.call_soon_threadsafe(self._server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


@dataclass
class Keys:
    client: asyncssh.SSHKey
    host: asyncssh.SSHKey
    other_host: asyncssh.SSHKey

    @property
    def client_private(self) -> str:
        return self.client.export_private_key().decode()

    @staticmethod
    def public_line(key: asyncssh.SSHKey) -> str:
        return key.export_public_key().decode().strip()


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        client=asyncssh.generate_private_key("ssh-ed25519"),
        host=asyncssh.generate_private_key("ssh-ed25519"),
        other_host=asyncssh.generate_private_key("ssh-ed25519"),
    )


MAIN_BANNER = b"[endpoint: main]\r\n"
SECOND_BANNER = b"[endpoint: second]\r\n"
IMPOSTOR_BANNER = b"[endpoint: impostor]\r\n"


def _serve(host_key: asyncssh.SSHKey, keys: Keys, home: str, banner: bytes) -> Iterator[LabServer]:
    server = LabServer(host_key, Keys.public_line(keys.client), home, banner)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lab(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """The lab's default SSH endpoint (``Stack.ssh_port``)."""
    yield from _serve(keys.host, keys, str(tmp_path_factory.mktemp("home")), MAIN_BANNER)


@pytest.fixture(scope="module")
def second_lab(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A further SSH endpoint of the same lab host: another port, the same host key."""
    yield from _serve(keys.host, keys, str(tmp_path_factory.mktemp("home2")), SECOND_BANNER)


@pytest.fixture(scope="module")
def impostor_lab(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """An endpoint on another port that presents a host key other than the pinned one."""
    yield from _serve(keys.other_host, keys, str(tmp_path_factory.mktemp("home3")), IMPOSTOR_BANNER)


# --- the gateway: uvicorn serving the ASGI app --------------------------------------------


@dataclass
class Gateway:
    port: int
    loop: asyncio.AbstractEventLoop

    @property
    def ws_base(self) -> str:
        # Behind the LMS load balancer the gateway sits under a prefix.
        return f"ws://127.0.0.1:{self.port}/hastexo-gateway/ws"

    def call(self, coroutine: Any, timeout: float = 10) -> Any:
        """Run ``coroutine`` on the gateway's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


@pytest.fixture
def gateway(transactional_db: None) -> Iterator[Gateway]:
    # The production settings (uvloop, websockets-sansio, no deflate, …), on a free port.
    config = uvicorn.Config(asgi.application, host="127.0.0.1", port=0, **uvicorn_options(log_level="warning"))
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), name="test-gateway")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn failed to start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Gateway(port, loop)
    server.should_exit = True
    thread.join(15)
    assert not thread.is_alive()
    loop.close()
    # The flusher ran on that loop and is gone with it.
    assert not tracker.running


@pytest.fixture
def activity_interval(settings: Any) -> Callable[[int], None]:
    """Set ``gateway_activity_interval`` for this test."""

    def set_interval(seconds: int) -> None:
        xblock_settings = copy.deepcopy(settings.XBLOCK_SETTINGS)
        xblock_settings["hastexo"]["gateway_activity_interval"] = seconds
        settings.XBLOCK_SETTINGS = xblock_settings
        conf.clear_cache()

    return set_interval


# --- helpers -------------------------------------------------------------------------------------


def make_stack(keys: Keys, lab: LabServer, name: str = "stack-a", learner: str = "learner-a", **fields: Any) -> Stack:
    values: dict[str, Any] = {
        "name": name,
        "course_id": "course-v1:hastexo+gateway+test",
        "anonymous_user_id": learner,
        "status": states.CREATE_COMPLETE,
        "ip": "127.0.0.1",
        "ssh_port": lab.port,
        "ssh_user": getpass.getuser(),
        "private_key": keys.client_private,
        "host_key": Keys.public_line(keys.host),
    }
    values.update(fields)
    return Stack.objects.create(**values)


def ticket_for(stack: Stack, **overrides: Any) -> str:
    values: dict[str, Any] = {
        "stack_id": stack.pk,
        "stack_name": stack.name,
        "learner": stack.anonymous_user_id,
        "protocol": "ssh",
        "port": None,
        "read_only": False,
    }
    values.update(overrides)
    return tickets.mint(conf.get_settings().ticket_secret, **values)


class Terminal:
    """The browser side: collects output bytes and JSON text messages."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.output = bytearray()
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None

    async def _receive_one(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out; output so far: {bytes(self.output)[-500:]!r}, messages {self.messages}")
        try:
            message = await asyncio.wait_for(self.ws.recv(), remaining)
        except TimeoutError:
            raise AssertionError(
                f"timed out; output so far: {bytes(self.output)[-500:]!r}, messages {self.messages}"
            ) from None
        if isinstance(message, bytes):
            self.output += message
        else:
            self.messages.append(json.loads(message))

    async def expect_output(self, pattern: bytes, timeout: float = 10, start: int = 0) -> re.Match[bytes]:
        """Wait until the output (from offset ``start``) matches the regex ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.compile(pattern).search(bytes(self.output), start)
            if match:
                return match
            await self._receive_one(deadline)

    async def expect_message(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for message in self.messages[seen:]:
                if predicate(message):
                    return message
            seen = len(self.messages)
            await self._receive_one(deadline)

    async def expect_close(self, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        try:
            while True:
                await self._receive_one(deadline)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "the gateway did not send a close frame"
            self.close_code = closed.rcvd.code
            return closed.rcvd.code

    async def type(self, text: str) -> None:
        await self.ws.send(text.encode())

    async def control(self, payload: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(payload))

    async def sync(self) -> None:
        """Round-trip a ping: everything sent before has been processed by the gateway."""
        await self.control({"type": "ping"})
        await self.expect_message(lambda m: m == {"type": "pong"})
        self.messages.remove({"type": "pong"})


async def open_terminal(gateway: Gateway, token: str, *, expect: str = "connected") -> Terminal:
    ws = await connect(f"{gateway.ws_base}?ticket={token}", open_timeout=10, max_size=None)
    terminal = Terminal(ws)
    await terminal._receive_one(time.monotonic() + 10)
    assert terminal.messages[0] == {"type": "status", "status": "connecting"}
    if expect == "connected":
        await terminal.expect_message(lambda m: m.get("type") in ("status", "error") and m != terminal.messages[0])
        assert terminal.messages[-1] == {"type": "status", "status": "connected"}, terminal.messages
    return terminal


async def expect_rejected(gateway: Gateway, token: str) -> int:
    """Connect and return the HTTP status of the refused handshake."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{gateway.ws_base}?ticket={token}", open_timeout=10):
            pass
    return refused.value.response.status_code


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# --- tests ----------------------------------------------------------------------------------------


def test_shell_round_trip_and_exit(gateway: Gateway, lab: LabServer, keys: Keys) -> None:
    stack = make_stack(keys, lab)

    async def scenario() -> None:
        term = await open_terminal(gateway, ticket_for(stack))
        await term.expect_output(re.escape(PROMPT))
        await term.type("echo $((6*7))\r")
        await term.expect_output(rb"[\r\n]42\r\n")
        await term.type("exit\r")
        await term.expect_message(lambda m: m == {"type": "status", "status": "closed"})
        assert await term.expect_close() == 1000

    asyncio.run(scenario())
    wait_for(lambda: lab.active == 0)


def test_resize_and_disconnect_closes_ssh(gateway: Gateway, lab: LabServer, keys: Keys) -> None:
    stack = make_stack(keys, lab)

    async def scenario() -> None:
        ws = await connect(f"{gateway.ws_base}?ticket={ticket_for(stack)}", open_timeout=10)
        # Sent at once, as the browser does on open: becomes the PTY's initial size.
        await ws.send(json.dumps({"type": "resize", "cols": 100, "rows": 30}))
        term = Terminal(ws)
        await term.expect_message(lambda m: m == {"type": "status", "status": "connected"})
        await term.expect_output(re.escape(PROMPT))
        mark = len(term.output)
        await term.type("stty size\r")
        await term.expect_output(rb"[\r\n]30 100\r\n", start=mark)

        # Out-of-bounds sizes are clamped to 1..1000.
        await term.control({"type": "resize", "cols": 0, "rows": 5000})
        await term.sync()
        mark = len(term.output)
        await term.type("stty size\r")
        await term.expect_output(rb"[\r\n]1000 1\r\n", start=mark)
        await term.control({"type": "resize", "cols": 123, "rows": 45})
        await term.sync()
        mark = len(term.output)
        await term.type("stty size\r")
        await term.expect_output(rb"[\r\n]45 123\r\n", start=mark)
        assert lab.active == 1
        await ws.close()

    asyncio.run(scenario())
    # The browser left: the gateway closed the SSH channel, so the lab's shell ended.
    wait_for(lambda: lab.active == 0)


BAD_CONTROL_MESSAGES = [
    pytest.param("[" * 100_000, 1009, True, id="100k-brackets"),
    pytest.param("[" * 1000, 1008, True, id="deep-nesting-under-the-size-limit"),
    pytest.param('{"type":"resize","cols":80,"rows":24,"pad":"' + "x" * 2000 + '"}', 1009, True, id="long"),
    pytest.param("not json", 1008, True, id="not-json"),
    pytest.param("[1,2]", 1008, True, id="a-list"),
    pytest.param("null", 1008, True, id="null"),
    pytest.param('{"type":"nope"}', 1008, True, id="unknown-type"),
    pytest.param('{"type":["ping"]}', 1008, True, id="list-type"),
    pytest.param('{"type":"resize","cols":"80","rows":24}', 1008, True, id="string-size"),
    pytest.param('{"type":"resize","cols":80.5,"rows":24}', 1008, True, id="float-size"),
    pytest.param('{"type":"resize","cols":true,"rows":24}', 1008, True, id="bool-size"),
    pytest.param('{"type":"resize","cols":NaN,"rows":24}', 1008, True, id="nan"),
    pytest.param('{"type":"resize","cols":1e309,"rows":24}', 1008, True, id="infinity"),
    pytest.param('{"type":"resize","cols":80}', 1008, True, id="missing-field"),
    pytest.param('{"type":"ping","extra":1}', 1008, True, id="extra-field"),
    pytest.param('{"type":"ping","type":"ping"}', 1008, True, id="duplicate-key"),
    # Larger than the server's websocket message limit: uvicorn itself refuses it.
    pytest.param(b"x" * (1024 * 1024 + 1), 1009, False, id="input-over-1MiB"),
]


@pytest.mark.parametrize(("junk", "code", "told"), BAD_CONTROL_MESSAGES)
def test_bad_messages_close_with_a_documented_code(
    gateway: Gateway, lab: LabServer, keys: Keys, junk: str | bytes, code: int, told: bool
) -> None:
    """Every malformed message ends that session with its protocol close code, never a crashed task."""
    from hastexo_xblock.gateway.protocol import ACTIONS

    assert ACTIONS[code] == "give_up"  # documented, and the browser will not repeat it
    stack = make_stack(keys, lab)
    other = make_stack(keys, lab, name="stack-b", learner="learner-b")

    async def scenario() -> None:
        bystander = await open_terminal(gateway, ticket_for(other))
        term = await open_terminal(gateway, ticket_for(stack))
        await term.expect_output(re.escape(PROMPT))
        await term.ws.send(junk)
        assert await term.expect_close() == code
        if told:
            assert term.messages[-1] == {
                "type": "error",
                "message": "The browser sent a message the gateway does not understand.",
            }
        # Another session of the same gateway is untouched.
        await bystander.expect_output(re.escape(PROMPT))
        await bystander.type("echo $((6*7))\r")
        await bystander.expect_output(rb"[\r\n]42\r\n")
        await bystander.ws.close()

    asyncio.run(scenario())
    # Both shells are gone again: the bad session's SSH channel was closed too.
    wait_for(lambda: lab.active == 0)
    assert tracker.session_count == 0


def test_lost_connection_is_an_error(gateway: Gateway, lab: LabServer, keys: Keys) -> None:
    stack = make_stack(keys, lab)

    async def scenario() -> None:
        term = await open_terminal(gateway, ticket_for(stack))
        await term.expect_output(re.escape(PROMPT))
        # The lab drops the TCP connection without a goodbye (crash, network cut).
        lab.loop.call_soon_threadsafe(lab.open_connections[-1].abort)
        assert await term.expect_close() == 1011
        assert term.messages[-1] == {"type": "error", "message": "Could not connect to the lab."}

    asyncio.run(scenario())
    wait_for(lambda: lab.active == 0)


@pytest.mark.db  # database behaviour: runs again on every database (make test-databases)
def test_bad_tickets_are_refused_before_ssh(
    gateway: Gateway, lab: LabServer, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hastexo_xblock")
    # uvicorn logs every websocket handshake with its query string on "uvicorn.error" (which
    # does not propagate to the root logger): listen there too, to see the gateway's redaction.
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_level = uvicorn_log.level
    uvicorn_log.setLevel(logging.INFO)
    uvicorn_log.addHandler(caplog.handler)
    stack = make_stack(keys, lab)
    other = make_stack(keys, lab, name="stack-b", learner="learner-b")
    secret = conf.get_settings().ticket_secret

    good = ticket_for(stack)
    body, signature = good.split(".")
    tampered = f"{body}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    expired = tickets.mint(
        secret,
        stack_id=stack.pk,
        stack_name=stack.name,
        learner=stack.anonymous_user_id,
        protocol="ssh",
        port=None,
        read_only=False,
        now=time.time() - 120,
    )
    # A valid ticket for stack-b's id but learner-a's identity, and one naming the wrong stack.
    wrong_learner = ticket_for(other, learner=stack.anonymous_user_id)
    wrong_name = ticket_for(other, stack_name=stack.name)

    async def scenario() -> None:
        # Reused: the first use works, the second is refused.
        term = await open_terminal(gateway, good)
        await term.ws.close()
        wait_for(lambda: lab.active == 0)

        connections, sessions = lab.connections, lab.sessions
        for token in (tampered, expired, good, wrong_learner, wrong_name, "", "garbage"):
            assert await expect_rejected(gateway, token) == 403
        assert (lab.connections, lab.sessions) == (connections, sessions), "an SSH connection was opened"

    try:
        asyncio.run(scenario())
    finally:
        uvicorn_log.removeHandler(caplog.handler)
        uvicorn_log.setLevel(uvicorn_level)
    # Only the server side's log: the test's own websockets client logs its request line.
    server_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("hastexo_xblock", "uvicorn")))
    for reason in ("bad ticket signature", "ticket expired", "ticket already used", "does not match stack"):
        assert reason in server_log
    assert "ticket=<redacted>" in server_log
    for token in (good, tampered, expired, wrong_learner):
        assert token.split(".")[1] not in server_log


def test_lab_not_running_and_unsupported_protocol(gateway: Gateway, lab: LabServer, keys: Keys) -> None:
    suspended = make_stack(keys, lab, status=states.SUSPEND_COMPLETE)
    running = make_stack(keys, lab, name="stack-b", learner="learner-b")

    async def scenario() -> None:
        connections = lab.connections
        for token, code, text in (
            (ticket_for(suspended), 4004, "The lab is not running."),
            (ticket_for(running, protocol="telnet", port=5900), 4400, "protocol not supported yet"),
        ):
            async with connect(f"{gateway.ws_base}?ticket={token}", open_timeout=10) as ws:
                term = Terminal(ws)
                assert await term.expect_close() == code
                assert term.messages == [{"type": "error", "message": text}]
        assert lab.connections == connections

    asyncio.run(scenario())


def test_read_only_drops_input_but_streams_output(gateway: Gateway, lab: LabServer, keys: Keys, tmp_path: Any) -> None:
    stack = make_stack(keys, lab)
    target = tmp_path / f"touched-{uuid.uuid4().hex}"

    async def scenario() -> None:
        viewer = await open_terminal(gateway, ticket_for(stack, read_only=True))
        await viewer.expect_output(re.escape(PROMPT))  # output streams
        await viewer.type(f"touch {target}\r")
        await viewer.control({"type": "resize", "cols": 90, "rows": 20})  # resize is still honoured
        await viewer.sync()
        await asyncio.sleep(0.5)
        assert not target.exists()
        assert b"touch" not in viewer.output  # not even echoed: it never reached the shell
        assert stack.pk not in tracker.pending  # and it is not activity
        await viewer.ws.close()

        # Control: the same input through a normal ticket does reach the shell.
        learner = await open_terminal(gateway, ticket_for(stack))
        await learner.expect_output(re.escape(PROMPT))
        await learner.type(f"touch {target}; echo done-$((1+1))\r")
        await learner.expect_output(rb"done-2")
        assert target.exists()
        await learner.ws.close()

    asyncio.run(scenario())


def test_host_key_pinning(gateway: Gateway, lab: LabServer, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    impostor = make_stack(keys, lab, host_key=Keys.public_line(keys.other_host))
    unpinned = make_stack(keys, lab, name="stack-b", learner="learner-b", host_key="")

    async def scenario() -> None:
        sessions = lab.sessions
        term = await open_terminal(gateway, ticket_for(impostor), expect="")
        assert await term.expect_close() == 4011  # IDENTITY_CHANGED: the browser does not retry
        assert term.messages[-1] == {
            "type": "error",
            "message": "The lab's identity has changed; the connection was refused.",
        }

        connections = lab.connections
        term = await open_terminal(gateway, ticket_for(unpinned), expect="")
        assert await term.expect_close() == 4011  # IDENTITY_CHANGED: the browser does not retry
        assert term.messages[-1] == {"type": "error", "message": "Could not connect to the lab."}
        assert lab.connections == connections, "connected to a lab without a pinned host key"
        assert lab.sessions == sessions

    asyncio.run(scenario())
    mismatch = [r for r in caplog.records if r.levelno == logging.ERROR and "host key mismatch" in r.getMessage()]
    assert mismatch, "a host key mismatch must be logged at ERROR"
    assert keys.client_private not in caplog.text


def ports_spec(*servers: LabServer) -> dict[str, Any]:
    """A ``Stack.spec`` offering each server's port, as authors configure ``ports``."""
    return {"ports": [{"name": f"Endpoint {i}", "number": server.port} for i, server in enumerate(servers, 1)]}


def test_ticket_port_selects_that_ssh_endpoint(
    gateway: Gateway, lab: LabServer, second_lab: LabServer, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hastexo_xblock")
    stack = make_stack(keys, lab, spec=ports_spec(lab, second_lab))

    async def scenario() -> None:
        main_connections, second_sessions = lab.connections, second_lab.sessions
        term = await open_terminal(gateway, ticket_for(stack, port=second_lab.port))
        await term.expect_output(re.escape(SECOND_BANNER))
        await term.expect_output(re.escape(PROMPT))
        await term.type("echo $((6*7))\r")
        await term.expect_output(rb"[\r\n]42\r\n")
        assert MAIN_BANNER not in term.output
        assert (second_lab.sessions, second_lab.active) == (second_sessions + 1, 1)
        assert lab.connections == main_connections, "connected to the default endpoint as well"
        await term.type("exit\r")
        assert await term.expect_close() == 1000

    asyncio.run(scenario())
    wait_for(lambda: second_lab.active == 0)
    assert f"terminal session open on port {second_lab.port}" in caplog.text


def test_no_port_uses_the_default_endpoint(gateway: Gateway, lab: LabServer, second_lab: LabServer, keys: Keys) -> None:
    stack = make_stack(keys, lab, spec=ports_spec(lab, second_lab))

    async def scenario() -> None:
        second_connections = second_lab.connections
        # No port, and the default endpoint's own port chosen explicitly: both reach ssh_port.
        for token in (ticket_for(stack), ticket_for(stack, port=lab.port)):
            term = await open_terminal(gateway, token)
            await term.expect_output(re.escape(MAIN_BANNER))
            await term.expect_output(re.escape(PROMPT))
            assert SECOND_BANNER not in term.output
            await term.ws.close()
            wait_for(lambda: lab.active == 0)
        assert second_lab.connections == second_connections

    asyncio.run(scenario())


def test_port_not_offered_is_refused(
    gateway: Gateway, lab: LabServer, second_lab: LabServer, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hastexo_xblock")
    # The lab offers only its default endpoint now; no ports at all; a malformed list.
    narrowed = make_stack(keys, lab, spec=ports_spec(lab))
    portless = make_stack(keys, lab, name="stack-b", learner="learner-b")
    malformed = make_stack(keys, lab, name="stack-c", learner="learner-c", spec={"ports": "22"})
    tokens = [
        ticket_for(narrowed, port=second_lab.port),
        ticket_for(portless, port=second_lab.port),
        ticket_for(malformed, port=second_lab.port),
    ]

    async def scenario() -> None:
        counts = (lab.connections, second_lab.connections)
        for token in tokens:
            async with connect(f"{gateway.ws_base}?ticket={token}", open_timeout=10) as ws:
                term = Terminal(ws)
                assert await term.expect_close() == 4403
                assert term.messages == [{"type": "error", "message": "That port is not available for this lab."}]
        assert (lab.connections, second_lab.connections) == counts, "an SSH connection was attempted"

    asyncio.run(scenario())
    refusals = [
        r for r in caplog.records if r.levelno == logging.INFO and "is not offered by the lab" in r.getMessage()
    ]
    assert len(refusals) == 3
    for token in tokens:
        assert token.split(".")[1] not in caplog.text
    assert keys.client_private not in caplog.text


def test_other_endpoint_must_present_the_pinned_host_key(
    gateway: Gateway, lab: LabServer, impostor_lab: LabServer, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    stack = make_stack(keys, lab, spec=ports_spec(lab, impostor_lab))

    async def scenario() -> None:
        term = await open_terminal(gateway, ticket_for(stack, port=impostor_lab.port), expect="")
        assert await term.expect_close() == 4011
        assert term.messages[-1] == {
            "type": "error",
            "message": "The lab's identity has changed; the connection was refused.",
        }
        assert IMPOSTOR_BANNER not in term.output
        assert impostor_lab.sessions == 0

    asyncio.run(scenario())
    mismatch = [r for r in caplog.records if r.levelno == logging.ERROR and "host key mismatch" in r.getMessage()]
    assert mismatch and str(impostor_lab.port) in mismatch[-1].getMessage()


def test_port_allowed_and_target(keys: Keys) -> None:
    from hastexo_xblock.gateway.terminal import SSHTarget

    stack = Stack(
        ip="10.0.0.5",
        ssh_port=22,
        ssh_user="training",
        private_key=keys.client_private,
        host_key=Keys.public_line(keys.host),
        spec={"ports": [{"name": "Lab host", "number": 22}, {"name": "Second SSH", "number": "2222"}, {"name": "x"}]},
    )
    assert fields.offered_ports(stack.spec["ports"]) == {22, 2222}
    assert asgi.port_allowed(stack, None)
    assert asgi.port_allowed(stack, 2222)
    for port in (2223, True, "2222"):
        assert not asgi.port_allowed(stack, port)  # type: ignore[arg-type]
    assert not asgi.port_allowed(Stack(spec={}), 22) and asgi.port_allowed(Stack(spec={}), None)
    assert not asgi.port_allowed(Stack(spec={"ports": None}), 22)

    default, second = SSHTarget.from_stack(stack), SSHTarget.from_stack(stack, port=2222)
    assert (default.host, default.port) == ("10.0.0.5", 22)
    assert (second.host, second.port) == ("10.0.0.5", 2222)
    # Same user, key and pinned host key: only the port differs.
    for name in ("username", "private_key", "host_key"):
        assert getattr(second, name) == getattr(default, name)


def test_session_closes_when_stack_goes_down(
    gateway: Gateway, lab: LabServer, keys: Keys, activity_interval: Callable[[int], None]
) -> None:
    activity_interval(1)
    suspended = make_stack(keys, lab)
    deleted = make_stack(keys, lab, name="stack-b", learner="learner-b")

    async def scenario() -> None:
        first = await open_terminal(gateway, ticket_for(suspended))
        second = await open_terminal(gateway, ticket_for(deleted))
        await first.expect_output(re.escape(PROMPT))
        await second.expect_output(re.escape(PROMPT))
        await asyncio.to_thread(lambda: Stack.objects.filter(pk=suspended.pk).update(status=states.SUSPEND_COMPLETE))
        await asyncio.to_thread(lambda: Stack.objects.filter(pk=deleted.pk).delete())
        started = time.monotonic()
        assert await first.expect_close(timeout=5) == 4010
        assert await second.expect_close(timeout=5) == 4010
        assert time.monotonic() - started < 4
        assert {"type": "status", "status": "suspended"} in first.messages
        assert {"type": "status", "status": "deleted"} in second.messages

    asyncio.run(scenario())
    wait_for(lambda: lab.active == 0)


def test_the_activity_interval_stays_ahead_of_the_shortest_suspend_timeout() -> None:
    assert effective_interval(30, []) == 30
    assert effective_interval(30, [20]) == 5  # suspend_timeout 20: written every 5 s
    assert effective_interval(30, [120, 20, 0]) == 5
    assert effective_interval(3, [3600]) == 3  # a shorter configured interval is kept
    assert effective_interval(30, [2]) == 1  # never below a second


def test_a_learner_who_types_is_never_suspended(
    gateway: Gateway, lab: LabServer, keys: Keys, activity_interval: Callable[[int], None]
) -> None:
    """Typing every 5 s with ``suspend_timeout`` 20 (here scaled by 1/5: every 1 s with 4 s), interval 30.

    The suspender job runs four times a second all along; with the write
    interval at 30 s the learner would be suspended 4 s after the launch.
    """
    activity_interval(30)
    stack = make_stack(keys, lab, suspend_timeout=4, suspend_by=timezone.now() + timedelta(seconds=4))
    claimed: list[Any] = []

    async def scenario() -> None:
        term = await open_terminal(gateway, ticket_for(stack))
        await term.expect_output(re.escape(PROMPT))
        started = time.monotonic()
        next_key = started
        while time.monotonic() - started < 12:
            if time.monotonic() >= next_key:
                await term.type("x")
                next_key += 1.0
            await asyncio.to_thread(jobs.run_suspender, lambda *args: claimed.append(args))
            assert await asyncio.to_thread(lambda: Stack.objects.get(pk=stack.pk).status) == states.CREATE_COMPLETE
            await asyncio.sleep(0.25)
        await term.ws.close()

    asyncio.run(scenario())
    assert claimed == []
    wait_for(lambda: lab.active == 0)


class _CountStackUpdates:
    """Count ``UPDATE "hastexo_xblock_stack"`` statements on every new connection, in any thread."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self._lock = threading.Lock()

    def _wrapper(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.lstrip().upper().startswith("UPDATE") and "hastexo_xblock_stack" in sql:
            with self._lock:
                self.statements.append(sql)
        return execute(sql, params, many, context)

    def _on_connect(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        connection.execute_wrappers.append(self._wrapper)

    def __enter__(self) -> _CountStackUpdates:
        # The flush runs in a worker thread that opens a fresh connection per call (CONN_MAX_AGE=0).
        connection_created.connect(self._on_connect)
        return self

    def __exit__(self, *exc: object) -> None:
        connection_created.disconnect(self._on_connect)


@pytest.mark.db  # database behaviour: runs again on every database (make test-databases)
def test_typing_pushes_suspend_by_in_one_batched_update(
    gateway: Gateway, lab: LabServer, keys: Keys, activity_interval: Callable[[int], None]
) -> None:
    activity_interval(3600)  # no periodic flush during the test: we trigger it
    long_ago = timezone.now() - timedelta(hours=1)
    first = make_stack(keys, lab, suspend_by=long_ago)
    second = make_stack(keys, lab, name="stack-b", learner="learner-b", suspend_by=long_ago)
    timeout = conf.get_settings()["suspend_timeout"]

    async def scenario() -> Any:
        terms = [await open_terminal(gateway, ticket_for(stack)) for stack in (first, second)]
        for term in terms:
            await term.expect_output(re.escape(PROMPT))
        gateway.call(tracker.flush(purge=False))  # start from a clean slate
        for term in terms:
            for key in "echo hi":  # one frame per keystroke, as xterm.js sends them
                await term.type(key)
        for term in terms:
            await term.sync()
        assert {first.pk, second.pk} <= tracker.pending

        with _CountStackUpdates() as counter:
            before = timezone.now()
            updated = gateway.call(tracker.flush(purge=False))
        assert updated == 2
        assert len(counter.statements) == 1, counter.statements
        for term in terms:
            await term.ws.close()
        return before

    before = asyncio.run(scenario())
    for stack in (first, second):
        stack.refresh_from_db()
        # Moved from an hour ago to now + the suspend timeout.
        assert (
            before + timedelta(seconds=timeout - 5) <= stack.suspend_by <= timezone.now() + timedelta(seconds=timeout)
        )
    wait_for(lambda: lab.active == 0)


@pytest.mark.db  # database behaviour: runs again on every database (make test-databases)
def test_flush_groups_by_timeout_skips_down_stacks_and_purges(keys: Keys, lab: LabServer) -> None:
    long_ago = timezone.now() - timedelta(hours=1)
    a = make_stack(keys, lab, name="a", learner="a", suspend_by=long_ago)
    b = make_stack(keys, lab, name="b", learner="b", suspend_by=long_ago)
    c = make_stack(keys, lab, name="c", learner="c", suspend_by=long_ago, suspend_timeout=600)
    down = make_stack(keys, lab, name="d", learner="d", suspend_by=long_ago, status=states.SUSPEND_COMPLETE)
    UsedTicket.objects.create(ticket_id="old", expires_at=timezone.now() - timedelta(hours=1))
    UsedTicket.objects.create(ticket_id="fresh", expires_at=timezone.now() + timedelta(seconds=30))
    local = ActivityTracker()
    closed: list[str] = []

    async def scenario() -> int:
        for stack in (a, b, c, down):
            local.record(stack.pk, stack.suspend_timeout or 120)
        local.register(down.pk, closed.append)
        local.register(a.pk, closed.append)
        return await local.flush(purge=True)

    with _CountStackUpdates() as counter:
        assert asyncio.run(scenario()) == 3
    assert len(counter.statements) == 2  # one per distinct timeout
    for stack, seconds in ((a, 120), (b, 120), (c, 600)):
        stack.refresh_from_db()
        assert abs((stack.suspend_by - timezone.now()).total_seconds() - seconds) < 10
    down.refresh_from_db()
    assert down.suspend_by == long_ago  # a suspended lab is not made "active" again
    assert closed == ["suspended"]
    assert list(UsedTicket.objects.values_list("ticket_id", flat=True)) == ["fresh"]
    connections.close_all()


def test_healthz_and_unknown_paths(gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{gateway.port}"
    for path in ("/healthz", "/hastexo-gateway/healthz"):
        with urllib.request.urlopen(base + path, timeout=5) as response:
            assert response.status == 200
            assert response.read() == b"ok"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(base + "/nope", timeout=5)
    assert missing.value.code == 404
    missing.value.close()

    async def scenario() -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{gateway.port}/elsewhere?ticket=x", open_timeout=5):
                pass
        assert refused.value.response.status_code == 404

    asyncio.run(scenario())


def test_ticket_redaction_filter() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("1.2.3.4", "/ws?ticket=abc.def&x=1"),
        None,
    )
    asgi.RedactTickets().filter(record)
    assert "abc.def" not in record.getMessage()
    assert "ticket=<redacted>&x=1" in record.getMessage()


def test_pinned_host_key_parsing(keys: Keys) -> None:
    from hastexo_xblock.gateway.terminal import pinned_host_keys

    line = Keys.public_line(keys.host)
    assert pinned_host_keys(line) == [keys.host.convert_to_public()]
    assert pinned_host_keys(f"{line} root@lab") == [keys.host.convert_to_public()]
    assert pinned_host_keys(f"[127.0.0.1]:2222 {line}") == [keys.host.convert_to_public()]
    assert len(pinned_host_keys(f"{line}\n{Keys.public_line(keys.other_host)}\n")) == 2
    for unusable in ("", "   ", "# comment", "ssh-ed25519 not-base64!", "garbage"):
        assert pinned_host_keys(unusable) == []


def test_keystrokes_and_output_keep_their_order_on_both_paths(
    gateway: Gateway, lab: LabServer, keys: Keys, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keystrokes go straight to the lab or through the queue (behind a resize, say); output straight to
    the socket or through the pump (within the frame budget).  Whichever way each takes, nothing overtakes."""
    from hastexo_xblock.gateway.session import TerminalSession

    paths = {"direct": 0, "queued": 0}
    input_nowait, queued_input = TerminalSession._input_nowait, TerminalSession._input

    def counting_nowait(self: TerminalSession, data: bytes) -> bool:
        taken = input_nowait(self, data)
        paths["direct"] += taken
        return taken

    async def counting_input(self: TerminalSession, data: bytes) -> None:
        paths["queued"] += 1
        await queued_input(self, data)

    monkeypatch.setattr(TerminalSession, "_input_nowait", counting_nowait)
    monkeypatch.setattr(TerminalSession, "_input", counting_input)
    stack = make_stack(keys, lab)
    typed_file = tmp_path / f"typed-{uuid.uuid4().hex}"
    keystrokes = [chr(ord("a") + index % 26) for index in range(400)]

    async def scenario() -> None:
        term = await open_terminal(gateway, ticket_for(stack))
        await term.expect_output(re.escape(PROMPT))
        await term.type(f"stty -echo; cat > {typed_file}; stty echo; echo cat-done-$((1+1))\r")
        await asyncio.sleep(0.3)
        for index, key in enumerate(keystrokes):
            await term.type(key)
            if index % 37 == 0:
                await term.control({"type": "resize", "cols": 80 + index % 7, "rows": 24})
        await term.type("\r\x04")
        await term.expect_output(rb"cat-done-2\r\n")

        mark = len(term.output)
        await term.type("seq 1 60000; echo seq-done-$((1+1))\r")
        done = await term.expect_output(rb"seq-done-2\r\n", start=mark, timeout=30)
        # Each number ends a line; the line of "1" may start with bash's bracketed-paste reset.
        numbers = re.findall(rb"(?<![\d-])(\d+)\r\n", bytes(term.output[mark : done.start()]))
        assert [int(n) for n in numbers] == list(range(1, 60001))
        await term.ws.close()

    asyncio.run(scenario())
    assert typed_file.read_text() == "".join(keystrokes) + "\n"
    assert paths["direct"] > 0 and paths["queued"] > 0, paths


@pytest.mark.parametrize("burst", [False, True], ids=["separate-reads", "one-read"])
def test_keystrokes_after_a_protocol_violation_never_reach_the_lab(
    gateway: Gateway, lab: LabServer, keys: Keys, tmp_path: Any, burst: bool
) -> None:
    """Attack: a page breaks the protocol and keeps typing at once, hoping input slips past the close.

    The keystrokes follow the bad message on the same socket, in the same TCP write or just after it;
    whichever way (direct or queued) they would take, the session is over and nothing runs in the lab.
    """
    from websockets.frames import Frame, Opcode

    from hastexo_xblock.gateway.protocol import CloseCode

    stack = make_stack(keys, lab)
    target = tmp_path / f"after-violation-{uuid.uuid4().hex}"

    async def scenario() -> None:
        term = await open_terminal(gateway, ticket_for(stack))
        await term.expect_output(re.escape(PROMPT))
        bad = json.dumps({"type": "resize", "cols": 80})  # a resize without rows: a violation
        typed = f"touch {target}\r".encode()
        if burst:
            protocol = term.ws.protocol
            protocol.send_frame(Frame(Opcode.TEXT, bad.encode()))
            for byte in typed:
                protocol.send_frame(Frame(Opcode.BINARY, bytes([byte])))
            term.ws.transport.write(b"".join(protocol.data_to_send()))
        else:
            await term.ws.send(bad)
            for byte in typed:
                await term.ws.send(bytes([byte]))
        assert await term.expect_close() == CloseCode.INVALID_MESSAGE
        # Control: the same keystrokes through a fresh, well-behaved session do run.
        control = await open_terminal(gateway, ticket_for(stack))
        await control.expect_output(re.escape(PROMPT))
        await control.type("echo after-$((1+1))\r")
        await control.expect_output(rb"after-2\r\n")
        await control.ws.close()

    asyncio.run(scenario())
    wait_for(lambda: lab.active == 0)
    assert not target.exists()
