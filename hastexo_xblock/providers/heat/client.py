"""The error edge and the connection to OpenStack: the only module that imports heatclient and keystoneauth1.

Loaded on a provider's first call to its cloud (in a worker), never by
settings validation or a request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from heatclient import client as heat_client
from heatclient import exc as heat_exc
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from keystoneauth1.identity.base import BaseIdentityPlugin

from ..base import ProviderAuthError, ProviderConfigError, ProviderError, TemplateError, TransientProviderError
from .config import DEFAULT_DOMAIN_ID, opt, v3_url
from .errors import Conflict, NoEndpoint, NotFound

log = logging.getLogger(__name__)

# keystoneauth1 logs every request and response body at DEBUG.  Heat's
# answers carry the ``private_key`` output and our create requests carry the
# template's parameters, so the HTTP traffic goes to a logger of its own that
# is capped at INFO: a root logger at DEBUG does not write secrets to disk.
# An operator who really wants the bodies can lower this logger's level.
http_log = logging.getLogger("hastexo_xblock.providers.heat.http")
http_log.setLevel(logging.INFO)

#: The exceptions of the OpenStack libraries, for the caller's ``except`` clause.
OPENSTACK_ERRORS = (ks_exc.ClientException, heat_exc.BaseException)


def build_auth(config: Mapping[str, Any]) -> BaseIdentityPlugin:
    """The keystoneauth1 plugin for the configured credentials (precedence: app credential, token, password)."""
    c = config
    auth_url = v3_url(opt(c, "os_auth_url"))
    user: dict[str, Any] = {}
    if opt(c, "os_user_id"):
        user["user_id"] = opt(c, "os_user_id")
    elif opt(c, "os_username"):
        user["username"] = opt(c, "os_username")
        if opt(c, "os_user_domain_name") and not opt(c, "os_user_domain_id"):
            user["user_domain_name"] = opt(c, "os_user_domain_name")
        else:
            user["user_domain_id"] = opt(c, "os_user_domain_id") or DEFAULT_DOMAIN_ID
    project: dict[str, Any] = {}
    if opt(c, "os_project_id"):
        project["project_id"] = opt(c, "os_project_id")
    elif opt(c, "os_project_name"):
        project["project_name"] = opt(c, "os_project_name")
        if opt(c, "os_project_domain_name") and not opt(c, "os_project_domain_id"):
            project["project_domain_name"] = opt(c, "os_project_domain_name")
        else:
            project["project_domain_id"] = opt(c, "os_project_domain_id") or DEFAULT_DOMAIN_ID
    secret = opt(c, "os_application_credential_secret")
    if secret:
        app: dict[str, Any] = {"application_credential_secret": secret}
        if opt(c, "os_application_credential_id"):
            app["application_credential_id"] = opt(c, "os_application_credential_id")
        else:
            app["application_credential_name"] = opt(c, "os_application_credential_name")
            app.update(user)
        return v3.ApplicationCredential(auth_url=auth_url, **app)
    if opt(c, "os_auth_token"):
        return v3.Token(auth_url=auth_url, token=opt(c, "os_auth_token"), **project)
    return v3.Password(auth_url=auth_url, password=opt(c, "os_password"), **user, **project)


def new_session(config: Mapping[str, Any], verify: bool | str, timeout: float) -> ks_session.Session:
    """A keystoneauth1 session for ``config`` (no I/O until its first request)."""
    return ks_session.Session(auth=build_auth(config), verify=verify, timeout=timeout)


def new_client(session: ks_session.Session, interface: str, region_name: str | None, endpoint: str | None) -> Any:
    """A Heat client on ``session``."""
    return heat_client.Client(
        "1",
        session=session,
        interface=interface,
        region_name=region_name,
        endpoint_override=endpoint or None,
        logger=http_log,
    )


def translate(
    provider: Any, what: str, exc: Exception, bad_request: type[ProviderError], secrets: tuple[str, ...]
) -> ProviderError:
    """The provider error for OpenStack exception ``exc`` (``provider`` scrubs its credentials out).

    The message is the operator's detail (it may name URLs, hosts and
    TLS problems; never a credential); the learner sees only the error
    class's catalog message (``ProviderError.learner``).
    """
    prefix = f"provider {provider.name!r}"

    def msg(text: str) -> str:
        return provider._scrub(text, secrets)

    if isinstance(exc, (ks_exc.Unauthorized, heat_exc.HTTPUnauthorized, ks_exc.AuthorizationFailure)):
        return ProviderAuthError(f"{prefix}: authentication failed: {msg(detail_of(exc))}")
    if isinstance(exc, (ks_exc.Forbidden, heat_exc.HTTPForbidden)):
        return ProviderAuthError(f"{prefix}: permission denied ({what}): {msg(detail_of(exc))}")
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
        return NoEndpoint(
            f"{prefix}: {msg(str(exc))} (interface {provider.interface!r}, region {provider.region_name!r})"
        )
    if isinstance(exc, (ks_exc.AuthPluginException, ks_exc.MissingAuthMethods)):
        return ProviderConfigError(f"{prefix}: credentials are incomplete: {msg(str(exc))}")
    status = status_of(exc)
    detail = msg(detail_of(exc))
    if status is not None:
        if status == 404:
            return NotFound(f"{prefix}: {what}: not found: {detail}")
        if status == 409:
            return Conflict(f"{prefix}: {what}: conflict: {detail}")
        if status >= 500 or status in (408, 429):
            return TransientProviderError(f"{prefix}: OpenStack answered HTTP {status} ({what}): {detail}")
        if status == 400:
            if bad_request is TemplateError:
                return TemplateError(f"{prefix}: Heat rejected the template: {detail}")
            return bad_request(f"{prefix}: {what}: {detail}")
        return ProviderError(f"{prefix}: {what}: HTTP {status}: {detail}")
    return ProviderError(f"{prefix}: {what}: {detail}")


def status_of(exc: Exception) -> int | None:
    for attr in ("http_status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    return None


def detail_of(exc: Exception) -> str:
    """The server's own message, without heatclient's "ERROR: " and never a traceback."""
    error = getattr(exc, "error", None)
    if isinstance(exc, heat_exc.HTTPException) and isinstance(error, dict):
        inner = error.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    text = str(exc)
    return text[len("ERROR: ") :] if text.startswith("ERROR: ") else text


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
