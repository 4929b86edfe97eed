"""The Heat provider's configuration: its keys, their defaults and their validation.

Imports no OpenStack library: settings validation (in every LMS, Studio and
gateway process) runs this, and only a worker that calls a cloud loads
heatclient (``client.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from ... import names
from ..base import ProviderConfigError

#: Heat's rule for stack names (names.py); checking it also keeps ``/`` and ``?`` out of URLs.
NAME_RE = names.NAME_PATTERN

INTERFACES = ("public", "internal", "admin")
DEFAULT_INTERFACE = "public"
DEFAULT_TIMEOUT = 60.0
DEFAULT_DOMAIN_ID = "default"
DEFAULT_SSH_PORT = 22

#: Stacks fetched per page by :meth:`HeatProvider.list`.
LIST_PAGE_SIZE = 200

#: How long suspend/resume/delete wait for Heat to show that the action began.
#: Heat starts the action in a thread after answering the API call, so a GET
#: right after it may still show the previous state; the lifecycle would take
#: that for the final result.  Heat normally shows the new action at once.
ACTION_SETTLE_SECONDS = 10.0
ACTION_SETTLE_POLL = 0.2

#: Longest provider error message (Heat's and keystoneauth1's can be long).
MAX_MESSAGE = 400

#: Optional parameters passed only when the template declares them.
OPTIONAL_PARAMETERS = ("public_key", "key_name")

#: Parameters whose name contains one of these are kept out of error messages.
SECRET_PARAMETER_HINTS = ("private", "password", "secret", "token")

#: String config keys (each optional as far as the type check goes).
STRING_KEYS = (
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
    "os_application_credential_id",
    "os_application_credential_name",
    "os_application_credential_secret",
    "os_interface",
    "os_cacert",
    "heat_endpoint",
)

#: Config values that must never appear in a message or a log line.
SECRET_KEYS = ("os_password", "os_auth_token", "os_application_credential_secret")


def opt(config: Mapping[str, Any], key: str) -> Any:
    """The value of ``key``, with ``""`` meaning unset (settings files list every key)."""
    value = config.get(key)
    return None if value == "" else value


def v3_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v3") else url + "/v3"


def is_url(value: str) -> bool:
    parsed = urlparse(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def validate(name: str, config: Mapping[str, Any]) -> None:
    """Raise :class:`ProviderConfigError` naming the key that is wrong.

    Checks that the ``os_*`` keys and ``heat_endpoint`` are strings;
    ``os_auth_url`` is present and an http(s) URL; there is a usable
    credential (application credential id, or name with a user, plus
    secret; or a token; or a password with a user) and, for password and
    token, a project; ``os_interface`` is public, internal or admin;
    ``os_verify`` is a bool; ``os_cacert`` is an existing file;
    ``os_timeout`` is a positive number; ``heat_endpoint`` is an http(s)
    URL.  Other keys (``type``, ``capacity``, ...) are ignored.
    """

    def bad(message: str) -> ProviderConfigError:
        return ProviderConfigError(f"provider {name!r}: {message}")

    for key in STRING_KEYS:
        value = config.get(key)
        if value is not None and not isinstance(value, str):
            raise bad(f"{key!r} must be a string")
    auth_url = opt(config, "os_auth_url")
    if not auth_url:
        raise bad("'os_auth_url' is required (the Keystone URL, e.g. https://keystone.example.com:5000/v3)")
    if not is_url(auth_url):
        raise bad(f"'os_auth_url' must be an http(s) URL, not {auth_url!r}")

    app_id = opt(config, "os_application_credential_id")
    app_name = opt(config, "os_application_credential_name")
    app_secret = opt(config, "os_application_credential_secret")
    user = opt(config, "os_username") or opt(config, "os_user_id")
    if app_id or app_name or app_secret:
        if not app_secret:
            raise bad("'os_application_credential_secret' is required with an application credential")
        if not (app_id or app_name):
            raise bad("'os_application_credential_id' (or '_name') is required with 'os_application_credential_secret'")
        if not app_id and not user:
            raise bad("'os_username' or 'os_user_id' is required with 'os_application_credential_name'")
    else:
        if not opt(config, "os_auth_token"):
            if not opt(config, "os_password"):
                raise bad(
                    "no usable credentials: set 'os_password' (with 'os_username' or 'os_user_id'), "
                    "'os_auth_token', or 'os_application_credential_id' and '_secret'"
                )
            if not user:
                raise bad("'os_username' or 'os_user_id' is required with 'os_password'")
        if not (opt(config, "os_project_id") or opt(config, "os_project_name")):
            raise bad("'os_project_id' or 'os_project_name' is required (the project the stacks live in)")

    interface = opt(config, "os_interface")
    if interface is not None and interface not in INTERFACES:
        raise bad(f"'os_interface' must be one of {', '.join(INTERFACES)}, not {interface!r}")
    verify = config.get("os_verify")
    if verify is not None and not isinstance(verify, bool):
        raise bad(f"'os_verify' must be true or false, not {verify!r}")
    cacert = opt(config, "os_cacert")
    if cacert is not None and not os.path.isfile(cacert):
        raise bad(f"'os_cacert' must be an existing CA bundle file, not {cacert!r}")
    timeout = config.get("os_timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise bad("'os_timeout' must be a positive number of seconds")
    endpoint = opt(config, "heat_endpoint")
    if endpoint is not None and not is_url(endpoint):
        raise bad(f"'heat_endpoint' must be an http(s) URL, not {endpoint!r}")


def as_bool(value: Any) -> bool:
    """A Heat output as a bool (outputs may be real booleans or strings such as "true")."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes", "on")
