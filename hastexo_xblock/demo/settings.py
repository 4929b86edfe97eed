"""Django settings for the local demo: the XBlock workbench plus hastexo_xblock.

Everything lives under ``HASTEXO_DEMO_DIR`` (default ``./var``): the SQLite
database, the Celery broker's folders and the local labs.  No server is
needed: the broker is kombu's ``filesystem://`` transport, polled every
50 ms (the default 1 s polling would add a second to every launch).
"""

import os
import secrets

from workbench.settings import *  # noqa: F403

from hastexo_xblock.conf import beat_schedule

HERE = os.path.dirname(os.path.abspath(__file__))
VAR = os.path.abspath(os.environ.get("HASTEXO_DEMO_DIR", "var"))
os.makedirs(VAR, exist_ok=True)


def _secret_key() -> str:
    # A per-installation secret, kept across restarts (encrypted keys depend on it).
    path = os.path.join(VAR, "secret_key")
    if not os.path.exists(path):
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    with open(path) as handle:
        return handle.read().strip()


SECRET_KEY = _secret_key()
DEBUG = os.environ.get("HASTEXO_DEMO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
TIME_ZONE = "UTC"
# djpyfs (listed by the workbench) does not load on Django 5.2 and is not used.
INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "djpyfs"] + ["hastexo_xblock"]  # noqa: F405
# Learners get the page in their browser's language (Accept-Language), as in the LMS.
MIDDLEWARE = list(MIDDLEWARE)  # noqa: F405
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.sessions.middleware.SessionMiddleware") + 1,
    "django.middleware.locale.LocaleMiddleware",
)
USE_I18N = True
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(VAR, "demo.db"),
        # Workers, the gateway and the LMS write concurrently: wait, don't fail.
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
    }
}
WORKBENCH = {"reset_state_on_restart": False, "services": {}}
EXCLUDE_SAMPLE_XBLOCKS = "no"

GATEWAY_PORT = int(os.environ.get("HASTEXO_GATEWAY_PORT", "8001"))

XBLOCK_SETTINGS = {
    "hastexo": {
        "providers": {
            "default": {
                "type": "local",
                "root": os.environ.get("HASTEXO_DEMO_LABS") or os.path.join(VAR, "labs"),
                # run.py chooses "auto" whenever this machine can sandbox labs.
                "sandbox": os.environ.get("HASTEXO_DEMO_SANDBOX", "auto"),
            }
        },
        "gateway_url": f"ws://127.0.0.1:{GATEWAY_PORT}/ws",
        "template_dir": os.path.join(HERE, "templates"),
        "suspend_timeout": int(os.environ.get("HASTEXO_DEMO_SUSPEND_TIMEOUT", "120")),
        "suspend_interval": 10,
        "js_timeouts": {"keepalive": 30000, "idle": 600000},
        # What a change of the unit's size does to a desktop (run.py --lab-resize-method).
        "lab_resize_method": os.environ.get("HASTEXO_DEMO_RESIZE_METHOD", "display-update"),
    }
}

_broker = os.path.join(VAR, "broker")
for _folder in ("out", "processed", "control"):
    os.makedirs(os.path.join(_broker, _folder), exist_ok=True)
CELERY_BROKER_URL = "filesystem://"
# kombu's filesystem transport, but with atomic writes (see demo/broker.py).
CELERY_BROKER_TRANSPORT = "hastexo_xblock.demo.broker:Transport"
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "data_folder_in": os.path.join(_broker, "out"),
    "data_folder_out": os.path.join(_broker, "out"),
    "processed_folder": os.path.join(_broker, "processed"),
    "control_folder": os.path.join(_broker, "control"),
    "store_processed": False,
    "polling_interval": 0.05,
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = beat_schedule(XBLOCK_SETTINGS["hastexo"])
CELERY_BEAT_SCHEDULE_FILENAME = os.path.join(VAR, "celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "hastexo_xblock": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.request": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}

# Load the demo's Celery app with the settings, so that the Django process
# sends its tasks to the demo's broker (Celery reads the CELERY_* settings
# above lazily, on first use).
from hastexo_xblock.demo.celery import app as celery_app  # noqa: E402, F401
