"""The Open edX plugin: the platform's own machinery finds the app, its tables, commands, settings and tasks.

Everything here goes through edx-django-utils (the real package), the way
``lms/envs/common.py`` and ``cms/envs/common.py`` do; the app is listed by
hand nowhere in the test settings.  The start-up checks run in a fresh
interpreter, so that nothing imported by other tests can stand in for what
the platform would find.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest
from edx_django_utils.plugins import add_plugins, get_plugin_apps

APP = "hastexo_xblock.apps.HastexoXBlockConfig"
PROJECTS = ("lms.djangoapp", "cms.djangoapp")  # the platform's ProjectType values
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh interpreter with DJANGO_SETTINGS_MODULE=tests.settings on an empty SQLite file.
PROBE = r"""
import json, sys
import django
from django.conf import settings
django.setup()
from django.apps import apps
from django.core.management import call_command, get_commands
from django.db import connection
from celery import Celery

report = {"app": apps.get_app_config("hastexo_xblock").name}
call_command("migrate", verbosity=0, interactive=False)
report["tables"] = sorted(t for t in connection.introspection.table_names() if t.startswith("hastexo_xblock_"))
report["commands"] = sorted(name for name, app in get_commands().items() if app == "hastexo_xblock")
report["tasks_imported_before"] = "hastexo_xblock.tasks" in sys.modules
# The LMS's and Studio's Celery app (openedx/core/lib/celery/__init__.py).
app = Celery("proj")
app.conf.task_protocol = 1
app.config_from_object("django.conf:settings")
app.autodiscover_tasks()
app.loader.import_default_modules()
report["tasks"] = sorted(name for name in app.tasks if name.startswith("hastexo_xblock."))
report["beat"] = sorted(app.conf.beat_schedule)
print(json.dumps(report))
"""


@pytest.mark.parametrize("project", PROJECTS)
def test_get_plugin_apps_lists_the_app_for_lms_and_studio(project):
    assert APP in get_plugin_apps(project)


@pytest.mark.parametrize("project", PROJECTS)
@pytest.mark.parametrize("settings_type", ["common", "production"])
def test_plugin_settings_add_the_periodic_jobs(project, settings_type):
    """``add_plugins`` calls our ``plugin_settings``; the beat entries follow the operator's settings."""
    module = types.ModuleType(f"fake_{project.replace('.', '_')}_{settings_type}")
    module.XBLOCK_SETTINGS = {"hastexo": {"suspend_interval": 30, "task_queue": "labs"}}
    module.CELERYBEAT_SCHEDULE = {"hastexo-reaper": {"task": "operator's own", "schedule": 5.0}}
    sys.modules[module.__name__] = module
    try:
        add_plugins(module.__name__, project, settings_type)
    finally:
        del sys.modules[module.__name__]
    suspender = module.CELERYBEAT_SCHEDULE["hastexo-suspender"]
    assert suspender == {"task": "hastexo_xblock.suspender", "schedule": 30.0, "options": {"queue": "labs"}}
    assert module.CELERYBEAT_SCHEDULE["hastexo-reaper"]["task"] == "operator's own"


def test_the_platform_way_migrates_finds_commands_and_registers_tasks(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "HASTEXO_TEST_DATABASE_URL": f"sqlite:///{tmp_path / 'lms.db'}",
        "HASTEXO_TEST_RUN_DIR": str(tmp_path),
    }
    env.pop("HASTEXO_TEST_DB_NAME", None)
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["app"] == "hastexo_xblock"
    assert {"hastexo_xblock_stack", "hastexo_xblock_stacklog", "hastexo_xblock_check"} <= set(report["tables"])
    assert {"hastexo_suspender", "hastexo_reaper", "hastexo_rotate_keys"} <= set(report["commands"])
    assert {"hastexo-suspender", "hastexo-reaper"} <= set(report["beat"])
    assert report["tasks_imported_before"] is False  # found by autodiscovery, not imported by us
    assert {"hastexo_xblock.launch", "hastexo_xblock.suspend", "hastexo_xblock.delete", "hastexo_xblock.check"} <= set(
        report["tasks"]
    )
    assert {"hastexo_xblock.suspender", "hastexo_xblock.reaper"} <= set(report["tasks"])
