"""The one-command local demo: the XBlock workbench, the gateway, a worker and beat.

Importing the package loads the demo's Celery app, so that the Django
process (whose settings module lives here) sends tasks to the demo's broker.
"""

from .celery import app as celery_app

__all__ = ["celery_app"]
