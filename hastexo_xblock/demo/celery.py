"""The demo's Celery app (in the LMS, the LMS's own app runs these tasks)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hastexo_xblock.demo.settings")

app = Celery("hastexo_demo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["hastexo_xblock"])
