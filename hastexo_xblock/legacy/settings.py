"""The original's ``XBLOCK_SETTINGS["hastexo"]``, translated into this project's settings.

Every key the original hastexo XBlock documented, from its first release to
stackamole 9.x, is accepted.  :func:`translate` runs before validation
(``conf.load``) and returns the configuration in this project's terms, the
deprecation notes to log (one per key, saying what replaces it), and the
providers that are refused (with the reason), which are left out of the
configuration so that a block naming one is reported as "not configured
here" rather than the whole platform failing to start:

* keys that only configured Guacamole or GateOne (``guacamole_js_version``,
  ``terminal_url``, ``ssh_dir``, ``ssh_upload``, ``ssh_bucket``), or the
  original's own task plumbing (``task_timeouts``, ``ssh_connect_timeout``,
  ``sleep_timeout``, ``suspend_in_parallel``) are accepted with a note;
* the single set of ``os_*`` credentials at the top level (the format before
  ``providers`` existed) becomes the ``default`` provider when no providers
  are configured, as the original did;
* a provider without ``type`` is OpenStack; ``os_tenant_name`` and
  ``os_tenant_id`` are the project's name and id (Keystone v2 names);
* ``type: gcloud`` is refused: Google Cloud Deployment Manager, which the
  original's gcloud providers drove, is retired;
* an OpenStack provider whose credentials are all empty, as in the
  original's README examples, is a placeholder: left out, with a note;
* the original's devstack values ``0`` for ``launch_timeout``,
  ``suspend_timeout`` and ``js_timeouts`` ("disabled", for synchronous
  Celery) have no meaning here: the default is used, with a note.

Pure: no Django.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Keys with no meaning here, and what replaces each.
RETIRED_KEYS: dict[str, str] = {
    "guacamole_js_version": (
        "the lab terminal is xterm.js, shipped with this package and connected through the lab gateway "
        "(gateway_url); there is no Guacamole JavaScript to choose"
    ),
    "ssh_dir": "labs' keys are kept in the database, encrypted (encryption_keys); nothing is written to disk",
    "ssh_upload": "labs' keys are kept in the database, encrypted (encryption_keys); nothing is uploaded",
    "ssh_bucket": "labs' keys are kept in the database, encrypted (encryption_keys); no object storage is used",
    "task_timeouts": (
        "replaced by launch_timeout, suspend_task_timeout, delete_task_timeout and check_timeout; "
        "workers retry with a backoff of their own"
    ),
    "ssh_connect_timeout": (
        "SSH logins are bounded by launch_timeout (while a lab starts), remote_exec_timeout and check_timeout"
    ),
}

#: Keys this project keeps (their defaults are in ``conf.DEFAULTS``) but that change nothing here.
INERT_KEYS: dict[str, str] = {
    "terminal_url": "replaced by gateway_url (where browsers reach the lab gateway); Guacamole is not used",
    "sleep_timeout": "SSH and provider polling use a backoff that starts at 0.5 s",
    "suspend_in_parallel": "suspends always run in parallel, one task per lab (suspend_concurrency is the batch)",
}

#: The original's OpenStack credential keys (``os_tenant_*`` from its Keystone v2 days).
OS_KEYS = (
    "os_auth_url",
    "os_auth_token",
    "os_username",
    "os_password",
    "os_user_id",
    "os_user_domain_id",
    "os_user_domain_name",
    "os_project_id",
    "os_project_name",
    "os_project_domain_id",
    "os_project_domain_name",
    "os_region_name",
    "os_tenant_id",
    "os_tenant_name",
)
_TENANT_KEYS = {"os_tenant_name": "os_project_name", "os_tenant_id": "os_project_id"}
# A provider is a placeholder when none of these holds a value.
_CREDENTIAL_KEYS = (
    *(key for key in OS_KEYS if key != "os_region_name"),
    "os_application_credential_id",
    "os_application_credential_name",
    "os_application_credential_secret",
)

#: Keys whose ``0`` meant "disabled" in the original's devstack settings.
_DEVSTACK_ZERO_KEYS = ("launch_timeout", "suspend_timeout")

GCLOUD_REFUSED = (
    'type "gcloud" is refused: Google Cloud Deployment Manager, which the original hastexo XBlock used to '
    "run gcloud labs, is retired, so this provider cannot launch labs. Remove it from the providers, or "
    'give its courses an "openstack" or "local" provider; blocks that name it are reported as not configured here'
)
PLACEHOLDER = (
    "has no credentials (every os_* key is empty, as in the original's example settings), so it is not used; "
    "fill in its os_* keys to use it"
)


def _where(*path: str, key: str = "hastexo") -> str:
    return f'XBLOCK_SETTINGS["{key}"]' + "".join(f'["{part}"]' for part in path)


@dataclass
class Translated:
    """The result of :func:`translate`."""

    raw: dict[str, Any]
    #: The ``XBLOCK_SETTINGS`` key the settings came from.
    settings_key: str = "hastexo"
    #: Deprecation notes, one per key, for the log (WARNING).
    notes: list[str] = field(default_factory=list)
    #: Provider name → why it is refused (logged as ERROR; left out of ``raw["providers"]``).
    refused: dict[str, str] = field(default_factory=dict)
    #: Provider name → why it is not used (a placeholder; logged as WARNING; left out too).
    placeholders: dict[str, str] = field(default_factory=dict)

    @property
    def unavailable(self) -> dict[str, str]:
        """Every provider left out, and why: what "provider X is not configured here" adds."""
        return {**self.placeholders, **self.refused}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _provider(name: str, config: Any, result: Translated) -> dict[str, Any] | None:
    """One provider entry in this project's terms; ``None`` (and a reason) when it is refused."""
    if not isinstance(config, Mapping):
        return config  # conf reports the wrong type, naming the key
    entry = dict(config)
    type_name = entry.get("type")
    if _blank(type_name):
        entry["type"] = type_name = "openstack"  # the original's default, documented as such
    if type_name == "gcloud":
        result.refused[name] = GCLOUD_REFUSED
        return None
    if type_name in ("openstack", "heat"):
        for old, new in _TENANT_KEYS.items():
            if not _blank(entry.get(old)) and _blank(entry.get(new)):
                entry[new] = entry[old]
            entry.pop(old, None)
        if all(_blank(entry.get(key)) for key in _CREDENTIAL_KEYS):
            result.placeholders[name] = PLACEHOLDER
            return None
    return entry


def translate(raw: Mapping[str, Any] | None, settings_key: str = "hastexo") -> Translated:
    """Translate the original's settings (see the module docstring); ``raw`` is not modified.

    ``settings_key`` is the ``XBLOCK_SETTINGS`` key they came from (for the notes).

    Keys this module does not know are passed through untouched, so that
    ``conf.load`` still refuses a misspelt key, naming it.
    """
    source = copy.deepcopy(dict(raw or {}))
    result = Translated(raw={}, settings_key=settings_key)

    def where(*path: str) -> str:
        return _where(*path, key=settings_key)

    for key, replacement in RETIRED_KEYS.items():
        if key in source:
            source.pop(key)
            result.notes.append(f"{where(key)} is deprecated and ignored: {replacement}.")
    for key, replacement in INERT_KEYS.items():
        if key in source:
            result.notes.append(f"{where(key)} is accepted but has no effect: {replacement}.")

    top_level = {key: source.pop(key) for key in OS_KEYS if key in source}
    providers = source.get("providers")
    if top_level:
        if not providers:
            providers = {"default": {"type": "openstack", **top_level}}
            result.notes.append(
                f"{where('os_*')} keys at the top level are read as {where('providers', 'default')}, as the "
                "original did before it had providers; move them there."
            )
        else:
            result.notes.append(
                f"{where('os_*')} keys at the top level are ignored because providers are configured "
                "(as in the original); remove them."
            )
    if isinstance(providers, Mapping):
        translated = {}
        for name, config in providers.items():
            entry = _provider(name, config, result)
            if entry is not None:
                translated[name] = entry
        source["providers"] = translated

    for key in _DEVSTACK_ZERO_KEYS:
        if source.get(key) in (0, "0"):
            source.pop(key)
            result.notes.append(
                f"{where(key)} is 0, which the original's devstack settings used to switch it off; it cannot be "
                "switched off here, so the default applies."
            )
    timeouts = source.get("js_timeouts")
    if isinstance(timeouts, Mapping):
        zeros = sorted(name for name, value in timeouts.items() if value in (0, "0"))
        if zeros:
            source["js_timeouts"] = {name: value for name, value in timeouts.items() if name not in zeros}
            result.notes.append(
                f"{where('js_timeouts')}: {', '.join(zeros)} = 0 (the original's devstack setting) has no meaning "
                "here; the default applies."
            )
    result.raw = source
    return result


def describe_provider(name: str, reason: str, settings_key: str = "hastexo") -> str:
    """The log line for a provider that is left out."""
    return f"{_where('providers', name, key=settings_key)}: {reason}."


def short_reason(reason: str) -> str:
    """A refusal reason shortened for a learner or an author (the log has the whole text)."""
    if reason == GCLOUD_REFUSED:
        return "gcloud: Google Cloud Deployment Manager is retired"
    if reason == PLACEHOLDER:
        return "it has no credentials"
    return reason
