"""A Celery app for the tests, on the broker named by ``HASTEXO_TEST_BROKER_URL``.

The worker subprocess loads it with ``-A tests.celery_app``; the test process
builds the same configuration with :func:`make_app` and makes it current,
so ``shared_task`` sends go to the same broker.
"""

import os

import django
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from hastexo_xblock.providers import register_type

from .fakes import SlowFileProvider

# The slow provider of the worker-recovery tests (test_worker.py), known to the worker as to the tests;
# registered before django.setup(), which validates the settings.
register_type("slowfile", SlowFileProvider)
django.setup()


def make_app(broker_url: str) -> Celery:
    app = Celery("hastexo_tests", broker=broker_url)
    app.conf.update(
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if broker_url.startswith("filesystem://"):
        # kombu's filesystem transport, but with atomic writes (see hastexo_xblock/demo/broker.py).
        app.conf.broker_transport = "hastexo_xblock.demo.broker:Transport"
        folder = os.path.join(os.environ["HASTEXO_TEST_RUN_DIR"], "broker")
        for sub in ("queue", "processed", "control"):
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
        app.conf.broker_transport_options = {
            "data_folder_in": os.path.join(folder, "queue"),
            "data_folder_out": os.path.join(folder, "queue"),
            # Kept so that the tests can read what went over the wire.
            "store_processed": True,
            "processed_folder": os.path.join(folder, "processed"),
            "control_folder": os.path.join(folder, "control"),
            "polling_interval": 0.05,
        }
    app.autodiscover_tasks(["hastexo_xblock"])
    return app


app = make_app(os.environ.get("HASTEXO_TEST_BROKER_URL", "filesystem://"))
