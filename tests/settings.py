"""Django settings for the test suite: the XBlock workbench plus the plugin apps, added the platform's way.

``hastexo_xblock`` is not listed here: like the LMS (``lms/envs/common.py``),
these settings extend ``INSTALLED_APPS`` with edx-django-utils'
``get_plugin_apps`` and apply the plugins' settings with ``add_plugins``, so
the suite runs only if the package really plugs itself in.

``HASTEXO_TEST_DATABASE_URL`` selects the database (``sqlite:///path``,
``mysql://user:pass@host:port/name``, ``postgresql://user@host:port/name``);
SQLite in a file by default, so that worker and gateway processes started by
the tests see the same data.
"""

import json
import os
import tempfile
from urllib.parse import unquote, urlparse

import django
from edx_django_utils.plugins import add_plugins, get_plugin_apps
from workbench.settings import *  # noqa: F403

# The platform's ProjectType.LMS and SettingsType.COMMON (openedx/core/djangoapps/plugins/constants.py).
LMS, COMMON = "lms.djangoapp", "common"

SECRET_KEY = "tests-only-not-secret"
# djpyfs (listed by the workbench) does not load on Django 5.2 and is not used.
INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "djpyfs"] + get_plugin_apps(LMS)  # noqa: F405
USE_TZ = True
TIME_ZONE = "UTC"

_here = os.path.dirname(os.path.abspath(__file__))
_run_dir = os.environ.setdefault("HASTEXO_TEST_RUN_DIR", tempfile.mkdtemp(prefix="hastexo-tests-"))
# A root worker runs each local lab as a user of its own, which passes through here to its home.
os.chmod(_run_dir, 0o711)


def database_from_url(url: str) -> dict:
    """Django ``DATABASES`` entry for ``url``."""
    parsed = urlparse(url)
    scheme = parsed.scheme.split("+")[0]
    if scheme == "sqlite":
        path = unquote(parsed.path) or os.path.join(_run_dir, "test.db")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path, "TEST": {"NAME": path}}
    engine = {
        "mysql": "django.db.backends.mysql",
        "mariadb": "django.db.backends.mysql",
        "postgres": "django.db.backends.postgresql",
        "postgresql": "django.db.backends.postgresql",
    }[scheme]
    entry = {
        "ENGINE": engine,
        "NAME": parsed.path.lstrip("/") or "test",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "127.0.0.1",
        "PORT": str(parsed.port or ""),
    }
    if engine.endswith("mysql"):
        entry["OPTIONS"] = {"charset": "utf8mb4"}
        entry["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    return entry


DATABASES = {"default": database_from_url(os.environ.get("HASTEXO_TEST_DATABASE_URL", "sqlite://"))}
if os.environ.get("HASTEXO_TEST_DB_NAME"):
    # A worker or gateway subprocess uses the test database pytest-django created.
    DATABASES["default"]["NAME"] = os.environ["HASTEXO_TEST_DB_NAME"]
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Tests run workers and threads against one file: wait for locks, don't fail.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30}
    if django.VERSION >= (5, 1):  # both options are Django 5.1's; Django 4.2 (Open edX Sumac, Teak) has neither
        DATABASES["default"]["OPTIONS"].update(
            {"transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
        )

_providers = {"default": {"type": "local", "root": os.path.join(_run_dir, "labs")}}
# Tests that start worker subprocesses pass extra providers (e.g. Heat) this way.
_providers.update(json.loads(os.environ.get("HASTEXO_TEST_EXTRA_PROVIDERS", "{}")))

XBLOCK_SETTINGS = {
    "hastexo": {
        "providers": _providers,
        "gateway_url": "ws://127.0.0.1:1/ws",
        "template_dir": os.environ.get("HASTEXO_TEST_TEMPLATE_DIR", os.path.join(_here, "templates")),
        # Further keys for a worker subprocess (a test sets them in its own process with hastexo_settings).
        **json.loads(os.environ.get("HASTEXO_TEST_SETTINGS_JSON") or "{}"),
    }
}


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"hastexo_xblock": {"handlers": ["console"], "level": "DEBUG", "propagate": True}},
}

add_plugins(__name__, LMS, COMMON)
