"""Django app configuration: an Open edX plugin app that validates the settings at start-up.

``plugin_app`` follows edx-django-utils' plugin conventions: the LMS and
Studio add every app whose ``lms.djangoapp``/``cms.djangoapp`` entry point
names an AppConfig with this attribute to ``INSTALLED_APPS``
(``get_plugin_apps``), and call ``plugin_settings`` of the modules it names
(``add_plugins``).  Without the attribute the platform ignores the entry
point, and the app (models, migrations, commands, tasks, admin) is missing.

The keys are the documented string values of edx-django-utils'
``PluginSettings`` and of the platform's ``ProjectType``/``SettingsType``,
written out so that importing this module never needs edx-django-utils (the
workbench and the demo run without it); ``tests/test_plugin.py`` runs them
through the real package.
"""

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed

_SETTINGS = {"relative_path": "settings.common"}


class HastexoXBlockConfig(AppConfig):
    name = "hastexo_xblock"
    verbose_name = "hastexo labs"
    default_auto_field = "django.db.models.BigAutoField"

    # No URLs: the gateway is its own ASGI service, and the admin is served by the platform's admin site.
    plugin_app = {
        "settings_config": {
            "lms.djangoapp": {"common": _SETTINGS, "production": _SETTINGS},
            "cms.djangoapp": {"common": _SETTINGS, "production": _SETTINGS},
        },
    }

    def ready(self) -> None:
        from . import conf
        from .providers import reset_instances

        def on_change(setting: str = "", **_kwargs: object) -> None:
            if setting in ("XBLOCK_SETTINGS", "SECRET_KEY"):
                conf.clear_cache()
                reset_instances()

        setting_changed.connect(on_change, weak=False)
        # Fail at start-up, naming the key, rather than at a learner's first click.
        conf.get_settings()
