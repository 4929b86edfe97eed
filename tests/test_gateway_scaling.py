"""The gateway as several processes: replicas behind a load balancer, and ``--workers``.

Nothing is shared in memory between gateway processes, so what must hold across
them is checked against real ones on the test database.  Two replicas (two
``python -m hastexo_xblock.gateway`` processes on their own ports, as behind a
load balancer) make it deterministic which process each attempt reaches: a
ticket presented to both at once opens exactly one session, and activity from
either is written.  ``--workers 2`` is checked to start two workers that serve.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from websockets.exceptions import InvalidStatus

from hastexo_xblock import conf
from hastexo_xblock.models import Stack

from . import test_gateway
from .gatewaybench.rig import GatewayServer, gateway_env
from .test_gateway import PROMPT, Gateway, LabServer, make_stack, open_terminal, ticket_for, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

keys = test_gateway.keys
lab = test_gateway.lab


def _start(tmp_path: Any, workers: int = 1) -> GatewayServer:
    env = gateway_env(connection.settings_dict["NAME"])
    # A short activity interval, so the batched writes show within the test.
    env["HASTEXO_TEST_SETTINGS_JSON"] = '{"gateway_activity_interval": 1}'
    return GatewayServer(str(tmp_path), env, workers=workers)


@pytest.fixture
def replicas(transactional_db: None, tmp_path: Any) -> Iterator[list[Gateway]]:
    servers: list[GatewayServer] = []
    try:
        for _ in range(2):
            servers.append(_start(tmp_path))
        # The test helpers' view of a gateway (the loop is only used for in-process ones).
        yield [Gateway(server.port, None) for server in servers]  # type: ignore[arg-type]
    finally:
        for server in servers:
            server.stop()


async def _attempt(gateway: Gateway, token: str) -> Any:
    try:
        return await open_terminal(gateway, token)
    except InvalidStatus as refused:
        return refused.response.status_code


@pytest.mark.db  # database behaviour: runs again on every database (make test-databases)
def test_a_ticket_opens_one_session_across_replicas(replicas: list[Gateway], lab: LabServer, keys: Any) -> None:
    stacks = [make_stack(keys, lab, name=f"scale-{i}", learner=f"learner-{i}") for i in range(10)]

    async def scenario() -> None:
        opened = []
        for stack in stacks:
            token = ticket_for(stack)
            # The same ticket at both replicas at once: they race on the database.
            results = await asyncio.gather(*(_attempt(gateway, token) for gateway in replicas))
            sessions = [r for r in results if not isinstance(r, int)]
            assert len(sessions) == 1 and [r for r in results if isinstance(r, int)] == [403], results
            opened += sessions
            # And afterwards at either: refused.
            for gateway in replicas:
                assert await _attempt(gateway, token) == 403
        for term in opened:
            await term.expect_output(re.escape(PROMPT))
            await term.ws.close()

    asyncio.run(scenario())
    wait_for(lambda: lab.active == 0)


@pytest.mark.db  # database behaviour: runs again on every database (make test-databases)
def test_activity_from_every_replica_is_written(replicas: list[Gateway], lab: LabServer, keys: Any) -> None:
    long_ago = timezone.now() - timedelta(hours=1)
    stacks = [make_stack(keys, lab, name=f"act-{i}", learner=f"act-{i}", suspend_by=long_ago) for i in range(6)]
    timeout = conf.get_settings()["suspend_timeout"]

    async def scenario() -> None:
        terms = await asyncio.gather(
            *(open_terminal(replicas[i % 2], ticket_for(stack)) for i, stack in enumerate(stacks))
        )
        for term in terms:
            await term.expect_output(re.escape(PROMPT))
            await term.type("x")
        ids = [stack.pk for stack in stacks]
        deadline = time.monotonic() + 10
        while True:
            moved = await asyncio.to_thread(lambda: Stack.objects.filter(pk__in=ids, suspend_by__gt=long_ago).count())
            if moved == len(stacks) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert moved == len(stacks)
        for term in terms:
            await term.ws.close()

    asyncio.run(scenario())
    for stack in stacks:
        stack.refresh_from_db()
        assert abs((stack.suspend_by - timezone.now()).total_seconds() - timeout) < 15
    wait_for(lambda: lab.active == 0)


def test_workers_option_runs_that_many_serving_processes(
    transactional_db: None, tmp_path: Any, lab: LabServer, keys: Any
) -> None:
    server = _start(tmp_path, workers=2)
    try:
        wait_for(lambda: len(server.processes()) == 2, timeout=30)
        gateway = Gateway(server.port, None)  # type: ignore[arg-type]
        stacks = [make_stack(keys, lab, name=f"w-{i}", learner=f"w-{i}") for i in range(6)]

        async def scenario() -> None:
            terms = await asyncio.gather(*(open_terminal(gateway, ticket_for(stack)) for stack in stacks))
            for term in terms:
                await term.type("echo $((6*7))\r")
                await term.expect_output(rb"[\r\n]42\r\n")
                await term.ws.close()

        asyncio.run(scenario())
    finally:
        server.stop()
    wait_for(lambda: lab.active == 0)
