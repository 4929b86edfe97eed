"""The :class:`HeatProvider` operations: create, get, suspend, resume, delete, list (see the package docstring)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ... import states, timing
from ..base import (
    Provider,
    ProviderError,
    ProviderStack,
    StackOutputs,
    TemplateError,
    TransientProviderError,
)
from . import config as config_module
from .config import (
    ACTION_SETTLE_POLL,
    ACTION_SETTLE_SECONDS,
    DEFAULT_INTERFACE,
    DEFAULT_TIMEOUT,
    LIST_PAGE_SIZE,
    NAME_RE,
    OPTIONAL_PARAMETERS,
    SECRET_KEYS,
    SECRET_PARAMETER_HINTS,
    as_bool,
    opt,
    shorten,
)
from .errors import Conflict, NoEndpoint, NotFound
from .outputs import parse_outputs
from .templates import declared_parameters, parse_document

log = logging.getLogger("hastexo_xblock.providers.heat")

T = TypeVar("T")

#: Polling Heat until it shows an action it has just accepted.
ACTION_SETTLE = timing.Backoff(ACTION_SETTLE_POLL, 1.0, ACTION_SETTLE_POLL)


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
        self.interface: str = opt(config, "os_interface") or DEFAULT_INTERFACE
        self.region_name: str | None = opt(config, "os_region_name")
        self.timeout = float(opt(config, "os_timeout") or DEFAULT_TIMEOUT)
        self.heat_endpoint: str | None = opt(config, "heat_endpoint")
        verify = opt(config, "os_verify")
        cacert = opt(config, "os_cacert")
        self.verify: bool | str = (cacert or True) if verify is not False else False
        self._secrets = [str(config[key]) for key in SECRET_KEYS if opt(config, key)]
        self._session: Any = None
        self._heat: Any = None
        self._lock = threading.Lock()
        if self.verify is False:
            log.warning("provider %s: TLS certificate verification is disabled (os_verify: false)", name)

    # -- configuration ---------------------------------------------------------

    @classmethod
    def validate_config(cls, name: str, config: Mapping[str, Any]) -> None:
        """Raise :class:`ProviderConfigError` naming the key that is wrong (see ``config.validate``)."""
        config_module.validate(name, config)

    def _auth(self) -> Any:
        """The keystoneauth1 plugin for the configured credentials (precedence: app credential, token, password)."""
        from . import client

        return client.build_auth(self.config)

    def session(self) -> Any:
        """The provider's keystoneauth1 session, created on first use (no I/O until a request)."""
        if self._session is None:
            from . import client  # the OpenStack libraries load here, in the worker that calls the cloud

            with self._lock:
                if self._session is None:
                    self._session = client.new_session(self.config, self.verify, self.timeout)
        return self._session

    def _client(self) -> Any:
        """The Heat client on :meth:`session`, created on first use."""
        if self._heat is None:
            session = self.session()
            from . import client

            with self._lock:
                if self._heat is None:
                    self._heat = client.new_client(session, self.interface, self.region_name, self.heat_endpoint)
        return self._heat

    # -- the error edge ----------------------------------------------------------

    def _scrub(self, text: str, extra: tuple[str, ...] = ()) -> str:
        """``text`` without any credential (or ``extra`` secret) in it, shortened."""
        for secret in (*self._secrets, *extra):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return shorten(text)

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
        :class:`NotFound` and a 409 :class:`Conflict` for the caller to
        interpret.  Other exceptions (programming errors) pass unchanged.
        """
        from . import client

        try:
            return func()
        except client.OPENSTACK_ERRORS as exc:
            error = self._translate(what, exc, bad_request, secrets)
        log.debug("provider %s: %s failed: %s", self.name, what, error)
        raise error

    def _translate(
        self, what: str, exc: Exception, bad_request: type[ProviderError], secrets: tuple[str, ...]
    ) -> ProviderError:
        from . import client

        return client.translate(self, what, exc, bad_request, secrets)

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
        except NotFound:
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
            extra["reboot_on_resume"] = as_bool(values["reboot_on_resume"])
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
        """``(outputs, "")`` or ``(None, why the template's outputs are unusable)`` (see ``outputs.py``)."""
        return parse_outputs(values, errors)

    def _settle(self, name: str, action: str) -> ProviderStack:
        """After starting ``action``, return the stack once Heat shows that action (or the stack is gone).

        Bounded by :data:`ACTION_SETTLE_SECONDS`; after that the stack is
        reported as ``<ACTION>_IN_PROGRESS`` so that the caller keeps polling.
        """
        seen: list[ProviderStack] = []

        def shown() -> ProviderStack | None:
            seen.append(self.get(name))
            current = seen[-1]
            return (
                current if current.status.startswith(action + "_") or current.status == states.DELETE_COMPLETE else None
            )

        try:
            return timing.poll(
                shown, timing.Deadline.after(ACTION_SETTLE_SECONDS), ACTION_SETTLE, what=f"{action} {name}"
            )
        except timing.Timeout:
            current = seen[-1]
            log.warning("provider %s: %s of %s not visible yet (still %s)", self.name, action, name, current.status)
            return ProviderStack(name, f"{action}_IN_PROGRESS", current.status_reason, extra=current.extra)

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
        except NoEndpoint:
            return False

    def _create_keypair(self, name: str, public_key: str) -> None:
        """Create Nova keypair ``name`` holding ``public_key``; an old one of that name is replaced."""
        from . import client

        session = self.session()
        body = {"keypair": {"name": name, "public_key": public_key}}

        def post() -> Any:
            return session.post(
                "/os-keypairs",
                json=body,
                endpoint_filter=self._compute_filter(),
                logger=client.http_log,
                raise_exc=True,
            )

        try:
            self._call(f"create keypair {name}", post, bad_request=TemplateError)
        except Conflict:
            # Left over from an earlier attempt whose stack create failed: start afresh.
            self._delete_keypair(name)
            self._call(f"create keypair {name}", post, bad_request=TemplateError)

    def _delete_keypair(self, name: str) -> None:
        """Delete Nova keypair ``name``; absent (or no compute service) counts as deleted."""
        if not self._has_compute():
            return
        from . import client

        session = self.session()
        with contextlib.suppress(NotFound):  # already gone
            self._call(
                f"delete keypair {name}",
                lambda: session.delete(
                    f"/os-keypairs/{name}",
                    endpoint_filter=self._compute_filter(),
                    logger=client.http_log,
                    raise_exc=True,
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
        except Conflict:
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
        except NotFound:
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
            except NotFound:
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
