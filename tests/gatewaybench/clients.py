"""Sessions of each kind (direct SSH, webssh, the gateway) and what is measured with them.

Every measurement takes open sessions, so opening (SSH handshakes, tickets) is
never part of a figure.  One keystroke is one key sent and the time until its
echo arrives; typists alternate ``x`` and DEL (bash answers a backspace), so
every keystroke does the same work on a one-character line.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect

from hastexo_xblock.gateway.terminal import SSHTarget, Terminal

from .rig import PROMPT

KEYS = ((b"x", b"x"), (b"\x7f", b"\x08"))
#: A keystroke slower than this is a hang, not a slow machine.
KEY_TIMEOUT = 30.0
OPEN_CONCURRENCY = 16


class Session(Protocol):
    async def send(self, data: bytes) -> None: ...

    async def recv(self) -> bytes: ...

    async def close(self) -> None: ...


async def wait_for_text(session: Session, pattern: bytes, timeout: float = 30) -> bytes:
    output = b""
    async with asyncio.timeout(timeout):
        while pattern not in output:
            output += await session.recv()
    return output


class DirectSession:
    """A shell opened straight on sshd with the gateway's own asyncssh client (same ciphers)."""

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal

    @classmethod
    async def open(cls, target: SSHTarget) -> DirectSession:
        session = cls(await Terminal.open(target, size=(80, 24)))
        await wait_for_text(session, PROMPT)
        return session

    async def send(self, data: bytes) -> None:
        await self.terminal.write(data)

    async def recv(self) -> bytes:
        data = await self.terminal.read()
        if not data:
            raise ConnectionError("the SSH session ended")
        return data

    async def close(self) -> None:
        await self.terminal.close()


class WebsocketSession:
    """A browser-like websocket client (offers permessage-deflate, as browsers do)."""

    def __init__(self, ws: ClientConnection, json_input: bool) -> None:
        self.ws = ws
        self.json_input = json_input

    async def send(self, data: bytes) -> None:
        if self.json_input:  # webssh's protocol: {"data": "<text>"}
            await self.ws.send(json.dumps({"data": data.decode("latin-1")}))
        else:
            await self.ws.send(data)

    async def recv(self) -> bytes:
        while True:
            message = await self.ws.recv()
            if isinstance(message, bytes):
                return message

    async def close(self) -> None:
        await self.ws.close()

    @classmethod
    async def open_gateway(cls, url: str, token: str, **options: Any) -> WebsocketSession:
        ws = await connect(f"{url}?ticket={token}", max_size=None, open_timeout=60, ping_interval=None, **options)
        session = cls(ws, json_input=False)
        while True:
            message = await asyncio.wait_for(ws.recv(), 60)
            if isinstance(message, str) and json.loads(message) == {"type": "status", "status": "connected"}:
                break
            if isinstance(message, str) and json.loads(message).get("type") == "error":
                raise ConnectionError(message)
        await wait_for_text(session, PROMPT)
        return session

    @classmethod
    async def open_webssh(cls, port: int, target: SSHTarget, **options: Any) -> WebsocketSession:
        form = urlencode(
            {
                "hostname": target.host,
                "port": str(target.port),
                "username": target.username,
                "privatekey": target.private_key,
                "term": "xterm-256color",
            }
        ).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                + f"Content-Length: {len(form)}\r\nConnection: close\r\n\r\n".encode()
                + form
            )
            response = await asyncio.wait_for(reader.read(), 60)
        finally:
            writer.close()
        body = json.loads(response.split(b"\r\n\r\n", 1)[1])
        if not body.get("id"):
            raise ConnectionError(f"webssh refused: {body.get('status')}")
        ws = await connect(
            f"ws://127.0.0.1:{port}/ws?id={body['id']}", max_size=None, open_timeout=60, ping_interval=None, **options
        )
        session = cls(ws, json_input=True)
        await wait_for_text(session, PROMPT)
        return session


Opener = Callable[[int], Awaitable[Session]]


async def open_many(opener: Opener, count: int) -> list[Session]:
    """``count`` sessions, opened ``OPEN_CONCURRENCY`` at a time (handshakes are CPU-bound)."""
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one(index: int) -> Session:
        async with gate:
            return await opener(index)

    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    sessions = [r for r in results if not isinstance(r, BaseException)]
    if failures:
        await close_all(sessions)
        raise RuntimeError(f"{len(failures)} of {count} sessions failed to open: {failures[0]!r}")
    return sessions  # type: ignore[return-value]


async def close_all(sessions: Sequence[Session]) -> None:
    await asyncio.gather(*(session.close() for session in sessions), return_exceptions=True)


# --- keystroke echo -------------------------------------------------------------------------


async def keystroke(session: Session, key: bytes, echo: bytes) -> int:
    started = time.perf_counter_ns()
    await session.send(key)
    while echo not in await session.recv():
        pass
    return time.perf_counter_ns() - started


async def type_together(sessions: Sequence[Session], *, duration: float, rate: float) -> list[int]:
    """Every session types ``rate`` keys per second for ``duration`` seconds; all echo times (ns).

    Keys are scheduled (a random phase per session, then every 1/rate s); a key
    whose echo is late delays that session's next key, never skips it.
    """
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    start = loop.time() + 0.2
    stop = start + duration
    samples: list[int] = []

    async def typist(session: Session) -> None:
        due = start + random.random() * interval
        index = 0
        while True:
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            if loop.time() >= stop:
                return
            key, echo = KEYS[index % 2]
            async with asyncio.timeout(KEY_TIMEOUT):
                samples.append(await keystroke(session, key, echo))
            index += 1
            due += interval

    # A session that ends on an "x" leaves it on the line; the next run starts with "x" again,
    # so a DEL never meets an empty line (which would ring the bell instead of echoing).
    await asyncio.gather(*(typist(session) for session in sessions))
    return samples


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def latency_summary(samples_ns: Sequence[int]) -> dict[str, float]:
    ms = [sample / 1e6 for sample in samples_ns]
    return {
        "keystrokes": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "max_ms": round(max(ms), 3),
    }


# --- bulk output ----------------------------------------------------------------------------------


@dataclass
class Bulk:
    bytes: int
    seconds: float


async def bulk_output(session: Session, random_bytes: int, marker: str) -> Bulk:
    """Print ``base64`` of ``random_bytes`` random bytes in the lab; bytes received and the time taken."""
    done = f"{marker}-$((40+2))"
    expected = f"{marker}-42".encode()
    command = f"head -c {random_bytes} /dev/urandom | base64; echo {done}\r".encode()
    received = 0
    tail = b""
    started = time.perf_counter()
    await session.send(command)
    async with asyncio.timeout(600):
        while expected not in tail:
            chunk = await session.recv()
            received += len(chunk)
            tail = tail[-32:] + chunk[-64:]
    elapsed = time.perf_counter() - started
    if PROMPT not in tail.split(expected)[-1]:
        await wait_for_text(session, PROMPT)
    return Bulk(received, elapsed)


# --- a reader that stalls -----------------------------------------------------------------------------

_LINE = re.compile(rb"(\d+)\r\n")


async def stalled_reader(
    session: WebsocketSession,
    *,
    lines: int,
    stall: float,
    ping_every: float | None,
    sample_rss: Callable[[], int],
) -> dict[str, Any]:
    """The lab prints ``seq 1 lines`` without pause; the client reads nothing for ``stall`` s
    (sending websocket pings if ``ping_every``), then reads everything and checks no line is lost.

    Returns the server's RSS growth during the stall and whether the output was complete.
    """
    ws = session.ws
    baseline = sample_rss()
    await session.send(f"seq 1 {lines}; echo SEQ-$((40+2))\r".encode())
    peak = baseline
    pings = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + stall
    next_ping = loop.time()
    while loop.time() < end:
        if ping_every is not None and loop.time() >= next_ping:
            await ws.ping()  # the pong is not awaited: the client is not reading
            pings += 1
            next_ping += ping_every
        peak = max(peak, sample_rss())
        await asyncio.sleep(0.25)
    # Read on: everything must arrive, in order.
    output = bytearray()
    async with asyncio.timeout(600):
        while b"SEQ-42" not in output[-64:]:
            output += await session.recv()
            if len(output) > 1 << 20:
                peak = max(peak, sample_rss())
    numbers = [int(match) for match in _LINE.findall(bytes(output))]
    # The first number follows the echoed command line on the same terminal line: skip to 1.
    start = numbers.index(1) if 1 in numbers else 0
    sequence = numbers[start : start + lines]
    complete = sequence == list(range(1, lines + 1))
    return {
        "lines": lines,
        "bytes_after_stall": len(output),
        "stall_s": stall,
        "pings_sent": pings,
        "rss_growth_mb": round((peak - baseline) / 1e6, 2),
        "complete": complete,
        "connection_open": ws.close_code is None,
    }
