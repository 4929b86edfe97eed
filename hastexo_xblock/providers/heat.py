"""The OpenStack provider: labs as Heat stacks.

A lab is one Heat stack named after the learner's stack name, created from
the author's HOT template in the project the provider's credentials scope
to.  Only python-heatclient and keystoneauth1 talk to OpenStack; the one
call outside Heat (a Nova keypair, see below) goes through the same
keystoneauth1 session.

Config keys (the ``os_*`` names are those of the original hastexo XBlock;
empty strings count as unset, so a settings file may list every key):

``os_auth_url`` (required)
    Keystone URL.  A URL that does not end in ``/v3`` gets ``/v3`` appended
    (the v3 identity API is the only one used).
``os_username`` / ``os_user_id``, ``os_password``
    Password authentication.  With ``os_username``, the user's domain is
    ``os_user_domain_id`` or ``os_user_domain_name`` (default: the domain
    with id ``default``).
``os_auth_token``
    Token authentication (takes precedence over a password).
``os_application_credential_id`` or ``os_application_credential_name``, plus ``os_application_credential_secret``
    Application credential authentication (takes precedence over the two
    above).  A credential given by name also needs ``os_username`` or
    ``os_user_id``.  The credential carries its own project scope, so the
    project keys are ignored.
``os_project_id`` / ``os_project_name``
    The project the stacks live in (required for password and token
    authentication).  With ``os_project_name`` the project's domain is
    ``os_project_domain_id`` or ``os_project_domain_name`` (default: the
    domain with id ``default``).
``os_region_name``
    Region whose endpoints are used (default: whatever the catalog offers).
``os_interface``
    ``public`` (default), ``internal`` or ``admin``: which catalog endpoints.
``os_cacert``
    Path of a CA bundle to verify TLS against (default: the system's).
``os_verify``
    ``true`` (default); ``false`` disables TLS verification (a WARNING is logged).
``os_timeout``
    Seconds one HTTP request may take (default 60).  There are no retries
    here: the caller (``lifecycle.py``) retries :class:`TransientProviderError`.
``heat_endpoint``
    Use this orchestration URL instead of the catalog's, e.g. a proxy:
    ``https://proxy.example.com/v1/<project id>``.

Outputs contract.  Once a stack is ``CREATE_COMPLETE`` or ``RESUME_COMPLETE``
its template must provide these outputs:

``public_ip`` (required)
    Address the workers and the gateway reach the lab's SSH server on.
``private_key`` (required unless the worker made the key pair)
    The private key (OpenSSH or PEM text) that logs in to the lab.  With the
    block's ``stack_key_type`` the worker generates the key and passes
    ``public_key``; the output may then be absent or empty.
``password`` (optional)
    A password for the lab's user, if the template makes one.
``ssh_port`` (optional)
    The SSH port, an integer (default 22).
``vnc``, ``rdp`` (optional)
    Where the lab's desktop server listens, as the lab's SSH server sees
    it: ``host:port`` (usually ``127.0.0.1:5901``) or ``unix:/path``.  Passed
    on in ``ProviderStack.extra`` and recorded as ``Stack.desktop`` for
    ``vnc``/``rdp`` labs; the gateway reaches it through the lab's SSH.  The
    ``password`` output is the VNC (or RDP) password the gateway uses.
``reboot_on_resume`` (optional, deprecated)
    Accepted for templates written for the original hastexo XBlock and
    passed on in ``ProviderStack.extra["reboot_on_resume"]``; nothing here
    acts on it.

A template without ``public_ip`` makes :meth:`HeatProvider.get` report
``CREATE_FAILED`` with a reason naming the missing output, so that the
learner sees a template problem instead of a lab that never answers (a
missing key is reported by the lifecycle, which knows who made it).

Parameters.  Every parameter the caller passes is passed to Heat, except
``public_key`` and ``key_name``, which are passed only when the template
declares them.  When the caller passes ``public_key`` and the template
declares ``key_name``, a Nova keypair named after the stack is created (via
the compute API, through the same session) and ``key_name`` is set to it;
:meth:`HeatProvider.delete` removes the keypair again.  Nova keypairs belong
to the *user*, not the project: two providers with the same user share the
keypair namespace, which is harmless because stack names are unique.

This module does not import Django or XBlock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlparse

import yaml
from heatclient import client as heat_client
from heatclient import exc as heat_exc
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from keystoneauth1.identity.base import BaseIdentityPlugin

from .. import names, states
from .base import (
    Provider,
    ProviderAuthError,
    ProviderConfigError,
    ProviderError,
    ProviderStack,
    StackOutputs,
    TemplateError,
    TransientProviderError,
)

log = logging.getLogger(__name__)

# keystoneauth1 logs every request and response body at DEBUG.  Heat's
# answers carry the ``private_key`` output and our create requests carry the
# template's parameters, so the HTTP traffic goes to a logger of its own that
# is capped at INFO: a root logger at DEBUG does not write secrets to disk.
# An operator who really wants the bodies can lower this logger's level.
_http_log = logging.getLogger(__name__ + ".http")
_http_log.setLevel(logging.INFO)

T = TypeVar("T")

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


# --------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------


class _HotLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that keeps timestamps as strings.

    ``heat_template_version: 2018-08-31`` is a YAML date; ``safe_load`` would
    turn it into a ``datetime.date``, which is not JSON and not what Heat
    expects.  Heat's own parser makes the same exception.
    """


def _timestamp_as_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_HotLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_string)


def parse_document(text: str | None, what: str) -> dict[str, Any] | None:
    """Parse a HOT template or environment (YAML or JSON text) into a dict.

    Returns ``None`` for ``None`` or an empty document.  Raises
    :class:`TemplateError` naming ``what`` ("template", "environment") for
    text that is not valid YAML/JSON or is not a mapping.  Safe: the loader
    is a ``SafeLoader`` (only plain data types can come out).
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise TemplateError(f"the Heat {what} must be YAML or JSON text")
    try:
        doc = yaml.load(text, Loader=_HotLoader)  # noqa: S506 - _HotLoader is a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise TemplateError(f"the Heat {what} is not valid YAML or JSON: {exc}") from None
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise TemplateError(f"the Heat {what} must be a mapping")
    return doc


def declared_parameters(template: Mapping[str, Any]) -> set[str]:
    """Names of the parameters ``template`` declares (HOT ``parameters`` or CFN ``Parameters``)."""
    params = template.get("parameters")
    if params is None:
        params = template.get("Parameters")
    return {str(key) for key in params} if isinstance(params, dict) else set()


# --------------------------------------------------------------------------
# Config helpers
# --------------------------------------------------------------------------


def _opt(config: Mapping[str, Any], key: str) -> Any:
    """The value of ``key``, with ``""`` meaning unset (settings files list every key)."""
    value = config.get(key)
    return None if value == "" else value


def _v3_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v3") else url + "/v3"


def _is_url(value: str) -> bool:
    parsed = urlparse(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _NotFound(ProviderError):
    """404 from Heat or Nova.  Internal: each caller decides what "absent" means."""


class _NoEndpoint(ProviderConfigError):
    """The catalog has no endpoint for a service.  Internal: the keypair code asks whether compute exists."""


class _Conflict(TransientProviderError):
    """409 from Heat or Nova.

    Transient when nobody handles it: for suspend, resume and delete it
    means the stack is busy with another action, which passes.
    """


def _caused_by_connection(exc: BaseException) -> bool:
    """Whether a connection failure is somewhere in ``exc``'s chain (DiscoveryFailure wraps them)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ks_exc.ConnectionError) and not isinstance(current, ks_exc.SSLError):
            return True
        current = current.__cause__ or current.__context__
    return "Unable to establish connection" in str(exc)


# --------------------------------------------------------------------------
# The provider
# --------------------------------------------------------------------------


class HeatProvider(Provider):
    """Labs as OpenStack Heat stacks (see the module docstring for config keys and outputs).

    Thread-safe: one keystoneauth1 session (and one Heat client on it) per
    instance, created on first use under a lock; keystoneauth1 serialises
    token fetches itself.  The registry keeps one instance per process.

    Every call starts an operation and returns the stack as Heat shows it
    then; the caller polls :meth:`get` and owns every timeout.  Errors:
    :class:`ProviderAuthError` (401/403, bad credentials),
    :class:`TransientProviderError` (connection refused/reset, time-outs,
    5xx, 408, 429, a stack busy with another action),
    :class:`TemplateError` (Heat rejected the template or its parameters),
    :class:`ProviderConfigError` (no orchestration endpoint, TLS set-up),
    :class:`ProviderError` otherwise.  Messages never contain credentials.
    """

    type_name = "openstack"

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        """Build the provider from a config; raises :class:`ProviderConfigError`.  Does no network I/O."""
        super().__init__(name, config)
        self.validate_config(name, config)
        self.interface: str = _opt(config, "os_interface") or DEFAULT_INTERFACE
        self.region_name: str | None = _opt(config, "os_region_name")
        self.timeout = float(_opt(config, "os_timeout") or DEFAULT_TIMEOUT)
        self.heat_endpoint: str | None = _opt(config, "heat_endpoint")
        verify = _opt(config, "os_verify")
        cacert = _opt(config, "os_cacert")
        self.verify: bool | str = (cacert or True) if verify is not False else False
        self._secrets = [str(config[key]) for key in SECRET_KEYS if _opt(config, key)]
        self._session: ks_session.Session | None = None
        self._heat: Any = None
        self._lock = threading.Lock()
        if self.verify is False:
            log.warning("provider %s: TLS certificate verification is disabled (os_verify: false)", name)

    # -- configuration ---------------------------------------------------------

    @classmethod
    def validate_config(cls, name: str, config: Mapping[str, Any]) -> None:
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
        auth_url = _opt(config, "os_auth_url")
        if not auth_url:
            raise bad("'os_auth_url' is required (the Keystone URL, e.g. https://keystone.example.com:5000/v3)")
        if not _is_url(auth_url):
            raise bad(f"'os_auth_url' must be an http(s) URL, not {auth_url!r}")

        app_id = _opt(config, "os_application_credential_id")
        app_name = _opt(config, "os_application_credential_name")
        app_secret = _opt(config, "os_application_credential_secret")
        user = _opt(config, "os_username") or _opt(config, "os_user_id")
        if app_id or app_name or app_secret:
            if not app_secret:
                raise bad("'os_application_credential_secret' is required with an application credential")
            if not (app_id or app_name):
                raise bad(
                    "'os_application_credential_id' (or '_name') is required with 'os_application_credential_secret'"
                )
            if not app_id and not user:
                raise bad("'os_username' or 'os_user_id' is required with 'os_application_credential_name'")
        else:
            if not _opt(config, "os_auth_token"):
                if not _opt(config, "os_password"):
                    raise bad(
                        "no usable credentials: set 'os_password' (with 'os_username' or 'os_user_id'), "
                        "'os_auth_token', or 'os_application_credential_id' and '_secret'"
                    )
                if not user:
                    raise bad("'os_username' or 'os_user_id' is required with 'os_password'")
            if not (_opt(config, "os_project_id") or _opt(config, "os_project_name")):
                raise bad("'os_project_id' or 'os_project_name' is required (the project the stacks live in)")

        interface = _opt(config, "os_interface")
        if interface is not None and interface not in INTERFACES:
            raise bad(f"'os_interface' must be one of {', '.join(INTERFACES)}, not {interface!r}")
        verify = config.get("os_verify")
        if verify is not None and not isinstance(verify, bool):
            raise bad(f"'os_verify' must be true or false, not {verify!r}")
        cacert = _opt(config, "os_cacert")
        if cacert is not None and not os.path.isfile(cacert):
            raise bad(f"'os_cacert' must be an existing CA bundle file, not {cacert!r}")
        timeout = config.get("os_timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise bad("'os_timeout' must be a positive number of seconds")
        endpoint = _opt(config, "heat_endpoint")
        if endpoint is not None and not _is_url(endpoint):
            raise bad(f"'heat_endpoint' must be an http(s) URL, not {endpoint!r}")

    def _auth(self) -> BaseIdentityPlugin:
        """The keystoneauth1 plugin for the configured credentials (precedence: app credential, token, password)."""
        c = self.config
        auth_url = _v3_url(_opt(c, "os_auth_url"))
        user: dict[str, Any] = {}
        if _opt(c, "os_user_id"):
            user["user_id"] = _opt(c, "os_user_id")
        elif _opt(c, "os_username"):
            user["username"] = _opt(c, "os_username")
            if _opt(c, "os_user_domain_name") and not _opt(c, "os_user_domain_id"):
                user["user_domain_name"] = _opt(c, "os_user_domain_name")
            else:
                user["user_domain_id"] = _opt(c, "os_user_domain_id") or DEFAULT_DOMAIN_ID
        project: dict[str, Any] = {}
        if _opt(c, "os_project_id"):
            project["project_id"] = _opt(c, "os_project_id")
        elif _opt(c, "os_project_name"):
            project["project_name"] = _opt(c, "os_project_name")
            if _opt(c, "os_project_domain_name") and not _opt(c, "os_project_domain_id"):
                project["project_domain_name"] = _opt(c, "os_project_domain_name")
            else:
                project["project_domain_id"] = _opt(c, "os_project_domain_id") or DEFAULT_DOMAIN_ID
        secret = _opt(c, "os_application_credential_secret")
        if secret:
            app: dict[str, Any] = {"application_credential_secret": secret}
            if _opt(c, "os_application_credential_id"):
                app["application_credential_id"] = _opt(c, "os_application_credential_id")
            else:
                app["application_credential_name"] = _opt(c, "os_application_credential_name")
                app.update(user)
            return v3.ApplicationCredential(auth_url=auth_url, **app)
        if _opt(c, "os_auth_token"):
            return v3.Token(auth_url=auth_url, token=_opt(c, "os_auth_token"), **project)
        return v3.Password(auth_url=auth_url, password=_opt(c, "os_password"), **user, **project)

    def session(self) -> ks_session.Session:
        """The provider's keystoneauth1 session, created on first use (no I/O until a request)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = ks_session.Session(auth=self._auth(), verify=self.verify, timeout=self.timeout)
        return self._session

    def _client(self) -> Any:
        """The Heat client on :meth:`session`, created on first use."""
        if self._heat is None:
            session = self.session()
            with self._lock:
                if self._heat is None:
                    self._heat = heat_client.Client(
                        "1",
                        session=session,
                        interface=self.interface,
                        region_name=self.region_name,
                        endpoint_override=self.heat_endpoint or None,
                        logger=_http_log,
                    )
        return self._heat

    # -- the error edge ----------------------------------------------------------

    def _scrub(self, text: str, extra: tuple[str, ...] = ()) -> str:
        """``text`` without any credential (or ``extra`` secret) in it, shortened."""
        for secret in (*self._secrets, *extra):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return _shorten(text)

    def _call(
        self,
        what: str,
        func: Callable[[], T],
        *,
        bad_request: type[ProviderError] = ProviderError,
        secrets: tuple[str, ...] = (),
    ) -> T:
        """Run one OpenStack call and translate its failures into provider errors.

        The one place that catches keystoneauth1 and heatclient exceptions.
        ``what`` says what was being done (for the message); ``bad_request``
        is the class for an HTTP 400 (:class:`TemplateError` when creating);
        ``secrets`` are extra strings to keep out of messages.  A 404 raises
        :class:`_NotFound` and a 409 :class:`_Conflict` for the caller to
        interpret.  Other exceptions (programming errors) pass unchanged.
        """
        try:
            return func()
        except (ks_exc.ClientException, heat_exc.BaseException) as exc:
            error = self._translate(what, exc, bad_request, secrets)
        log.debug("provider %s: %s failed: %s", self.name, what, error)
        raise error

    def _translate(
        self, what: str, exc: Exception, bad_request: type[ProviderError], secrets: tuple[str, ...]
    ) -> ProviderError:
        prefix = f"provider {self.name!r}"

        def msg(text: str) -> str:
            return self._scrub(text, secrets)

        if isinstance(exc, (ks_exc.Unauthorized, heat_exc.HTTPUnauthorized, ks_exc.AuthorizationFailure)):
            return ProviderAuthError(f"{prefix}: authentication failed: {msg(self._detail(exc))}")
        if isinstance(exc, (ks_exc.Forbidden, heat_exc.HTTPForbidden)):
            return ProviderAuthError(f"{prefix}: permission denied ({what}): {msg(self._detail(exc))}")
        if isinstance(exc, ks_exc.SSLError):
            # Not transient: a certificate problem stays until the operator fixes it.
            return ProviderConfigError(f"{prefix}: TLS error ({what}): {msg(str(exc))}")
        if isinstance(exc, (ks_exc.ConnectionError, heat_exc.CommunicationError)):
            # ConnectFailure, ConnectTimeout (keystoneauth1 raises it for read time-outs too), resets.
            return TransientProviderError(f"{prefix}: cannot reach OpenStack ({what}): {msg(str(exc))}")
        if isinstance(exc, ks_exc.DiscoveryFailure):
            if _caused_by_connection(exc):
                return TransientProviderError(f"{prefix}: cannot reach Keystone ({what}): {msg(str(exc))}")
            return ProviderError(f"{prefix}: Keystone discovery failed ({what}): {msg(str(exc))}")
        if isinstance(exc, ks_exc.EndpointNotFound):
            return _NoEndpoint(f"{prefix}: {msg(str(exc))} (interface {self.interface!r}, region {self.region_name!r})")
        if isinstance(exc, (ks_exc.AuthPluginException, ks_exc.MissingAuthMethods)):
            return ProviderConfigError(f"{prefix}: credentials are incomplete: {msg(str(exc))}")
        status = self._status(exc)
        detail = msg(self._detail(exc))
        if status is not None:
            if status == 404:
                return _NotFound(f"{prefix}: {what}: not found: {detail}")
            if status == 409:
                return _Conflict(f"{prefix}: {what}: conflict: {detail}")
            if status >= 500 or status in (408, 429):
                return TransientProviderError(f"{prefix}: OpenStack answered HTTP {status} ({what}): {detail}")
            if status == 400:
                if bad_request is TemplateError:
                    return TemplateError(f"{prefix}: Heat rejected the template: {detail}")
                return bad_request(f"{prefix}: {what}: {detail}")
            return ProviderError(f"{prefix}: {what}: HTTP {status}: {detail}")
        return ProviderError(f"{prefix}: {what}: {detail}")

    @staticmethod
    def _status(exc: Exception) -> int | None:
        for attr in ("http_status", "code"):
            value = getattr(exc, attr, None)
            if isinstance(value, int):
                return value
        return None

    @staticmethod
    def _detail(exc: Exception) -> str:
        """The server's own message, without heatclient's "ERROR: " and never a traceback."""
        error = getattr(exc, "error", None)
        if isinstance(exc, heat_exc.HTTPException) and isinstance(error, dict):
            inner = error.get("error")
            if isinstance(inner, dict) and inner.get("message"):
                return str(inner["message"])
        text = str(exc)
        return text[len("ERROR: ") :] if text.startswith("ERROR: ") else text

    # -- helpers -------------------------------------------------------------

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ProviderError(f"provider {self.name!r}: invalid stack name {name!r}")

    def _find(self, name: str) -> Any | None:
        """Heat's stack ``name`` (with resolved outputs), or ``None`` if it does not exist.

        A ``DELETE_COMPLETE`` stack counts as absent: Heat can still resolve
        the name of a stack it has just deleted, and nothing may act on it.
        """
        heat = self._client()
        try:
            stack = self._call(f"look up stack {name}", lambda: heat.stacks.get(name))
        except _NotFound:
            return None
        return None if stack.stack_status == states.DELETE_COMPLETE else stack

    def _progress(self, name: str, stack: Any, action: str) -> float | None:
        """Fraction of the stack's resources that finished ``action``; ``None`` if unknown.

        Counts ``<ACTION>_COMPLETE`` rather than any ``*_COMPLETE``: with
        Heat's convergence engine, resources not yet started are listed as
        ``INIT_COMPLETE`` (and during a resume, ``SUSPEND_COMPLETE``).
        """
        heat = self._client()
        try:
            resources = self._call(
                f"list resources of {name}", lambda: heat.resources.list(f"{stack.stack_name}/{stack.id}")
            )
        except ProviderError as error:
            log.debug("provider %s: no progress for %s: %s", self.name, name, error)
            return None
        if not resources:
            return None
        done = sum(1 for r in resources if getattr(r, "resource_status", "") == f"{action}_COMPLETE")
        return done / len(resources)

    def _to_provider_stack(self, name: str, stack: Any) -> ProviderStack:
        """Turn Heat's stack into a :class:`ProviderStack` (see :meth:`get` for the rules)."""
        status = str(stack.stack_status)
        reason = str(getattr(stack, "stack_status_reason", "") or "")
        extra: dict[str, Any] = {"stack_id": stack.id}
        action = status.split("_", 1)[0]
        if status.endswith("_IN_PROGRESS"):
            return ProviderStack(name, status, reason, progress=self._progress(name, stack, action), extra=extra)
        if status == states.DELETE_COMPLETE or not status.endswith("_COMPLETE"):
            return ProviderStack(name, status, reason, extra=extra)
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for output in getattr(stack, "outputs", None) or []:
            key = output.get("output_key")
            if output.get("output_error"):
                errors[key] = str(output["output_error"])
            elif output.get("output_value") is not None:
                values[key] = output["output_value"]
        if "reboot_on_resume" in values:
            extra["reboot_on_resume"] = _as_bool(values["reboot_on_resume"])
        for protocol in ("vnc", "rdp"):
            endpoint = values.get(protocol)
            if isinstance(endpoint, str) and endpoint.strip():
                extra[protocol] = endpoint.strip()
        outputs, problem = self._outputs(values, errors)
        if problem and status in states.UP:
            # A template problem, reported where the lifecycle looks: as a failed create.
            return ProviderStack(name, states.CREATE_FAILED, problem, extra=extra)
        return ProviderStack(name, status, reason, outputs=outputs, extra=extra)

    @staticmethod
    def _outputs(values: Mapping[str, Any], errors: Mapping[str, str]) -> tuple[StackOutputs | None, str]:
        """``(outputs, "")`` or ``(None, why the template's outputs are unusable)``."""
        for key in ("public_ip", "private_key"):
            if key in errors:
                return None, f"the template's {key} output could not be resolved: {_shorten(errors[key], 200)}"
        public_ip = values.get("public_ip")
        if not isinstance(public_ip, str) or not public_ip.strip():
            return None, "the template has no public_ip output"
        # private_key may be missing or empty when the worker made the key pair
        # (stack_key_type); the lifecycle checks that some key exists.
        private_key = values.get("private_key") or ""
        if not isinstance(private_key, str):
            return None, "the template's private_key output is not text"
        port: Any = values.get("ssh_port", DEFAULT_SSH_PORT)
        try:
            port = int(port)
        except (TypeError, ValueError):
            port = 0
        if not 0 < port < 65536:
            return None, "the template's ssh_port output is not a port number"
        password = values.get("password")
        return (
            StackOutputs(
                public_ip=public_ip.strip(),
                private_key=private_key,
                password=str(password) if password not in (None, "") else None,
                ssh_port=port,
            ),
            "",
        )

    def _settle(self, name: str, action: str) -> ProviderStack:
        """After starting ``action``, return the stack once Heat shows that action (or the stack is gone).

        Bounded by :data:`ACTION_SETTLE_SECONDS`; after that the stack is
        reported as ``<ACTION>_IN_PROGRESS`` so that the caller keeps polling.
        """
        deadline = time.monotonic() + ACTION_SETTLE_SECONDS
        while True:
            current = self.get(name)
            if current.status.startswith(action + "_") or current.status == states.DELETE_COMPLETE:
                return current
            if time.monotonic() >= deadline:
                log.warning("provider %s: %s of %s not visible yet (still %s)", self.name, action, name, current.status)
                return ProviderStack(name, f"{action}_IN_PROGRESS", current.status_reason, extra=current.extra)
            time.sleep(ACTION_SETTLE_POLL)

    # -- keypairs ------------------------------------------------------------

    def _compute_filter(self) -> dict[str, Any]:
        return {"service_type": "compute", "interface": self.interface, "region_name": self.region_name}

    def _has_compute(self) -> bool:
        """Whether the catalog has a compute endpoint (authenticates if needed)."""
        session = self.session()
        try:
            return bool(
                self._call("look up the compute endpoint", lambda: session.get_endpoint(**self._compute_filter()))
            )
        except _NoEndpoint:
            return False

    def _create_keypair(self, name: str, public_key: str) -> None:
        """Create Nova keypair ``name`` holding ``public_key``; an old one of that name is replaced."""
        session = self.session()
        body = {"keypair": {"name": name, "public_key": public_key}}

        def post() -> Any:
            return session.post(
                "/os-keypairs", json=body, endpoint_filter=self._compute_filter(), logger=_http_log, raise_exc=True
            )

        try:
            self._call(f"create keypair {name}", post, bad_request=TemplateError)
        except _Conflict:
            # Left over from an earlier attempt whose stack create failed: start afresh.
            self._delete_keypair(name)
            self._call(f"create keypair {name}", post, bad_request=TemplateError)

    def _delete_keypair(self, name: str) -> None:
        """Delete Nova keypair ``name``; absent (or no compute service) counts as deleted."""
        if not self._has_compute():
            return
        session = self.session()
        with contextlib.suppress(_NotFound):  # already gone
            self._call(
                f"delete keypair {name}",
                lambda: session.delete(
                    f"/os-keypairs/{name}", endpoint_filter=self._compute_filter(), logger=_http_log, raise_exc=True
                ),
            )

    # -- the contract ------------------------------------------------------------

    def create(
        self,
        name: str,
        template: str,
        environment: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> ProviderStack:
        """Start creating stack ``name`` from HOT ``template`` text; return it (``CREATE_IN_PROGRESS``).

        ``environment`` is optional environment text.  Parameters are passed
        as given, except ``public_key``/``key_name`` (only when declared;
        see the module docstring for the keypair).  The stack is created
        with ``disable_rollback`` so that a failure stays visible as
        ``CREATE_FAILED`` with Heat's reason.  If the stack exists already
        (a retried call), its current state is returned.

        Raises :class:`TemplateError` for a template or environment that
        does not parse or that Heat rejects (Heat's message, e.g. a missing
        parameter), and for ``key_name`` on a cloud without compute.
        """
        self._check_name(name)
        template_doc = parse_document(template, "template")
        if template_doc is None:
            raise TemplateError("the Heat template is empty")
        environment_doc = parse_document(environment, "environment")
        declared = declared_parameters(template_doc)
        params = dict(parameters or {})
        for key in OPTIONAL_PARAMETERS:
            if key in params and key not in declared:
                del params[key]
        public_key = (parameters or {}).get("public_key")
        keypair = bool(public_key) and "key_name" in declared
        if keypair:
            if not self._has_compute():
                raise TemplateError("the template declares key_name but this cloud has no compute service")
            self._create_keypair(name, str(public_key))
            params["key_name"] = name
        # Keep parameter values that look secret out of messages (Heat may echo them).
        secrets = tuple(str(v) for k, v in params.items() if v and any(s in k for s in SECRET_PARAMETER_HINTS))
        fields: dict[str, Any] = {
            "stack_name": name,
            "template": template_doc,
            "parameters": params,
            "disable_rollback": True,
        }
        if environment_doc is not None:
            fields["environment"] = environment_doc
        heat = self._client()
        try:
            body = self._call(
                f"create stack {name}", lambda: heat.stacks.create(**fields), bad_request=TemplateError, secrets=secrets
            )
        except _Conflict:
            current = self.get(name)
            if current.status == states.DELETE_COMPLETE:
                # The name is still held by a stack Heat has just deleted (a
                # reset creates the new stack right after the old one is
                # gone); this is not "exists already": try again shortly.
                raise TransientProviderError(
                    f"provider {self.name!r}: the name {name} is still held by a deleted stack"
                ) from None
            log.info("provider %s: stack %s exists already; reporting it", self.name, name)
            return current
        except TransientProviderError:
            # Heat may have created the stack before the error (a read time-out): keep
            # the keypair its servers may still need; a retry replaces it anyway.
            raise
        except ProviderError:
            if keypair:
                self._forget_keypair(name)
            raise
        stack_id = (body or {}).get("stack", {}).get("id")
        log.info("provider %s: creating stack %s (%s)", self.name, name, stack_id)
        # Heat stores the stack as CREATE_IN_PROGRESS before it answers.
        return ProviderStack(name, states.CREATE_IN_PROGRESS, extra={"stack_id": stack_id})

    def _forget_keypair(self, name: str) -> None:
        try:
            self._delete_keypair(name)
        except ProviderError as error:
            log.warning("provider %s: could not delete keypair %s after a failed create: %s", self.name, name, error)

    def get(self, name: str) -> ProviderStack:
        """Return the stack as Heat shows it now (``DELETE_COMPLETE`` if Heat does not know it).

        ``status``/``status_reason`` are Heat's ``stack_status`` and
        ``stack_status_reason`` as they are.  While ``*_IN_PROGRESS``,
        ``progress`` is the fraction of resources that finished the action
        (``None`` when that cannot be read).  Once ``*_COMPLETE`` the
        outputs are read; on ``CREATE_COMPLETE``/``RESUME_COMPLETE`` a
        missing ``public_ip`` output (or an unusable one) turns the status into
        ``CREATE_FAILED`` with the reason.  ``extra`` has ``stack_id`` and,
        if the template has that output, ``reboot_on_resume`` (deprecated).
        """
        self._check_name(name)
        stack = self._find(name)
        if stack is None:
            return ProviderStack(name, states.DELETE_COMPLETE)
        return self._to_provider_stack(name, stack)

    def suspend(self, name: str) -> ProviderStack:
        """Start suspending the stack; return it (``SUSPEND_*``, or ``DELETE_COMPLETE`` if absent).

        A stack already suspended (or suspending) is returned as it is.
        """
        return self._action(name, "SUSPEND", lambda heat, ident: heat.actions.suspend(ident))

    def resume(self, name: str) -> ProviderStack:
        """Start resuming the stack; return it (``RESUME_*``, or ``DELETE_COMPLETE`` if absent).

        Outputs are in the result once it is ``RESUME_COMPLETE``.  A stack
        that was already resumed (or is resuming) is returned as it is.
        """
        return self._action(name, "RESUME", lambda heat, ident: heat.actions.resume(ident))

    def _action(self, name: str, action: str, start: Callable[[Any, str], Any]) -> ProviderStack:
        self._check_name(name)
        stack = self._find(name)
        if stack is None:
            return ProviderStack(name, states.DELETE_COMPLETE)
        if stack.stack_status in (f"{action}_COMPLETE", f"{action}_IN_PROGRESS", states.DELETE_IN_PROGRESS):
            # Done or under way (a retried call), or being deleted: asking Heat
            # again would only get a 409.
            return self._to_provider_stack(name, stack)
        heat = self._client()
        ident = f"{stack.stack_name}/{stack.id}"
        try:
            self._call(f"{action.lower()} stack {name}", lambda: start(heat, ident))
        except _NotFound:
            return ProviderStack(name, states.DELETE_COMPLETE)
        log.info("provider %s: %s of stack %s started", self.name, action.lower(), name)
        return self._settle(name, action)

    def delete(self, name: str) -> ProviderStack:
        """Start deleting the stack and delete its keypair; absent counts as deleted.

        Returns ``DELETE_IN_PROGRESS`` (or ``DELETE_COMPLETE``).  Safe to
        call again while a delete runs: Heat is not asked twice, but the
        keypair deletion is retried (so a transient compute error can be
        retried by calling delete again).
        """
        self._check_name(name)
        stack = self._find(name)
        if stack is not None and stack.stack_status != states.DELETE_IN_PROGRESS:
            heat = self._client()
            ident = f"{stack.stack_name}/{stack.id}"
            try:
                self._call(f"delete stack {name}", lambda: heat.stacks.delete(ident))
                log.info("provider %s: deleting stack %s", self.name, name)
            except _NotFound:
                stack = None
        self._delete_keypair(name)
        if stack is None:
            return ProviderStack(name, states.DELETE_COMPLETE)
        return self._settle(name, "DELETE")

    def list(self) -> list[str]:
        """Names of the project's stacks (all pages), without those already ``DELETE_COMPLETE``."""
        heat = self._client()
        names: list[str] = []
        marker: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": LIST_PAGE_SIZE}
            if marker:
                kwargs["marker"] = marker
            # heatclient returns a lazy generator: materialise it inside the error edge.
            page = self._call("list stacks", lambda kwargs=kwargs: [*heat.stacks.list(**kwargs)])
            names.extend(s.stack_name for s in page if s.stack_status != states.DELETE_COMPLETE)
            if len(page) < LIST_PAGE_SIZE:
                return names
            marker = page[-1].id


def _as_bool(value: Any) -> bool:
    """A Heat output as a bool (outputs may be real booleans or strings such as "true")."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes", "on")
