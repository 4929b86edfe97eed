"""Real Celery worker subprocesses for the tests, booted once per session and broker where tests allow it.

A worker boot costs a second or two of CPU (Django, Celery, the package);
the suite used to boot one per test that needed one.  :class:`WorkerPool`
(the ``worker_pool`` fixture, session-scoped, in ``conftest.py``) keeps one
worker per broker URL for the whole session: every test that only needs *a*
worker takes the pooled one.  Pooled workers share one template directory
and one settings profile (:data:`WORKER_SETTINGS`); between tests the pool's
user deletes the labs the test left (:func:`delete_labs`), and the database
is flushed by pytest-django as before.

A test that needs a worker of its own (other settings, a provider the pool
does not know, a worker it may kill) calls :func:`start_worker`: the pooled
worker on that broker is stopped first, so that no two workers share a queue.

:attr:`Worker.boots` counts the boots of the session; the terminal summary
prints it (``conftest.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import ClassVar

from django.db import connection

from hastexo_xblock.conf import get_settings
from hastexo_xblock.providers import get_provider

from .celery_app import make_app

#: The settings every pooled worker runs with (and the tests that talk to it apply in the test process).
WORKER_SETTINGS = {"remote_exec_timeout": 2, "check_timeout": 30}

TEMPLATE = """
description: test lab
files:
  - path: notes.txt
    content: hello from the template
setup: |
  echo ready > setup-ran
"""


class Worker:
    """A ``celery worker`` subprocess on ``broker_url`` using the test database."""

    #: Worker processes booted in this session.
    boots: ClassVar[int] = 0

    def __init__(self, broker_url: str, log_path: str, extra_env: dict[str, str] | None = None) -> None:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="tests.settings",
            HASTEXO_TEST_BROKER_URL=broker_url,
            HASTEXO_TEST_DB_NAME=connection.settings_dict["NAME"],
            PYTHONPATH=os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")]),
        )
        env.update(extra_env or {})
        self.broker_url = broker_url
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.celery_app",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                "4",
                "--loglevel",
                "DEBUG",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"test-{os.getpid()}-{Worker.boots}@%h",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        Worker.boots += 1
        self.app = make_app(broker_url)
        self.make_current()

    def make_current(self) -> None:
        """Send the test process's tasks to this worker's broker."""
        self.app.set_current()
        self.app.set_default()

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        self.log.flush()
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.log.close()


def delete_labs() -> None:
    """Delete every lab of the default (local) provider: what a test's launches left."""
    provider = get_provider("default", get_settings()["providers"])
    for name in provider.list():
        provider.delete(name)


class WorkerPool:
    """One worker per broker URL for the session, booted on first use and again only if it died."""

    current: ClassVar[WorkerPool | None] = None

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.template_dir = os.path.join(directory, "templates")
        os.makedirs(self.template_dir, exist_ok=True)
        for name in ("linux.yaml", "t.yaml"):  # t.yaml: the template of tests.test_block's XML
            with open(os.path.join(self.template_dir, name), "w", encoding="utf-8") as handle:
                handle.write(TEMPLATE)
        self.workers: dict[str, Worker] = {}
        WorkerPool.current = self

    def env(self) -> dict[str, str]:
        return {
            "HASTEXO_TEST_TEMPLATE_DIR": self.template_dir,
            "HASTEXO_TEST_SETTINGS_JSON": json.dumps(WORKER_SETTINGS),
        }

    def get(self, broker_url: str) -> Worker:
        """The session's worker on ``broker_url`` (booted now if there is none, or it died), made current."""
        worker = self.workers.get(broker_url)
        if worker is None or not worker.alive():
            if worker is not None:
                worker.stop()
            log_path = os.path.join(self.directory, f"worker-{broker_url.split(':')[0]}-{Worker.boots}.log")
            worker = self.workers[broker_url] = Worker(broker_url, log_path, self.env())
        worker.make_current()
        return worker

    def release(self, broker_url: str) -> None:
        """Stop the pooled worker on ``broker_url`` (a test is about to start one of its own there)."""
        worker = self.workers.pop(broker_url, None)
        if worker is not None:
            worker.stop()

    def close(self) -> None:
        for url in list(self.workers):
            self.release(url)
        WorkerPool.current = None


def start_worker(broker_url: str, tmp_path: object) -> Worker:
    """A worker of the test's own on ``broker_url`` (the pooled one there is stopped first); see :func:`stop_worker`."""
    if WorkerPool.current is not None:
        WorkerPool.current.release(broker_url)
    # The worker process reads the same settings module; give it the same template dir.
    os.environ["HASTEXO_TEST_TEMPLATE_DIR"] = str(tmp_path)
    return Worker(broker_url, os.path.join(str(tmp_path), "worker.log"))


def stop_worker(started: Worker) -> None:
    started.stop()
    os.environ.pop("HASTEXO_TEST_TEMPLATE_DIR", None)
    delete_labs()
