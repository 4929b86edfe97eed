"""Shared fixtures: settings overrides, a real in-process SSH server, fake providers."""

from __future__ import annotations

import asyncio
import copy
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import asyncssh
import pytest

from hastexo_xblock import conf
from hastexo_xblock.providers import register_type, reset_instances

from .fakes import FakeProvider, SlowFileProvider

register_type("fake", FakeProvider)
register_type("slowfile", SlowFileProvider)

OUTPUT_DIR = os.path.abspath(os.environ.get("HASTEXO_TEST_OUTPUT", "test-output"))


class _NoAuthServer(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True  # require auth: nobody logs in; wait_for_ssh only needs the key exchange


class SSHLab:
    """A real asyncssh server on 127.0.0.1, port 0, in its own thread and loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key = self.key.export_public_key("openssh").decode().strip()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

        async def start() -> asyncssh.SSHAcceptor:
            return await asyncssh.create_server(_NoAuthServer, "127.0.0.1", 0, server_host_keys=[self.key])

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def address(self) -> tuple[str, int, str]:
        return ("127.0.0.1", self.port, self.host_key)

    def close(self) -> None:
        self.server.close()
        asyncio.run_coroutine_threadsafe(self.server.wait_closed(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="session")
def ssh_lab() -> Iterator[SSHLab]:
    lab = SSHLab()
    yield lab
    lab.close()


@pytest.fixture
def hastexo_settings(settings) -> Callable[..., conf.Settings]:
    """Override keys of ``XBLOCK_SETTINGS["hastexo"]`` for one test: ``hastexo_settings(key=value)``."""

    def apply(**values: Any) -> conf.Settings:
        xblock_settings = copy.deepcopy(settings.XBLOCK_SETTINGS)
        xblock_settings["hastexo"].update(values)
        settings.XBLOCK_SETTINGS = xblock_settings
        conf.clear_cache()
        reset_instances()
        return conf.get_settings()

    yield apply
    conf.clear_cache()
    reset_instances()


@pytest.fixture
def fake_providers(hastexo_settings, ssh_lab):
    """Configure fake providers ``fake1`` and ``fake2`` (override their config per test)."""
    FakeProvider.clear()

    def configure(**overrides: dict[str, Any]) -> conf.Settings:
        providers = {
            "fake1": {"type": "fake", "lab": ssh_lab.address},
            "fake2": {"type": "fake", "lab": ssh_lab.address},
        }
        for name, extra in overrides.items():
            providers[name] = {**providers.get(name, {"type": "fake", "lab": ssh_lab.address}), **extra}
        return hastexo_settings(providers=providers)

    configure()
    yield configure
    FakeProvider.clear()


@pytest.fixture(scope="session")
def worker_pool(django_db_setup, tmp_path_factory):
    """Celery workers booted once per session and broker (see tests/workers.py); stopped before the database goes."""
    from .workers import WorkerPool, delete_labs

    pool = WorkerPool(str(tmp_path_factory.mktemp("workers")))
    yield pool
    pool.close()
    delete_labs()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How many Celery workers the session booted (the suite's costliest setup)."""
    workers = sys.modules.get("tests.workers")
    if workers is not None:
        terminalreporter.write_line(f"celery worker boots: {workers.Worker.boots}")


@pytest.fixture
def output_dir() -> str:
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    return OUTPUT_DIR
