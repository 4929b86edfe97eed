"""The gateway as several processes: ``python -m hastexo_xblock.gateway --workers 2``.

Nothing is shared in memory between the workers, so what must hold across them
is checked against a real two-worker gateway on the test database: a ticket
opens exactly one session whichever worker each attempt reaches, both workers
take sessions, and activity from either worker reaches the database in batches.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psutil
import pytest
from django.db import connection
from django.utils import timezone
from websockets.exceptions import InvalidStatus

from hastexo_xblock import conf
from hastexo_xblock.models import Stack

from . import test_gateway
from .gatewaybench.rig import GatewayServer, gateway_env
from .test_gateway import PROMPT, Gateway, LabServer, make_stack, open_terminal, ticket_for, wait_for

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

keys = test_gateway.keys
lab = test_gateway.lab
WORKERS = 2


@pytest.fixture
def two_workers(transactional_db: None, tmp_path: Any) -> Iterator[GatewayServer]:
    env = gateway_env(connection.settings_dict["NAME"])
    # Short activity interval, so the batched writes can be observed within the test.
    env["HASTEXO_TEST_SETTINGS_JSON"] = '{"gateway_activity_interval": 1}'
    server = GatewayServer(str(tmp_path), env, workers=WORKERS)
    try:
        wait_for(lambda: len(server.processes()) == WORKERS, timeout=30)
        yield server
    finally:
        server.stop()


def _gateway(server: GatewayServer) -> Gateway:
    """The test helpers' view of a gateway (its loop is only used for in-process gateways)."""
    return Gateway(server.port, None)  # type: ignore[arg-type]


def _lab_connections(process: psutil.Process, lab_port: int) -> int:
    return sum(1 for c in process.net_connections("tcp") if c.raddr and c.raddr.port == lab_port)


def test_tickets_are_single_use_across_workers(two_workers: GatewayServer, lab: LabServer, keys: Any) -> None:
    gateway = _gateway(two_workers)
    stacks = [make_stack(keys, lab, name=f"scale-{i}", learner=f"learner-{i}") for i in range(12)]
    tokens = [ticket_for(stack) for stack in stacks]

    async def attempt(token: str) -> Any:
        try:
            return await open_terminal(gateway, token)
        except InvalidStatus as refused:
            return refused.response.status_code

    async def scenario() -> None:
        # Every ticket presented twice at once: the two attempts race, often on different workers.
        results = await asyncio.gather(*(attempt(token) for token in tokens for _ in range(2)))
        opened = [r for r in results if not isinstance(r, int)]
        refused = [r for r in results if isinstance(r, int)]
        assert len(opened) == len(tokens), results
        assert refused == [403] * len(tokens)
        for term in opened:
            await term.expect_output(re.escape(PROMPT))
        # Both workers hold sessions: the single use above held across processes.
        per_worker = [_lab_connections(process, lab.port) for process in two_workers.processes()]
        assert len(per_worker) == WORKERS and all(per_worker), per_worker
        assert sum(per_worker) == len(tokens)
        for term in opened:
            await term.ws.close()

    asyncio.run(scenario())
    wait_for(lambda: lab.active == 0)


def test_activity_from_every_worker_is_written(two_workers: GatewayServer, lab: LabServer, keys: Any) -> None:
    gateway = _gateway(two_workers)
    long_ago = timezone.now() - timedelta(hours=1)
    stacks = [make_stack(keys, lab, name=f"act-{i}", learner=f"act-{i}", suspend_by=long_ago) for i in range(8)]
    timeout = conf.get_settings()["suspend_timeout"]

    async def scenario() -> None:
        terms = await asyncio.gather(*(open_terminal(gateway, ticket_for(stack)) for stack in stacks))
        per_worker = [_lab_connections(process, lab.port) for process in two_workers.processes()]
        assert all(per_worker), per_worker
        for term in terms:
            await term.expect_output(re.escape(PROMPT))
            await term.type("x")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            moved = await asyncio.to_thread(
                lambda: Stack.objects.filter(pk__in=[s.pk for s in stacks], suspend_by__gt=long_ago).count()
            )
            if moved == len(stacks):
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
