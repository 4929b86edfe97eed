"""Benchmarks: keystroke echo latency through the websocket gateway vs. direct SSH.

Each test measures a baseline in the same run, against the same in-process lab, and
reports ratios.  The topology is the one of ``test_gateway`` (whose fixtures and helpers
are reused here), every server in its own thread and event loop::

    direct:   asyncssh client ──ssh──▶ asyncssh server ──pty──▶ bash (readline echoes)
    gateway:  websockets client ──ws──▶ uvicorn + gateway.asgi ──ssh──▶ (the same)

The direct client is the gateway's own SSH client (:class:`gateway.terminal.Terminal`,
same key exchange, PTY type and read size), so the difference is the websocket hop and
the ASGI bridge.  One keystroke is one ``x`` sent and the time until bash echoes it back;
after each one a DEL (not measured) rubs it out again, so every measured keystroke does
the same work on a one-character line.

The numbers go to the terminal (run with ``-s``) and to
``$HASTEXO_TEST_OUTPUT/benchmarks/gateway-latency.json``.  The bounds asserted are loose
on purpose: they catch a real regression (a per-frame database query, a poll loop, Nagle)
but not a loaded CI machine.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest
from websockets.asyncio.client import ClientConnection

from hastexo_xblock.gateway.terminal import SSHTarget
from hastexo_xblock.gateway.terminal import Terminal as SSHTerminal

from . import test_gateway
from .test_gateway import (
    PROMPT,
    Gateway,
    Keys,
    LabServer,
    make_stack,
    open_terminal,
    ticket_for,
    wait_for,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    # The same warning filters as the gateway tests (uvicorn's legacy websockets implementation).
    *(mark for mark in test_gateway.pytestmark if mark.name == "filterwarnings"),
]

# The gateway tests' fixtures, used here under the same names (a module-scoped fixture gets its
# own instance in this module: a fresh lab and keys).
gateway = test_gateway.gateway
keys = test_gateway.keys
lab = test_gateway.lab

KEY = b"x"
RUBOUT = b"\x7f"  # DEL: readline answers with a backspace
RUBOUT_ECHO = b"\x08"
#: Seconds one keystroke may take before the benchmark gives up (a hang, not a slow machine).
KEY_TIMEOUT = 10

WARMUP = 20
ROUNDS = 200
SESSIONS = 20
SESSION_WARMUP = 10
SESSION_ROUNDS = 50

# The bounds (ms).  Expected on loopback: ≈0.8–1.4 direct, ≈1.3–1.5 for a plain ASGI bridge.
MAX_GATEWAY_MEDIAN = 15.0
MAX_ADDED_MEDIAN = 10.0
MAX_CONCURRENT_GATEWAY_P95 = 100.0


# --- the two clients, behind one interface ----------------------------------------------------------


class Session(Protocol):
    async def send(self, data: bytes) -> None: ...

    async def recv(self) -> bytes: ...

    async def close(self) -> None: ...


class DirectSession:
    """A shell opened straight on the lab with the gateway's asyncssh client."""

    def __init__(self, terminal: SSHTerminal) -> None:
        self.terminal = terminal

    @classmethod
    async def open(cls, target: SSHTarget) -> DirectSession:
        session = cls(await SSHTerminal.open(target))
        await wait_for_prompt(session)
        return session

    async def send(self, data: bytes) -> None:
        await self.terminal.write(data)

    async def recv(self) -> bytes:
        data = await self.terminal.read()
        if not data:
            raise AssertionError("the SSH session ended")
        return data

    async def close(self) -> None:
        await self.terminal.close()


class GatewaySession:
    """A shell through the gateway, as the browser has it: binary frames both ways."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, gateway: Gateway, token: str) -> GatewaySession:
        terminal = await open_terminal(gateway, token)  # asserts the "connected" status
        await terminal.expect_output(re.escape(PROMPT))
        return cls(terminal.ws)

    async def send(self, data: bytes) -> None:
        await self.ws.send(data)

    async def recv(self) -> bytes:
        while True:
            message = await self.ws.recv()
            if isinstance(message, bytes):
                return message
            # A JSON status/control message: not terminal output.

    async def close(self) -> None:
        await self.ws.close()


async def wait_for_prompt(session: Session) -> None:
    output = b""
    async with asyncio.timeout(KEY_TIMEOUT):
        while PROMPT not in output:
            output += await session.recv()


async def keystroke(session: Session, key: bytes = KEY, echo: bytes = KEY) -> int:
    """Send ``key``; return the nanoseconds until a chunk of output containing ``echo`` arrives."""
    async with asyncio.timeout(KEY_TIMEOUT):
        started = time.perf_counter_ns()
        await session.send(key)
        while echo not in await session.recv():
            pass  # leftovers of the previous echo
        return time.perf_counter_ns() - started


async def type_one(session: Session) -> int:
    """One measured keystroke, then rub it out (not measured) so the line stays the same."""
    elapsed = await keystroke(session)
    await keystroke(session, RUBOUT, RUBOUT_ECHO)
    return elapsed


# --- statistics and the report --------------------------------------------------------------------------


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summary(samples_ns: list[int]) -> dict[str, Any]:
    ms = [sample / 1e6 for sample in samples_ns]
    return {
        "count": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(percentile(ms, 0.95), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
    }


def compare(direct_ns: list[int], gateway_ns: list[int], **details: Any) -> dict[str, Any]:
    direct, through = summary(direct_ns), summary(gateway_ns)
    return {
        **details,
        "direct": direct,
        "gateway": through,
        "ratio_median": round(through["median_ms"] / direct["median_ms"], 2),
        "ratio_p95": round(through["p95_ms"] / direct["p95_ms"], 2),
        "added_median_ms": round(through["median_ms"] - direct["median_ms"], 3),
    }


def table(title: str, result: dict[str, Any]) -> str:
    direct, through = result["direct"], result["gateway"]
    lines = [
        f"\n{title}",
        f"  {'':<22}{'n':>6}{'median ms':>11}{'p95 ms':>9}",
        f"  {'direct SSH':<22}{direct['count']:>6}{direct['median_ms']:>11.2f}{direct['p95_ms']:>9.2f}",
        f"  {'gateway (ws → SSH)':<22}{through['count']:>6}{through['median_ms']:>11.2f}{through['p95_ms']:>9.2f}",
        f"  {'ratio gateway/direct':<22}{'':>6}{result['ratio_median']:>10.2f}x{result['ratio_p95']:>8.2f}x",
        f"  added median: {result['added_median_ms']:.2f} ms",
    ]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """This run's results; every test rewrites the JSON file with all results so far."""
    return {}


@pytest.fixture
def publish(report: dict[str, Any], output_dir: str, capsys: pytest.CaptureFixture[str]) -> Callable[..., None]:
    def write(case: str, title: str, result: dict[str, Any]) -> None:
        report[case] = result
        directory = os.path.join(output_dir, "benchmarks")
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "gateway-latency.json"), "w") as handle:
            json.dump(report, handle, indent=2)
        with capsys.disabled():
            print(table(title, result))

    return write


@pytest.fixture
def quiet_lab(lab: LabServer) -> Iterator[LabServer]:
    """The lab, with every shell the test opened gone again afterwards."""
    yield lab
    wait_for(lambda: lab.active == 0)


# --- the benchmarks ----------------------------------------------------------------------------------------


def test_keystroke_echo_latency(
    gateway: Gateway, quiet_lab: LabServer, keys: Keys, publish: Callable[..., None]
) -> None:
    stack = make_stack(keys, quiet_lab)

    async def scenario() -> tuple[list[int], list[int]]:
        direct = await DirectSession.open(SSHTarget.from_stack(stack))
        through = await GatewaySession.open(gateway, ticket_for(stack))
        try:
            direct_ns: list[int] = []
            gateway_ns: list[int] = []
            # Interleaved, so both see the same machine load over time.
            for index in range(WARMUP + ROUNDS):
                direct_sample = await type_one(direct)
                gateway_sample = await type_one(through)
                if index >= WARMUP:
                    direct_ns.append(direct_sample)
                    gateway_ns.append(gateway_sample)
            return direct_ns, gateway_ns
        finally:
            await direct.close()
            await through.close()

    direct_ns, gateway_ns = asyncio.run(scenario())
    result = compare(direct_ns, gateway_ns, sessions=1, warmup=WARMUP, round_trips=ROUNDS)
    publish("single_session", f"keystroke echo, one session, {ROUNDS} round trips", result)

    assert result["gateway"]["median_ms"] < MAX_GATEWAY_MEDIAN, result
    assert result["added_median_ms"] < MAX_ADDED_MEDIAN, result


def test_keystroke_echo_latency_concurrent_sessions(
    gateway: Gateway, quiet_lab: LabServer, keys: Keys, publish: Callable[..., None]
) -> None:
    stacks = [make_stack(keys, quiet_lab, name=f"bench-{i}", learner=f"learner-{i}") for i in range(SESSIONS)]

    async def typing_together(sessions: list[Session]) -> list[int]:
        """Every session warms up, then all type at once; the latencies of all keystrokes."""
        start = asyncio.Barrier(len(sessions))

        async def typist(session: Session) -> list[int]:
            for _ in range(SESSION_WARMUP):
                await type_one(session)
            await start.wait()
            return [await type_one(session) for _ in range(SESSION_ROUNDS)]

        try:
            per_session = await asyncio.gather(*(typist(session) for session in sessions))
        finally:
            await asyncio.gather(*(session.close() for session in sessions), return_exceptions=True)
        return [sample for samples in per_session for sample in samples]

    async def scenario() -> tuple[list[int], list[int]]:
        direct = await asyncio.gather(*(DirectSession.open(SSHTarget.from_stack(stack)) for stack in stacks))
        direct_ns = await typing_together(list(direct))
        await asyncio.to_thread(wait_for, lambda: quiet_lab.active == 0)
        through = await asyncio.gather(*(GatewaySession.open(gateway, ticket_for(stack)) for stack in stacks))
        gateway_ns = await typing_together(list(through))
        return direct_ns, gateway_ns

    direct_ns, gateway_ns = asyncio.run(scenario())
    result = compare(
        direct_ns, gateway_ns, sessions=SESSIONS, warmup=SESSION_WARMUP, round_trips_per_session=SESSION_ROUNDS
    )
    publish(
        "concurrent_sessions",
        f"keystroke echo, {SESSIONS} sessions typing at once, {SESSION_ROUNDS} round trips each",
        result,
    )

    assert result["gateway"]["p95_ms"] < MAX_CONCURRENT_GATEWAY_P95, result
