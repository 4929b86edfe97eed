"""Settings: documented defaults merged with ``XBLOCK_SETTINGS["hastexo"]``, validated.

Every key the original hastexo XBlock accepts is accepted here with the same
meaning and default, so an operator can switch without rewriting their
configuration.  A partial configuration works (missing keys take their
defaults; ``js_timeouts`` is merged key by key).  A wrong value raises
:class:`ConfigurationError` naming the key, at start-up (``apps.py``).

The original's settings, from its first release to stackamole 9.x, are
translated first (``legacy/settings.py``): keys with no meaning here are
accepted with one deprecation warning each, a provider without ``type`` is
OpenStack, and a provider that cannot work here (``gcloud``, or one whose
credentials are all empty) is left out with a message saying why; blocks
that name it are told "provider X is not configured here".

The pure part (:func:`load`) does not import Django; :func:`get_settings`
reads Django's settings and caches the result until they change.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from . import colors
from .legacy import settings as legacy_settings

SETTINGS_KEY = "hastexo"
#: stackamole 9.x read its settings from this key; used when ``hastexo`` is absent.
STACKAMOLE_SETTINGS_KEY = "stackamole"

log = logging.getLogger(__name__)


class ConfigurationError(ValueError):
    """A settings value is missing or wrong; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f'XBLOCK_SETTINGS["hastexo"]["{key}"]: {problem}')
        self.key = key
        self.problem = problem


# --- validators -------------------------------------------------------------


def _int(minimum: int = 0) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool):
            raise ConfigurationError(key, f"expected a whole number, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigurationError(key, f"expected a whole number, got {value!r}") from None
        if number != value and not (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
            raise ConfigurationError(key, f"expected a whole number, got {value!r}")
        if number < minimum:
            raise ConfigurationError(key, f"must be at least {minimum}, got {number}")
        return number

    return check


def _optional_int(minimum: int = 0) -> Callable[[str, Any], int | None]:
    inner = _int(minimum)

    def check(key: str, value: Any) -> int | None:
        if value is None or value == "":
            return None
        return inner(key, value)

    return check


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigurationError(key, f"expected true or false, got {value!r}")


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(key, f"expected a string, got {value!r}")
    return value


def _optional_str(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _str(key, value)


def _choice(*choices: Any) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if value not in choices:
            shown = ", ".join(repr(c) for c in choices)
            raise ConfigurationError(key, f"expected one of {shown}, got {value!r}")
        return value

    return check


def _font_size(key: str, value: Any) -> str:
    # The original stores it as a string ("10"); accept numbers too.
    text = str(value).strip()
    if not text.replace(".", "", 1).isdigit() or float(text) <= 0:
        raise ConfigurationError(key, f"expected a positive number, got {value!r}")
    return text


def _color_scheme(key: str, value: Any) -> str:
    """One of the named schemes, or a custom one in Guacamole's format (checked here, used by the page)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(key, f"expected a scheme name or a Guacamole colour scheme, got {value!r}")
    value = value.strip()
    if colors.is_named(value):
        return value
    try:
        colors.theme(value)
    except colors.ColorSchemeError as error:
        named = ", ".join(colors.NAMED)
        raise ConfigurationError(key, f"{error} (or one of {named})") from None
    return value


def _js_timeouts(key: str, value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(key, f"expected a mapping, got {value!r}")
    merged = dict(DEFAULTS["js_timeouts"])
    for name, ms in value.items():
        if name not in merged:
            raise ConfigurationError(f"{key}.{name}", f"unknown timeout (known: {', '.join(sorted(merged))})")
        merged[name] = _int(1)(f"{key}.{name}", ms)
    return merged


def _string_list(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigurationError(key, "expected a list of non-empty strings")
    return list(value)


def _providers(key: str, value: Any) -> dict[str, dict[str, Any]]:
    # Imported here: the registry imports provider modules lazily.
    from .providers import provider_class
    from .providers.base import ProviderConfigError

    if not isinstance(value, Mapping):
        raise ConfigurationError(key, f"expected a mapping of provider name to settings, got {value!r}")
    result: dict[str, dict[str, Any]] = {}
    for name, config in value.items():
        where = f"{key}.{name}"
        if not isinstance(name, str) or not name:
            raise ConfigurationError(key, f"provider names must be non-empty strings, got {name!r}")
        if not isinstance(config, Mapping):
            raise ConfigurationError(where, f"expected a mapping, got {config!r}")
        type_name = config.get("type")
        if not type_name:
            raise ConfigurationError(f"{where}.type", "missing (for example 'local')")
        try:
            cls = provider_class(type_name)
            cls.validate_config(name, config)
        except ProviderConfigError as error:
            raise ConfigurationError(f"{where}.type" if "type" in str(error) else where, str(error)) from None
        result[name] = dict(config)
    return result


#: Keys of the ``guacd`` setting and their defaults (see the README, "Desktop labs").
GUACD_DEFAULTS: dict[str, Any] = {"host": None, "port": 4822, "tunnel_host": "127.0.0.1", "tunnel_bind": None}


def _guacd(key: str, value: Any) -> dict[str, Any] | None:
    """``None`` (no RDP), or where guacd listens and where guacd reaches the gateway's RDP tunnels."""
    if value is None or value == {} or value == "":
        return None
    if not isinstance(value, Mapping):
        raise ConfigurationError(key, f"expected a mapping with host and port, got {value!r}")
    unknown = sorted(set(value) - set(GUACD_DEFAULTS))
    if unknown:
        raise ConfigurationError(key, f"unknown keys {', '.join(map(str, unknown))}")
    result = {**GUACD_DEFAULTS, **value}
    result["host"] = _str(f"{key}.host", result["host"])
    if not result["host"].strip():
        raise ConfigurationError(f"{key}.host", "must not be empty")
    result["port"] = _int(1)(f"{key}.port", result["port"])
    if result["port"] > 65535:
        raise ConfigurationError(f"{key}.port", f"not a port number: {result['port']}")
    result["tunnel_host"] = _str(f"{key}.tunnel_host", result["tunnel_host"])
    result["tunnel_bind"] = _optional_str(f"{key}.tunnel_bind", result["tunnel_bind"]) or result["tunnel_host"]
    return result


# --- the table of keys --------------------------------------------------------

#: Every key, its default and what checks it.  Keys marked "new" are ours.
DEFAULTS: dict[str, Any] = {
    # Keys of the original hastexo XBlock, same defaults and meaning.
    "terminal_url": "/hastexo-xblock/",
    "launch_timeout": 900,
    "remote_exec_timeout": 300,
    "suspend_timeout": 120,
    "suspend_interval": 60,
    "suspend_concurrency": 4,
    "suspend_task_timeout": 900,
    "suspend_in_parallel": True,
    "check_timeout": 120,
    "delete_age": 14,
    "delete_interval": 3600,
    "delete_attempts": 3,
    "delete_task_timeout": 900,
    "sleep_timeout": 10,
    "js_timeouts": {"status": 15000, "keepalive": 30000, "idle": 3600000, "check": 5000},
    "providers": {},
    "instructions_layout": "above",
    "enable_fullscreen": False,
    "lab_usage_limit": None,
    "lab_usage_limit_breach_policy": None,
    "terminal_color_scheme": "white-black",
    "terminal_font_name": "monospace",
    "terminal_font_size": "10",
    "lab_resize_method": "display-update",
    # New keys (documented in the README).
    "gateway_url": "/hastexo-gateway/ws",
    "gateway_secret": None,
    "gateway_activity_interval": 30,
    "ticket_ttl": 60,
    "encryption_keys": [],
    "task_queue": None,
    "template_dir": None,
    "orphan_grace": 3600,
    "guacd": None,
}

_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "terminal_url": _str,
    "launch_timeout": _int(1),
    "remote_exec_timeout": _int(1),
    "suspend_timeout": _int(1),
    "suspend_interval": _int(1),
    "suspend_concurrency": _int(1),
    "suspend_task_timeout": _int(1),
    "suspend_in_parallel": _bool,
    "check_timeout": _int(1),
    "delete_age": _int(0),
    "delete_interval": _int(1),
    "delete_attempts": _int(1),
    "delete_task_timeout": _int(1),
    "sleep_timeout": _int(0),
    "js_timeouts": _js_timeouts,
    "providers": _providers,
    "instructions_layout": _choice("above", "below", "left", "right"),
    "enable_fullscreen": _bool,
    "lab_usage_limit": _optional_int(1),
    "lab_usage_limit_breach_policy": _choice(None, "warn", "block"),
    "terminal_color_scheme": _color_scheme,
    "terminal_font_name": _str,
    "terminal_font_size": _font_size,
    "lab_resize_method": _choice("display-update", "reconnect"),
    "gateway_url": _str,
    "gateway_secret": _optional_str,
    "gateway_activity_interval": _int(1),
    "ticket_ttl": _int(5),
    "encryption_keys": lambda key, value: [] if not value else _string_list(key, value),
    "task_queue": _optional_str,
    "template_dir": _optional_str,
    "orphan_grace": _int(0),
    "guacd": lambda key, value: _guacd(key, value),
}

assert set(_CHECKS) == set(DEFAULTS)


class Settings(Mapping[str, Any]):
    """Validated settings; read as ``settings["key"]`` or ``settings.key``."""

    def __init__(
        self,
        values: Mapping[str, Any],
        secret_key: str = "",
        *,
        notes: list[str] | None = None,
        unavailable_providers: Mapping[str, str] | None = None,
    ) -> None:
        self._values = dict(values)
        self._secret_key = secret_key
        #: Deprecation notes about the original's keys (logged once by :func:`get_settings`).
        self.notes: list[str] = list(notes or [])
        #: Providers left out of ``providers`` (gcloud, placeholders) and why.
        self.unavailable_providers: dict[str, str] = dict(unavailable_providers or {})

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def derived_key(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose``, derived from Django's ``SECRET_KEY``."""
        return hmac.new(self._secret_key.encode(), f"hastexo_xblock:{purpose}".encode(), hashlib.sha256).digest()

    @property
    def ticket_secret(self) -> bytes:
        """The key tickets are signed with (``gateway_secret`` or derived)."""
        if self["gateway_secret"]:
            return self["gateway_secret"].encode()
        return self.derived_key("gateway-ticket")

    @property
    def terminal_theme(self) -> dict[str, Any] | None:
        """The xterm.js theme of a custom ``terminal_color_scheme``; ``None`` for a named one."""
        scheme = self["terminal_color_scheme"]
        return None if colors.is_named(scheme) else colors.theme(scheme)

    def provider_problem(self, name: str) -> str | None:
        """Why provider ``name`` cannot be used here (``None`` when it is configured), for authors and learners."""
        if name in self["providers"]:
            return None
        reason = self.unavailable_providers.get(name)
        text = f"provider {name} is not configured here"
        return f"{text} ({legacy_settings.short_reason(reason)})" if reason else text

    @property
    def delete_age_seconds(self) -> int:
        """``delete_age`` is in days, as in the original; 0 disables deletion."""
        return self["delete_age"] * 86400


def _load(
    raw: Mapping[str, Any] | None, secret_key: str = "", settings_key: str = SETTINGS_KEY
) -> tuple[Settings, legacy_settings.Translated]:
    """:func:`load`, and what the translation of the original's keys found."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError("", f"expected a mapping, got {type(raw).__name__}")
    translated = legacy_settings.translate(raw, settings_key)
    raw = translated.raw
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ConfigurationError(unknown[0], "unknown setting (check the spelling; see the README for every key)")
    values = copy.deepcopy(DEFAULTS)
    for key, value in raw.items():
        values[key] = _CHECKS[key](key, value)
    return Settings(
        values,
        secret_key,
        notes=translated.notes,
        unavailable_providers=translated.unavailable,
    ), translated


_logged: set[str] = set()


def _log_once(level: int, message: str) -> None:
    """Log ``message`` once per process (settings are re-read when they change; the warning is not)."""
    if message not in _logged:
        _logged.add(message)
        log.log(level, message)


def load(raw: Mapping[str, Any] | None, secret_key: str = "") -> Settings:
    """Merge ``raw`` over :data:`DEFAULTS`, validate, and return :class:`Settings`.

    The original's keys are translated first (``legacy/settings.py``).
    Raises :class:`ConfigurationError` for an unknown key or a wrong value.
    """
    return _load(raw, secret_key)[0]


def settings_key(xblock_settings: Mapping[str, Any] | None) -> str:
    """``hastexo``, or stackamole 9.x's ``stackamole`` when only that key is in ``XBLOCK_SETTINGS``."""
    xblock_settings = xblock_settings or {}
    if SETTINGS_KEY not in xblock_settings and STACKAMOLE_SETTINGS_KEY in xblock_settings:
        return STACKAMOLE_SETTINGS_KEY
    return SETTINGS_KEY


_cache: Settings | None = None
_cache_lock = threading.Lock()


def get_settings() -> Settings:
    """Validated settings from Django's ``XBLOCK_SETTINGS["hastexo"]`` (cached)."""
    global _cache
    if _cache is None:
        from django.conf import settings as django_settings

        with _cache_lock:
            xblock_settings = getattr(django_settings, "XBLOCK_SETTINGS", {}) or {}
            key = settings_key(xblock_settings)
            if key != SETTINGS_KEY:
                _log_once(
                    logging.WARNING,
                    f'XBLOCK_SETTINGS["{key}"] (stackamole 9.x) is read because XBLOCK_SETTINGS["{SETTINGS_KEY}"] '
                    "is not set; rename the key.",
                )
            settings, translated = _load(xblock_settings.get(key, {}), django_settings.SECRET_KEY, key)
            for note in translated.notes:
                _log_once(logging.WARNING, note)
            for name, reason in translated.placeholders.items():
                _log_once(logging.WARNING, legacy_settings.describe_provider(name, reason, key))
            for name, reason in translated.refused.items():
                _log_once(logging.ERROR, legacy_settings.describe_provider(name, reason, key))
            _cache = settings
    return _cache


def clear_cache(**_kwargs: Any) -> None:
    """Forget the cached settings (connected to Django's ``setting_changed``)."""
    global _cache
    _cache = None


def beat_schedule(raw_settings: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Entries for ``CELERY_BEAT_SCHEDULE``: the suspender and the reaper at their intervals.

    Takes the raw ``XBLOCK_SETTINGS["hastexo"]`` mapping, so that a Django
    settings module can call it while it is being read::

        CELERY_BEAT_SCHEDULE.update(beat_schedule(XBLOCK_SETTINGS["hastexo"]))
    """
    raw = raw_settings or {}
    schedule = {}
    for name, task, interval_key in (
        ("hastexo-suspender", "hastexo_xblock.suspender", "suspend_interval"),
        ("hastexo-reaper", "hastexo_xblock.reaper", "delete_interval"),
    ):
        entry: dict[str, Any] = {"task": task, "schedule": float(raw.get(interval_key, DEFAULTS[interval_key]))}
        if raw.get("task_queue"):
            entry["options"] = {"queue": raw["task_queue"]}
        schedule[name] = entry
    return schedule
