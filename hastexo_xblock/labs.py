"""The lab API that the block (and later the admin and jobs) use.

``status`` decides what a learner's request means for their stack — launch,
resume, wait, report or recover — and enqueues at most one launch per stack:
the claim is a conditional update of the row, so twenty simultaneous requests
(two tabs, retries) start exactly one launch.

The request path reads; workers act.  Nothing here calls a provider: a
launch that lost its worker (``liveness``) is handed to a new attempt, and a
pending state past its deadline is handed to a ``recover`` task.  A status
poll for a lab with nothing to do costs the one ``SELECT`` that found its
row.

This module does not import XBlock: the block passes plain values in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from . import dispatch, fields, liveness, messages, names, states, timing
from .conf import Settings, get_settings
from .gateway import tickets
from .legacy import settings as legacy_settings
from .models import Stack, transition
from .usage import usage_seconds

log = logging.getLogger(__name__)


class LabError(Exception):
    """A request cannot be served; the message is for the learner."""


@dataclass(frozen=True)
class LabSpec:
    """What the author configured for a lab (from the block's fields), no secrets."""

    template: str = ""
    providers: list[dict[str, Any]] = field(default_factory=list)
    ssh_user: str = ""
    protocol: str = "ssh"
    key_type: str = ""
    launch_timeout: int | None = None
    suspend_timeout: int | None = None
    delete_age: int | None = None
    ports: list[dict[str, Any]] = field(default_factory=list)
    hook_script: str = ""
    hook_events: dict[str, bool] = field(default_factory=dict)
    #: The original's single ``provider`` attribute (deprecated there): used when ``providers`` is empty.
    provider: str = ""

    def provider_entries(self, settings: Settings) -> list[dict[str, Any]]:
        """The providers a launch tries, in order, as the original chose them.

        The block's ``providers``; else its ``provider`` attribute; else the
        platform's provider called ``default``, or the first one configured.
        """
        if self.providers:
            return [dict(p) for p in self.providers]
        name = self.provider
        if not name:
            known = [*settings["providers"], *settings.unavailable_providers]
            name = "default" if "default" in known else next(iter(settings["providers"]), "")
        return [{"name": name, "capacity": -1, "template": self.template, "environment": None}] if name else []

    def provider_problems(self, settings: Settings) -> list[str]:
        """ "provider X is not configured here" for each provider the launch would try that cannot be used."""
        problems = (settings.provider_problem(str(entry.get("name", ""))) for entry in self.provider_entries(settings))
        return [problem for problem in problems if problem]

    def as_dict(self, settings: Settings) -> dict[str, Any]:
        """The spec as stored on the row for the worker, providers filled in from settings."""
        providers = self.provider_entries(settings)
        return {
            "template": self.template,
            "providers": providers,
            "ssh_user": self.ssh_user,
            "protocol": self.protocol,
            "key_type": self.key_type,
            "launch_timeout": self.launch_timeout or settings["launch_timeout"],
            "ports": list(self.ports),
            "hook_script": self.hook_script,
            "hook_events": dict(self.hook_events),
        }


def get_stack(course_id: str | None, learner_id: str, learner: Any = None) -> Stack:
    """The learner's stack row in this course run, created if missing (race-safe).

    One indexed ``SELECT`` (the unique ``course_id, anonymous_user_id``) when
    the row exists.  ``learner`` (the Django user, or a callable returning
    it) is only needed, and a callable only called, when the row is created.
    """
    course = course_id or names.WORKBENCH_COURSE
    stack = Stack.objects.filter(course_id=course, anonymous_user_id=learner_id).first()
    if stack is not None:
        return stack
    if callable(learner):
        learner = learner()
    try:
        with transaction.atomic():
            return Stack.objects.create(
                name=names.stack_name(course_id, learner_id),
                course_id=course,
                anonymous_user_id=learner_id,
                learner=learner,
            )
    except IntegrityError:
        # Another request created it between our look-up and insert.
        return Stack.objects.get(course_id=course, anonymous_user_id=learner_id)


def phase_text(phase: str) -> str:
    """The learner-facing text for a launch phase."""
    return {
        states.PHASE_QUEUED: _("Waiting for a worker…"),
        states.PHASE_PROVIDER: _("Starting your lab…"),
        states.PHASE_BOOTING: _("Your lab is booting…"),
        states.PHASE_SSH: _("Connecting to your lab…"),
        states.PHASE_HOOK: _("Preparing your lab…"),
        states.PHASE_READY: _("Your lab is ready."),
    }.get(phase, "")


def view(stack: Stack) -> dict[str, Any]:
    """The JSON the status handler returns (no secrets, no addresses)."""
    pending = stack.status in states.PENDING
    return {
        "status": stack.status,
        "error_msg": messages.render(stack.error_msg),
        "name": stack.name,
        "up": stack.status in states.UP,
        "pending": pending,
        "failed": stack.status in states.FAILED,
        "suspended": stack.status in states.SUSPENDED,
        "phase": stack.phase if pending or stack.status in states.UP else "",
        "phase_text": phase_text(stack.phase) if pending else "",
        "progress": round(stack.progress, 3),
    }


def _claim_launch(stack: Stack, spec: LabSpec, settings: Settings, reset: bool) -> tuple[int, datetime] | None:
    """Move the stack to LAUNCH_PENDING if it may launch; return ``(attempt, status_deadline)`` or ``None``."""
    allowed = states.LAUNCHABLE | (states.UP if reset else frozenset())
    timeout = spec.launch_timeout or settings["launch_timeout"]
    won = transition(
        stack.pk,
        states.LAUNCH_PENDING,
        allowed_from=allowed,
        attempt=F("attempt") + 1,
        spec=spec.as_dict(settings),
        suspend_timeout=spec.suspend_timeout,
        delete_age=spec.delete_age,
        protocol=spec.protocol,
        phase=states.PHASE_QUEUED,
        progress=states.PHASE_PROGRESS[states.PHASE_QUEUED],
        status_deadline=timezone.now() + timedelta(seconds=timeout + timing.RECOVERY_MARGIN),
        heartbeat_at=None,
        delete_attempts=0,
    )
    if not won:
        return None
    row = Stack.objects.values("attempt", "status_deadline").get(pk=stack.pk)
    return row["attempt"], row["status_deadline"]


def _send_launch(stack: Stack, attempt: int, due: datetime | None, reset: bool, send: dispatch.Send) -> None:
    """Enqueue launch ``attempt``; if the broker refuses, end it with a learner message (no trap)."""
    try:
        send("launch", stack.pk, attempt, reset=reset, due=due)
    except Exception:
        log.exception("stack %s: could not enqueue the launch", stack.name)
        transition(
            stack.pk,
            states.LAUNCH_ERROR,
            allowed_from=states.LAUNCHING,
            if_attempt=attempt,
            error_msg=messages.stored("launch.enqueue_failed"),
            status_deadline=None,
            heartbeat_at=None,
            phase="",
            progress=0.0,
        )


def watch(stack: Stack, settings: Settings, send: dispatch.Send, now: datetime | None = None) -> bool:
    """Hand a dead launch or an overdue pending state to the workers; return whether anything was sent.

    Database only (no provider): a launch whose heartbeat is older than
    ``heartbeat_timeout`` is relaunched as a new attempt, and a pending
    state past its deadline gets a ``recover`` task.  Used by status
    requests and by the periodic job (``jobs.recover_overdue``).
    """
    if stack.status not in states.PENDING:
        return False
    now = now or timezone.now()
    if liveness.launch_is_dead(stack, settings["heartbeat_timeout"], now):
        attempt = liveness.claim_relaunch(stack)
        if attempt is not None:
            _send_launch(stack, attempt, stack.status_deadline, False, send)
            return True
        return False
    if liveness.is_overdue(stack, now):
        token = liveness.claim_recovery(stack, now)
        if token is not None:
            log.warning("stack %s: %s past its deadline; recovering it", stack.name, stack.status)
            try:
                send("recover", stack.pk, token.isoformat())
            except Exception:
                log.exception("stack %s: could not enqueue its recovery", stack.name)
            return True
    return False


def status(
    stack: Stack,
    spec: LabSpec,
    *,
    initialize: bool = False,
    reset: bool = False,
    enqueue: dispatch.Send | None = None,
) -> dict[str, Any]:
    """Decide what to do for a learner's status request, do it, and return :func:`view`.

    - ``initialize``: launch when the stack is absent, suspended or failed;
      keep it alive when it is up.
    - ``reset``: delete and create anew (also from an up stack).
    - a launch that lost its worker, or a pending state past its deadline,
      is handed to the workers (see :func:`watch`).
    ``enqueue(task_name, *args, due=…, **kwargs)`` defaults to :func:`dispatch.send`.

    With nothing to do (a running lab polled without ``initialize``, a
    launch in progress) no query is made: the caller's row is the answer.
    """
    settings = get_settings()
    enqueue = enqueue or dispatch.send
    changed = watch(stack, settings, enqueue)

    notice = ""
    if (initialize or reset) and stack.status not in states.UP | states.PENDING:
        refusal, notice = _usage_check(stack, settings)
        if refusal:
            return {**view(stack), "failed": True, "blocked": True, "error_msg": refusal}
        refusal = _provider_refusal(stack, spec, settings)
        if refusal:
            return {**view(stack), "failed": True, "error_msg": refusal}

    if (initialize and stack.status not in states.PENDING | states.UP) or reset:
        claimed = _claim_launch(stack, spec, settings, reset)
        changed = True
        if claimed is not None:
            attempt, due = claimed
            log.info("stack %s: launch %d claimed (reset=%s)", stack.name, attempt, reset)
            _send_launch(stack, attempt, due, reset, enqueue)
    elif initialize and stack.status in states.UP:
        keepalive(stack)
    if stack.spec.get("adopted_from") and stack.status in states.UP:
        # A running lab adopted from the original hastexo XBlock carries the settings the
        # original recorded; from the learner's first visit on it follows the block's
        # (ports, hook events, key type), as a launch would have written them.
        Stack.objects.filter(pk=stack.pk, spec__adopted_from=stack.spec["adopted_from"]).update(
            spec=spec.as_dict(settings)
        )
        changed = True
    if changed:
        stack.refresh_from_db()
    return {**view(stack), "notice": notice} if notice else view(stack)


def _provider_refusal(stack: Stack, spec: LabSpec, settings: Settings) -> str:
    """The learner's message when none of the lab's providers can be used here ("" when one can).

    A provider the block names but this platform does not configure (or
    refused, such as the original's ``gcloud``) is reported by name, so the
    learner can tell staff what is wrong; other providers of the block are
    still tried when one of them is configured.
    """
    entries = spec.provider_entries(settings)
    problems = spec.provider_problems(settings)
    if not problems:
        return ""
    if len(problems) < len(entries):
        log.warning("stack %s: %s; the block's other providers are tried", stack.name, "; ".join(problems))
        return ""
    log.error("stack %s: no launch: %s", stack.name, "; ".join(problems))
    named = []
    for entry in entries:
        name = str(entry.get("name", ""))
        reason = settings.unavailable_providers.get(name)
        text = _("provider %(name)s is not configured here") % {"name": name}
        named.append(f"{text} ({legacy_settings.short_reason(reason)})" if reason else text)
    return _("This lab cannot start: %(problem)s.") % {"problem": "; ".join(named)}


def _usage_check(stack: Stack, settings: Settings) -> tuple[str, str]:
    """``(refusal, notice)`` for a launch under ``lab_usage_limit``; both empty when within it.

    Policy ``block`` refuses the launch, ``warn`` lets it go on with a
    notice, no policy only logs.
    """
    limit = settings["lab_usage_limit"]
    if not limit:
        return "", ""
    used = usage_seconds(learner=stack.learner, anonymous_user_id=stack.anonymous_user_id)
    if used < limit:
        return "", ""
    policy = settings["lab_usage_limit_breach_policy"]
    log.info("stack %s: learner over the lab usage limit (%.0f of %d s; policy %s)", stack.name, used, limit, policy)
    hours = limit / 3600
    if policy == "block":
        return _("You have used all of your lab time (%(hours).1f hours).") % {"hours": hours}, ""
    if policy == "warn":
        return "", _("You have used all of your lab time (%(hours).1f hours).") % {"hours": hours}
    return "", ""


def keepalive(stack: Stack) -> None:
    """Push the stack's suspension forward: the learner is looking at it."""
    timeout = stack.suspend_timeout or get_settings()["suspend_timeout"]
    Stack.objects.filter(pk=stack.pk, status__in=states.UP).update(
        suspend_by=timezone.now() + timedelta(seconds=timeout)
    )


def set_port(stack: Stack, port: int | None) -> None:
    """Remember the learner's port choice on the stack (``None``: the default; the caller has checked it)."""
    Stack.objects.filter(pk=stack.pk).update(port=port)


def page_origin(headers: Mapping[str, str], scheme: str, host: str) -> str:
    """The origin (``http(s)://host``) of the page that asks, as the browser saw it.

    Behind a TLS-terminating proxy the request reaches the LMS as plain HTTP,
    so the request's own scheme would give the page a ``ws://`` URL that an
    ``https://`` page may not open.  The scheme is taken, in this order, from
    the browser's ``Origin`` header (same host only), the proxy's
    ``X-Forwarded-Proto`` (its first value), then the request.  Only the scheme
    is taken from headers, never the host, and either way a client can only
    change the URL it is sent itself.
    """
    origin = urlsplit(headers.get("Origin") or "")
    forwarded = (headers.get("X-Forwarded-Proto") or "").split(",")[0].strip().lower()
    if origin.scheme in ("http", "https") and origin.netloc.lower() == host.lower():
        scheme = origin.scheme
    elif forwarded in ("http", "https"):
        scheme = forwarded
    return f"{scheme}://{host}"


def gateway_url(settings: Settings, base_url: str | None = None) -> str:
    """The websocket URL of the gateway, absolute (``ws://`` or ``wss://``).

    ``gateway_url`` may be absolute or a path; a path is resolved against
    ``base_url`` (the page's origin, ``http(s)://host``).
    """
    configured = settings["gateway_url"]
    if urlsplit(configured).scheme in ("ws", "wss"):
        return configured
    if not base_url:
        raise LabError(_("The lab gateway is not configured."))
    absolute = urljoin(base_url, configured)
    return "wss" + absolute[5:] if absolute.startswith("https") else "ws" + absolute[4:]


def ticket_url(
    stack: Stack,
    *,
    actor: str,
    read_only: bool,
    port: int | None = None,
    terminal: bool = False,
    base_url: str | None = None,
) -> tuple[str, str]:
    """Mint a ticket for the gateway; return the URL to open with it and the ticket's protocol.

    The ticket is for the lab's own protocol (``stack.protocol``) at ``port``
    (else the learner's stored choice; a port the lab no longer offers falls
    back to the default endpoint).  ``terminal`` asks for a terminal of a
    desktop lab instead: protocol ``ssh`` at the lab's own SSH login, which
    every lab has (the gateway reaches desktops through it).  Raises
    :class:`LabError` when the stack is not up.
    """
    settings = get_settings()
    if stack.status not in states.UP:
        raise LabError(_("Your lab is not running."))
    protocol = stack.protocol or "ssh"
    if terminal and protocol != "ssh":
        protocol, port = "ssh", None
    else:
        port = port if port is not None else stack.port
        if not fields.port_offered(port, stack.spec.get("ports")):
            port = None  # a choice the lab no longer offers: the default endpoint
    token = tickets.mint(
        settings.ticket_secret,
        stack_id=stack.pk,
        stack_name=stack.name,
        learner=stack.anonymous_user_id,
        protocol=protocol,
        port=port,
        read_only=read_only,
        actor=actor,
        ttl=settings["ticket_ttl"],
    )
    return f"{gateway_url(settings, base_url)}?{urlencode({'ticket': token})}", protocol
