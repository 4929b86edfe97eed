"""Provider registry: type names → classes, and one instance per configured provider.

Types are registered through the ``hastexo_xblock.providers`` entry point
group (``local = hastexo_xblock.providers.local:LocalProvider``), so a
third-party package can add one without touching this code.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from .base import Provider, ProviderConfigError

ENTRY_POINT_GROUP = "hastexo_xblock.providers"

# Built-ins are known even when the package is used from a source tree
# without its metadata installed (tests, the demo before ``pip install``).
_BUILTIN = {
    "local": "hastexo_xblock.providers.local:LocalProvider",
    "openstack": "hastexo_xblock.providers.heat:HeatProvider",
    "heat": "hastexo_xblock.providers.heat:HeatProvider",
}

_registered: dict[str, type[Provider]] = {}
_instances: dict[tuple[str, int], Provider] = {}
_lock = threading.Lock()


def _load(ref: str) -> type[Provider]:
    module_name, _, attr = ref.partition(":")
    module = __import__(module_name, fromlist=[attr])
    return getattr(module, attr)


def provider_types() -> dict[str, str]:
    """Every known provider type name and the object reference it loads."""
    types = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        types[ep.name] = ep.value
    types.update({name: f"{cls.__module__}:{cls.__qualname__}" for name, cls in _registered.items()})
    return types


def register_type(type_name: str, cls: type[Provider] | None) -> None:
    """Register (or, with ``None``, forget) a provider class in this process.

    For tests and embedding; packages should use the entry point group.
    """
    if cls is None:
        _registered.pop(type_name, None)
    else:
        _registered[type_name] = cls
    reset_instances()


def provider_class(type_name: str) -> type[Provider]:
    """Return the class for ``type_name``; raise :class:`ProviderConfigError` if unknown."""
    if type_name in _registered:
        return _registered[type_name]
    types = provider_types()
    if type_name not in types:
        known = ", ".join(sorted(types))
        raise ProviderConfigError(f"unknown provider type {type_name!r} (known types: {known})")
    return _load(types[type_name])


def get_provider(name: str, providers: Mapping[str, Mapping[str, Any]]) -> Provider:
    """Return the process-wide instance of the provider called ``name``.

    ``providers`` is the validated ``providers`` settings mapping.  One
    instance per provider and configuration is kept for the life of the
    process, so sessions and connections are reused.
    """
    if name not in providers:
        raise ProviderConfigError(f"provider {name!r} is not configured")
    config = providers[name]
    key = (name, hash(repr(sorted(config.items()))))
    with _lock:
        instance = _instances.get(key)
        if instance is None:
            cls = provider_class(config.get("type", ""))
            instance = cls(name, config)
            _instances[key] = instance
        return instance


def reset_instances() -> None:
    """Forget cached instances (tests, settings changes)."""
    with _lock:
        _instances.clear()
