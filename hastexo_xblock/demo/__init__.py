"""The one-command local demo: the XBlock workbench, the gateway, a worker and beat.

Importing this package has no side effects (the tests import
``demo.broker``); the demo's Celery app is loaded by ``demo.settings``.
"""
