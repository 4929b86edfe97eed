"""Django app configuration: validates the settings at start-up."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed


class HastexoXBlockConfig(AppConfig):
    name = "hastexo_xblock"
    verbose_name = "hastexo labs"
    default_auto_field = "django.db.models.BigAutoField"

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
