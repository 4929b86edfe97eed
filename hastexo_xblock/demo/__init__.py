"""The one-command local demo: the XBlock workbench, the gateway, a worker and beat."""
