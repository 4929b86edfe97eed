"""What a worker does to a stack: launch (create or resume), suspend, delete, recover.

Each function takes a stack id, reads everything else from the row (keys
never travel in task arguments), and is idempotent: a worker killed at any
line leaves a state that the next attempt continues from, because every step
looks at the provider's real state before it acts ("look up before create",
"gone counts as deleted").  Status changes go through
:func:`models.transition`, so a stale or duplicate task cannot overwrite a
newer decision.

This module does not import XBlock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import asyncssh
from django.utils import timezone

from . import compat, remote, states
from .conf import Settings, get_settings
from .messages import Message, stored
from .models import Stack, transition
from .providers import get_provider
from .providers.base import (
    Provider,
    ProviderAuthError,
    ProviderError,
    ProviderStack,
    TemplateError,
    TransientProviderError,
)

log = logging.getLogger(__name__)

#: Margin past a task's own time limit before a pending state counts as lost.
DEADLINE_MARGIN = 60

#: Longest an error message shown to a learner may be.
MAX_ERROR_LENGTH = 400


@dataclass
class Clock:
    """Time source and sleeper; tests substitute a fast one."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


CLOCK = Clock()


class LaunchFailed(Exception):
    """A launch cannot go on; ``status`` and the message (a catalog :class:`Message`) are what the learner sees."""

    def __init__(self, status: str, message: Message) -> None:
        super().__init__(str(message))
        self.status = status
        self.message = message


def shorten(text: str, limit: int = MAX_ERROR_LENGTH) -> str:
    """``text`` cut to ``limit`` characters for display (escaping is the view's job)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _set_phase(stack_id: int, attempt: int, phase: str, progress: float | None = None) -> None:
    # Progress is not a status change: no log row, no transition check.
    Stack.objects.filter(pk=stack_id, attempt=attempt).update(
        phase=phase, progress=states.PHASE_PROGRESS[phase] if progress is None else progress
    )


def _retrying(call: Callable[[], ProviderStack], deadline: float, what: str) -> ProviderStack:
    """Run a provider ``call``, retrying :class:`TransientProviderError` with backoff until ``deadline``."""
    delay = 0.5
    while True:
        try:
            return call()
        except TransientProviderError as error:
            remaining = deadline - CLOCK.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what}: provider kept failing: {error}") from None
            log.warning("%s: transient provider error, retrying in %.1f s: %s", what, min(delay, remaining), error)
            CLOCK.sleep(min(delay, remaining))
            delay = min(delay * 2, 10.0)


def _create_once(
    provider: Provider, name: str, template: str, environment: str | None, parameters: dict[str, Any], deadline: float
) -> ProviderStack:
    """``provider.create`` that never creates twice: after a transient error, look before retrying."""

    def attempt() -> ProviderStack:
        existing = provider.get(name)
        if existing.status != states.DELETE_COMPLETE:
            return existing  # a previous try (or a previous worker) got through
        return provider.create(name, template, environment, parameters)

    return _retrying(attempt, deadline, f"create {name}")


def _wait_for(
    provider: Provider,
    name: str,
    deadline: float,
    on_progress: Callable[[ProviderStack], None] | None = None,
    first_delay: float = 0.5,
    max_delay: float = 1.0,
) -> ProviderStack:
    """Poll ``provider.get(name)`` with backoff until its status is not ``*_IN_PROGRESS``.

    The delay grows from ``first_delay`` to ``max_delay``: a lab is seen up
    at most ``max_delay`` seconds after the provider finishes (the learner is
    waiting), at one cheap GET per launching lab and interval.

    Returns the final :class:`ProviderStack` (whatever its status: the caller
    checks it).  Transient provider errors are retried until ``deadline``;
    then ``TimeoutError`` is raised.
    """
    delay = first_delay
    while True:
        try:
            current = provider.get(name)
        except TransientProviderError as error:
            log.warning("provider %s: transient error polling %s: %s", provider.name, name, error)
            current = None
        if current is not None:
            if on_progress is not None:
                on_progress(current)
            if not current.status.endswith("_IN_PROGRESS"):
                return current
        remaining = deadline - CLOCK.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{name} did not finish in time on provider {provider.name}")
        CLOCK.sleep(min(delay, remaining))
        delay = min(delay * 1.5, max_delay)


def _occupied(course_id: str, provider_name: str) -> int:
    """How many stacks of ``course_id`` hold a place on ``provider_name``."""
    return Stack.objects.filter(course_id=course_id, provider=provider_name).exclude(status__in=states.ABSENT).count()


def _candidates(stack: Stack, settings: Settings) -> list[dict[str, Any]]:
    """The block's providers in order, those with room left (capacity −1 = unlimited, 0 = off)."""
    result = []
    for entry in stack.spec.get("providers", []):
        capacity = int(entry.get("capacity", -1))
        if capacity == 0:
            continue
        if capacity > 0 and _occupied(stack.course_id, entry["name"]) >= capacity:
            log.info("provider %s is full for %s (%d)", entry["name"], stack.course_id, capacity)
            continue
        if entry["name"] not in settings["providers"]:
            log.error("stack %s: provider %s is not configured", stack.name, entry["name"])
            continue
        result.append(entry)
    return result


def _read(stack: Stack, path: str | None, settings: Settings) -> str | None:
    if not path:
        return None
    try:
        return compat.read_course_file(stack.course_id, path, settings["template_dir"])
    except compat.CourseFileNotFound as error:
        raise LaunchFailed(
            states.LAUNCH_ERROR, Message("launch.template_problem", {"detail": shorten(error)})
        ) from None


#: ``stack_key_type`` values for which the worker generates the lab's key pair.
KEY_TYPES = {"rsa": "ssh-rsa", "ed25519": "ssh-ed25519"}


def _key_parameters(stack: Stack, attempt: int) -> dict[str, str]:
    """The ``public_key`` parameter when the block asks the worker for a key pair.

    The private key is stored (encrypted) on the row *before* the create, so a
    retried or redelivered launch reuses it rather than making a stack whose
    key nobody has.  Returns ``{}`` when the template makes its own key.
    """
    key_type = (stack.spec.get("key_type") or "").lower()
    if not key_type:
        return {}
    if key_type not in KEY_TYPES:
        raise LaunchFailed(states.LAUNCH_ERROR, Message("launch.unknown_key_type", {"key_type": repr(key_type)}))
    private = stack.private_key
    if not private:
        options = {"key_size": 3072} if key_type == "rsa" else {}
        key = asyncssh.generate_private_key(KEY_TYPES[key_type], **options)
        private = key.export_private_key("openssh").decode()
        Stack.objects.filter(pk=stack.pk, attempt=attempt).update(private_key=private)
        stack.private_key = private
    public = asyncssh.import_private_key(private).export_public_key("openssh").decode().strip()
    return {"public_key": public}


def _create(stack: Stack, attempt: int, settings: Settings, deadline: float) -> tuple[Provider, ProviderStack]:
    """Create the stack on the first provider that has room and succeeds."""
    key_parameters = _key_parameters(stack, attempt)
    candidates = _candidates(stack, settings)
    if not candidates:
        raise LaunchFailed(states.LAUNCH_ERROR, Message("launch.no_provider"))
    errors = []
    for entry in candidates:
        provider = get_provider(entry["name"], settings["providers"])
        template = _read(stack, entry.get("template") or stack.spec.get("template"), settings)
        if template is None:
            raise LaunchFailed(states.LAUNCH_ERROR, Message("launch.no_template"))
        environment = _read(stack, entry.get("environment"), settings)
        # Record the provider before calling it: a worker killed mid-create
        # must find (and not duplicate) the stack on the next attempt.
        Stack.objects.filter(pk=stack.pk, attempt=attempt).update(provider=provider.name)
        transition(
            stack.pk,
            states.CREATE_IN_PROGRESS,
            allowed_from=[states.LAUNCH_PENDING, states.CREATE_IN_PROGRESS],
            if_attempt=attempt,
            provider=provider.name,
            phase=states.PHASE_PROVIDER,
            progress=states.PHASE_PROGRESS[states.PHASE_PROVIDER],
        )
        parameters = {"run": stack.course_id, **key_parameters}
        try:
            result = _create_once(provider, stack.name, template, environment, parameters, deadline)
            result = _wait_for(
                provider,
                stack.name,
                deadline,
                on_progress=_booting_progress(stack.pk, attempt),
            )
        except TemplateError as error:
            raise LaunchFailed(
                states.LAUNCH_ERROR, Message("launch.template_problem", {"detail": shorten(error)})
            ) from None
        except ProviderAuthError as error:
            log.error("provider %s refused us: %s", provider.name, error)
            errors.append(f"{provider.name}: {error}")
            continue
        except ProviderError as error:
            log.warning("create of %s on %s failed: %s", stack.name, provider.name, error)
            errors.append(f"{provider.name}: {error}")
            _discard(provider, stack.name)
            continue
        if result.status == states.CREATE_COMPLETE:
            return provider, result
        log.warning("create of %s on %s ended %s: %s", stack.name, provider.name, result.status, result.status_reason)
        errors.append(f"{provider.name}: {result.status_reason or result.status}")
        _discard(provider, stack.name)
    Stack.objects.filter(pk=stack.pk, attempt=attempt).update(provider="")
    raise LaunchFailed(states.CREATE_FAILED, Message("launch.create_failed", {"detail": shorten("; ".join(errors))}))


def _discard(provider: Provider, name: str) -> None:
    """Delete a failed stack so that it costs nothing; errors are only logged."""
    try:
        provider.delete(name)
    except ProviderError as error:
        log.warning("could not delete failed stack %s on %s: %s", name, provider.name, error)


def _booting_progress(stack_id: int, attempt: int) -> Callable[[ProviderStack], None]:
    low = states.PHASE_PROGRESS[states.PHASE_BOOTING]
    high = states.PHASE_PROGRESS[states.PHASE_SSH]

    def report(current: ProviderStack) -> None:
        if current.progress is not None:
            fraction = max(0.0, min(1.0, current.progress))
            _set_phase(stack_id, attempt, states.PHASE_BOOTING, low + (high - low) * fraction)

    return report


#: What the learner reads when an RDP lab is launched where no guacd is configured.
NO_GUACD = "this platform cannot show remote desktops (RDP) yet; please tell the course team."


def launch(
    stack_id: int,
    attempt: int,
    reset: bool = False,
    time_limit_errors: tuple[type[BaseException], ...] = (),
) -> str:
    """Bring the stack up: create, resume, or (``reset``) delete and create anew.

    Runs only for the launch ``attempt`` that the status request claimed;
    a stale or duplicate delivery returns at once.  Returns the final status.
    ``time_limit_errors`` are the exceptions the caller's runner raises when
    the task's time is up (Celery's ``SoftTimeLimitExceeded``): a provider
    call hanging that long ends the launch as ``LAUNCH_TIMEOUT``.
    """
    settings = get_settings()
    stack = Stack.objects.filter(pk=stack_id).first()
    if stack is None or stack.attempt != attempt or stack.status not in states.LAUNCHING:
        log.info("launch %s/%s: nothing to do (stale or finished)", stack_id, attempt)
        return stack.status if stack else states.DELETE_COMPLETE
    if stack.protocol == "rdp" and not settings["guacd"]:
        # Refused before anything is made: without guacd the gateway cannot show an RDP desktop,
        # and a lab that comes up only to show a blank screen helps nobody.
        log.error(
            "stack %s: stack_protocol rdp needs the 'guacd' setting (the address of a Guacamole daemon); "
            "launch refused",
            stack.name,
        )
        return _give_up(stack_id, attempt, states.LAUNCH_ERROR, Message("launch.create_failed", {"detail": NO_GUACD}))
    timeout = int(stack.spec.get("launch_timeout") or settings["launch_timeout"])
    # The deadline counts from the claim, so a redelivered task does not get a fresh budget.
    if stack.status_deadline:
        started = stack.status_deadline - timedelta(seconds=timeout + DEADLINE_MARGIN)
    else:
        started = timezone.now()
    deadline = CLOCK.monotonic() + max(1.0, timeout - (timezone.now() - started).total_seconds())
    try:
        return _launch(stack, attempt, reset, settings, deadline)
    except LaunchFailed as failure:
        return _give_up(stack_id, attempt, failure.status, failure.message)
    except (TimeoutError, *time_limit_errors) as error:
        log.warning("launch of %s timed out: %s", stack.name, error or type(error).__name__)
        return _give_up(stack_id, attempt, states.LAUNCH_TIMEOUT, Message("launch.timeout"))
    except Exception:
        log.exception("launch of %s failed unexpectedly", stack.name)
        _give_up(stack_id, attempt, states.LAUNCH_ERROR, Message("launch.internal_error"))
        raise


def _give_up(stack_id: int, attempt: int, status: str, message: Message) -> str:
    """End launch ``attempt`` in the failure ``status`` with ``message`` for the learner; return ``status``."""
    transition(
        stack_id,
        status,
        allowed_from=states.LAUNCHING,
        if_attempt=attempt,
        error_msg=message.dumps(),
        phase="",
        progress=0.0,
        status_deadline=None,
    )
    return status


#: Provider states from which a launch resumes the existing stack.
_RESUMABLE = frozenset(
    {states.SUSPEND_COMPLETE, states.RESUME_IN_PROGRESS, states.RESUME_FAILED, states.SUSPEND_FAILED}
)


def _launch(stack: Stack, attempt: int, reset: bool, settings: Settings, deadline: float) -> str:
    """Look at the provider's real state, then continue from it; finish once SSH answers."""
    _set_phase(stack.pk, attempt, states.PHASE_PROVIDER)
    provider = get_provider(stack.provider, settings["providers"]) if stack.provider else None
    current = _retrying(lambda: provider.get(stack.name), deadline, f"look up {stack.name}") if provider else None

    if provider is not None and current is not None and reset:
        _hook_before_delete(stack, provider, current, deadline, settings)
        _delete_for_reset(stack, attempt, provider, current, deadline)
        provider, current = None, None

    resumed = False
    if provider is not None and current is not None and current.status in states.UP:
        result = current  # a redelivered task: the provider finished before the worker died
        resumed = stack.status == states.RESUME_IN_PROGRESS or bool(stack.launched_at)
    elif provider is not None and current is not None and current.status == states.CREATE_IN_PROGRESS:
        result = _finish_interrupted_create(stack, attempt, provider, deadline)
        if result is None:
            provider, result = _create(stack, attempt, settings, deadline)
    elif provider is not None and current is not None and current.status in _RESUMABLE:
        result = _resume(stack, attempt, provider, deadline)
        resumed = True
    else:
        if provider is not None and current is not None and current.status != states.DELETE_COMPLETE:
            log.info(
                "stack %s is %s on %s: deleting it before creating anew", stack.name, current.status, provider.name
            )
            _discard(provider, stack.name)
            _wait_for(provider, stack.name, deadline)
            Stack.objects.filter(pk=stack.pk, attempt=attempt).update(host_key="")
        provider, result = _create(stack, attempt, settings, deadline)
    return _finish(stack, attempt, provider, result, resumed, settings, deadline)


def _delete_for_reset(stack: Stack, attempt: int, provider: Provider, current: ProviderStack, deadline: float) -> None:
    """Reset: delete the learner's stack and forget its outputs (a new one gets new keys)."""
    if current.status != states.DELETE_COMPLETE:
        _retrying(lambda: provider.delete(stack.name), deadline, f"delete {stack.name}")
        _wait_for(provider, stack.name, deadline)
    Stack.objects.filter(pk=stack.pk, attempt=attempt).update(
        provider="", ip="", ssh_port=None, private_key="", password="", host_key="", desktop=""
    )
    stack.private_key = ""


def _finish_interrupted_create(stack: Stack, attempt: int, provider: Provider, deadline: float) -> ProviderStack | None:
    """A previous worker started a create and died: wait for it rather than start another.

    Returns the stack once it is up, or ``None`` when that create failed (it is
    then deleted, and the caller creates anew).
    """
    result = _wait_for(
        provider,
        stack.name,
        deadline,
        on_progress=_booting_progress(stack.pk, attempt),
    )
    if result.status == states.CREATE_COMPLETE:
        return result
    log.warning("interrupted create of %s ended %s: %s", stack.name, result.status, result.status_reason)
    _discard(provider, stack.name)
    _wait_for(provider, stack.name, deadline)
    return None


def _resume_and_wait(
    provider: Provider, name: str, deadline: float, on_progress: Callable[[ProviderStack], None] | None = None
) -> ProviderStack:
    """Ask the provider to resume ``name`` and wait until it settles; return the final stack."""
    _retrying(lambda: provider.resume(name), deadline, f"resume {name}")
    return _wait_for(provider, name, deadline, on_progress=on_progress)


def _resume(stack: Stack, attempt: int, provider: Provider, deadline: float) -> ProviderStack:
    """Resume the suspended stack; a failure keeps it (and its key) so the learner can retry."""
    transition(
        stack.pk,
        states.RESUME_IN_PROGRESS,
        allowed_from=[states.LAUNCH_PENDING, states.RESUME_IN_PROGRESS],
        if_attempt=attempt,
        phase=states.PHASE_PROVIDER,
    )
    try:
        result = _resume_and_wait(provider, stack.name, deadline, on_progress=_booting_progress(stack.pk, attempt))
    except ProviderError as error:
        _suspend_again(provider, stack.name)
        raise LaunchFailed(states.RESUME_FAILED, Message("launch.resume_failed", {"detail": shorten(error)})) from None
    if result.status not in states.UP:
        _suspend_again(provider, stack.name)
        raise LaunchFailed(
            states.RESUME_FAILED, Message("launch.resume_failed", {"detail": shorten(result.status_reason)})
        )
    return result


def _suspend_again(provider: Provider, name: str) -> None:
    """After a failed resume, put the stack back to sleep (it costs nothing, keeps its key); log errors only."""
    try:
        provider.suspend(name)
    except ProviderError as error:
        log.warning("could not suspend %s again after a failed resume: %s", name, error)


def _finish(
    stack: Stack,
    attempt: int,
    provider: Provider,
    result: ProviderStack,
    resumed: bool,
    settings: Settings,
    deadline: float,
) -> str:
    """Wait until SSH answers with the pinned (or, first time, the provider's) host key; store the outputs."""
    if result.outputs is None:
        raise LaunchFailed(states.LAUNCH_ERROR, Message("launch.no_address"))
    outputs = result.outputs
    stack.refresh_from_db()
    # With stack_key_type the worker made the key pair (it is on the row); else the template did.
    private_key = stack.private_key if stack.spec.get("key_type") else outputs.private_key
    if not private_key:
        raise LaunchFailed(states.LAUNCH_ERROR, Message("launch.no_private_key"))
    _set_phase(stack.pk, attempt, states.PHASE_SSH)
    pinned = stack.host_key or None
    try:
        host_key = remote.run_sync(remote.wait_for_ssh(outputs.public_ip, outputs.ssh_port, deadline, pinned=pinned))
    except remote.HostKeyMismatch:
        log.error("stack %s: SSH host key changed; refusing the lab", stack.name)
        raise LaunchFailed(states.LAUNCH_ERROR, Message("launch.identity_unverified")) from None
    offered = result.extra.get("host_key") if result.extra else None
    if offered and not remote.same_key(offered, host_key):
        log.error("stack %s: SSH host key differs from the provider's", stack.name)
        raise LaunchFailed(states.LAUNCH_ERROR, Message("launch.identity_unverified"))
    if resumed and hook_enabled(stack, "resume"):
        _set_phase(stack.pk, attempt, states.PHASE_HOOK)
        stack.host_key = stack.host_key or host_key
        stack.ssh_user = stack.spec.get("ssh_user") or stack.ssh_user
        run_hook(stack, "resume", settings, host=outputs.public_ip, port=outputs.ssh_port)
    final = states.RESUME_COMPLETE if resumed else states.CREATE_COMPLETE
    now = timezone.now()
    won = transition(
        stack.pk,
        final,
        allowed_from=states.LAUNCHING,
        if_attempt=attempt,
        provider=provider.name,
        ip=outputs.public_ip,
        ssh_port=outputs.ssh_port,
        ssh_user=stack.spec.get("ssh_user") or stack.ssh_user or "",
        private_key=private_key,
        password=outputs.password or "",
        host_key=stack.host_key or host_key,
        desktop=desktop_endpoint(result, stack.protocol),
        phase=states.PHASE_READY,
        progress=1.0,
        status_deadline=None,
        suspend_by=now + timedelta(seconds=stack.suspend_timeout or settings["suspend_timeout"]),
        launched_at=now,
    )
    if not won:
        log.info("launch %s/%s finished but the stack moved on meanwhile", stack.pk, attempt)
    return final


def desktop_endpoint(result: ProviderStack, protocol: str) -> str:
    """The desktop endpoint the provider reports for ``protocol`` (``extra["vnc"]``/``extra["rdp"]``), or ``""``.

    Seen from the lab's SSH server: ``unix:/path`` or ``host:port``; the gateway reaches it
    through the lab's SSH connection (see :mod:`hastexo_xblock.gateway.vnc`).
    """
    value = (result.extra or {}).get(protocol) if protocol in ("vnc", "rdp") else None
    return str(value)[:255] if isinstance(value, str) else ""


#: The events a hook script can run on.
HOOK_EVENTS = ("suspend", "resume", "delete")


def hook_enabled(stack: Stack, event: str) -> bool:
    """Whether the block's ``hook_script`` runs on ``event`` for this stack.

    As in the original hastexo XBlock, only the events ``hook_events`` sets
    to true run it: no ``hook_events`` (or an event it leaves out) runs no
    hook.  (Its ``<hook_events>`` element is another matter: attributes it
    leaves out mean true there, see ``olx.py``.)
    """
    if not stack.spec.get("hook_script"):
        return False
    events = stack.spec.get("hook_events") or {}
    return bool(events.get(event))


def run_hook(stack: Stack, event: str, settings: Settings, host: str | None = None, port: int | None = None) -> bool:
    """Run the author's hook script on the lab with ``event`` as its argument.

    Runs before suspend, after resume and before delete, when the block's
    ``hook_events`` enable the event.  A missing script, an unreachable lab, a
    non-zero exit or a time-out (``remote_exec_timeout``) is logged and never
    raised: a hook must not block the lab's lifecycle.  ``host``/``port``
    override the row's address (a resumed lab may have moved).  Returns
    whether the hook ran and succeeded.
    """
    if not hook_enabled(stack, event):
        return False
    path = stack.spec["hook_script"]
    try:
        script = compat.read_course_file(stack.course_id, path, settings["template_dir"])
    except compat.CourseFileNotFound as error:
        log.warning("stack %s: %s hook not run: %s", stack.name, event, error)
        return False
    login = remote.SSHTarget.from_stack(stack, port=port)
    if host:
        login = replace(login, host=host)
    if not (login.private_key and login.host_key and login.host):
        log.warning("stack %s: %s hook not run: the lab's address or keys are not known", stack.name, event)
        return False
    try:
        result = remote.run_sync(remote.run_script(login, script, [event], timeout=settings["remote_exec_timeout"]))
    except (TimeoutError, OSError, asyncssh.Error) as error:
        log.warning("stack %s: %s hook %s failed: %s", stack.name, event, path, error)
        return False
    if result.exit_status != 0:
        log.warning(
            "stack %s: %s hook %s exited %d: %s", stack.name, event, path, result.exit_status, shorten(result.stderr)
        )
        return False
    log.info("stack %s: %s hook %s ran", stack.name, event, path)
    return True


def _hook_before_delete(
    stack: Stack, provider: Provider, current: ProviderStack | None, deadline: float, settings: Settings
) -> None:
    """Run the delete hook on the lab; a suspended lab is resumed for it first (best effort).

    ``current`` is the provider's view of the stack if the caller has it; it
    is looked up only when a delete hook is to run.
    """
    if not hook_enabled(stack, "delete"):
        return
    if current is None:
        current = _retrying(lambda: provider.get(stack.name), deadline, f"look up {stack.name}")
    if current.status in _RESUMABLE:
        try:
            current = _resume_and_wait(provider, stack.name, deadline)
        except (ProviderError, TimeoutError) as error:
            log.warning("stack %s: could not resume it for its delete hook: %s", stack.name, error)
            return
    if current.status in states.UP and current.outputs is not None:
        try:
            remote.run_sync(
                remote.wait_for_ssh(
                    current.outputs.public_ip,
                    current.outputs.ssh_port,
                    min(deadline, CLOCK.monotonic() + 60),
                    pinned=stack.host_key,
                )
            )
        except (TimeoutError, remote.HostKeyMismatch) as error:
            log.warning("stack %s: delete hook not run, SSH did not answer: %s", stack.name, error)
            return
        run_hook(stack, "delete", settings, host=current.outputs.public_ip, port=current.outputs.ssh_port)


def suspend(stack_id: int) -> str:
    """Suspend a stack the suspender claimed (``SUSPEND_PENDING``); returns the final status."""
    settings = get_settings()
    stack = Stack.objects.filter(pk=stack_id).first()
    if stack is None or stack.status not in states.SUSPENDING:
        return stack.status if stack else states.DELETE_COMPLETE
    if not stack.provider:
        transition(stack_id, states.DELETE_COMPLETE, allowed_from=states.SUSPENDING, status_deadline=None)
        return states.DELETE_COMPLETE
    provider = get_provider(stack.provider, settings["providers"])
    deadline = CLOCK.monotonic() + settings["suspend_task_timeout"]
    transition(stack_id, states.SUSPEND_IN_PROGRESS, allowed_from=states.SUSPENDING)
    run_hook(stack, "suspend", settings)
    try:
        _retrying(lambda: provider.suspend(stack.name), deadline, f"suspend {stack.name}")
        result = _wait_for(provider, stack.name, deadline)
    except (ProviderError, TimeoutError) as error:
        log.warning("suspend of %s failed: %s", stack.name, error)
        transition(
            stack_id,
            states.SUSPEND_FAILED,
            allowed_from=states.SUSPENDING,
            status_deadline=None,
            error_msg=stored("provider.detail", detail=shorten(error)),
        )
        return states.SUSPEND_FAILED
    final = {states.SUSPEND_COMPLETE: states.SUSPEND_COMPLETE, states.DELETE_COMPLETE: states.DELETE_COMPLETE}.get(
        result.status, states.SUSPEND_FAILED
    )
    transition(
        stack_id,
        final,
        allowed_from=states.SUSPENDING,
        status_deadline=None,
        suspended_at=timezone.now(),
        phase="",
        progress=0.0,
        error_msg=""
        if final != states.SUSPEND_FAILED
        else stored("provider.detail", detail=shorten(result.status_reason)),
    )
    return final


def delete(stack_id: int) -> str:
    """Delete a stack claimed for deletion (``DELETE_PENDING``); returns the final status."""
    settings = get_settings()
    stack = Stack.objects.filter(pk=stack_id).first()
    if stack is None or stack.status not in states.DELETING:
        return stack.status if stack else states.DELETE_COMPLETE
    cleared = {
        "ip": "",
        "ssh_port": None,
        "private_key": "",
        "password": "",
        "host_key": "",
        "provider": "",
        "desktop": "",
    }
    if not stack.provider:
        transition(stack_id, states.DELETE_COMPLETE, allowed_from=states.DELETING, status_deadline=None, **cleared)
        return states.DELETE_COMPLETE
    provider = get_provider(stack.provider, settings["providers"])
    deadline = CLOCK.monotonic() + settings["delete_task_timeout"]
    transition(stack_id, states.DELETE_IN_PROGRESS, allowed_from=states.DELETING)
    try:
        _hook_before_delete(stack, provider, None, deadline, settings)
        _retrying(lambda: provider.delete(stack.name), deadline, f"delete {stack.name}")
        result = _wait_for(provider, stack.name, deadline)
    except (ProviderError, TimeoutError) as error:
        result = ProviderStack(stack.name, states.DELETE_FAILED, str(error))
    if result.status == states.DELETE_COMPLETE:
        transition(
            stack_id,
            states.DELETE_COMPLETE,
            allowed_from=states.DELETING,
            status_deadline=None,
            delete_attempts=0,
            phase="",
            progress=0.0,
            **cleared,
        )
        return states.DELETE_COMPLETE
    log.warning("delete of %s failed: %s", stack.name, result.status_reason)
    Stack.objects.filter(pk=stack_id).update(delete_attempts=stack.delete_attempts + 1)
    transition(
        stack_id,
        states.DELETE_FAILED,
        allowed_from=states.DELETING,
        status_deadline=None,
        error_msg=stored("provider.detail", detail=shorten(result.status_reason)),
    )
    return states.DELETE_FAILED


def delete_orphan(provider_name: str, name: str) -> str:
    """Delete stack ``name`` on ``provider_name`` unless a live row claims it meanwhile; return its status."""
    settings = get_settings()
    if Stack.objects.filter(name=name, provider=provider_name).exclude(status__in=states.ABSENT).exists():
        log.info("orphan %s on %s has an owner again; not deleting it", name, provider_name)
        return "OWNED"
    provider = get_provider(provider_name, settings["providers"])
    deadline = CLOCK.monotonic() + settings["delete_task_timeout"]
    _retrying(lambda: provider.delete(name), deadline, f"delete orphan {name}")
    return _wait_for(provider, name, deadline).status


def recover(stack_id: int) -> str:
    """Settle a stack whose pending status is past its deadline from the provider's real state.

    No state is a trap: whatever was lost (a task, a worker, a message), the
    row ends in a state from which the learner or the jobs can go on.
    Returns the new status (or the old one if the stack moved on meanwhile).
    """
    settings = get_settings()
    now = timezone.now()
    stack = Stack.objects.filter(pk=stack_id).first()
    if stack is None:
        return states.DELETE_COMPLETE
    if stack.status not in states.PENDING or (stack.status_deadline and stack.status_deadline > now):
        return stack.status
    real: str = states.DELETE_COMPLETE
    if stack.provider:
        try:
            real = get_provider(stack.provider, settings["providers"]).get(stack.name).status
        except ProviderError as error:
            log.warning("recover %s: provider %s did not answer: %s", stack.name, stack.provider, error)
            real = ""
    if stack.status in states.LAUNCHING:
        if real in states.UP and stack.host_key and stack.ip:
            target = states.RESUME_COMPLETE if stack.launched_at else states.CREATE_COMPLETE
            fields: dict[str, Any] = {
                "suspend_by": now + timedelta(seconds=stack.suspend_timeout or settings["suspend_timeout"])
            }
        else:
            target, fields = states.LAUNCH_TIMEOUT, {"error_msg": "Your lab took too long to start. Please try again."}
    elif stack.status in states.SUSPENDING:
        target = {
            states.SUSPEND_COMPLETE: states.SUSPEND_COMPLETE,
            states.DELETE_COMPLETE: states.DELETE_COMPLETE,
        }.get(real, states.SUSPEND_FAILED)
        if real in states.UP:
            target = states.RESUME_COMPLETE if stack.launched_at else states.CREATE_COMPLETE
        fields = {}
    else:
        target = states.DELETE_COMPLETE if real == states.DELETE_COMPLETE else states.DELETE_FAILED
        fields = {}
    # Same status and attempt as read above: if anything moved meanwhile, this loses.
    won = transition(
        stack_id,
        target,
        allowed_from=[stack.status],
        if_attempt=stack.attempt,
        status_deadline=None,
        phase="",
        progress=0.0 if target not in states.UP else 1.0,
        **fields,
    )
    if not won:
        return Stack.objects.values_list("status", flat=True).get(pk=stack_id)
    log.warning("recovered stack %s from %s to %s (provider says %s)", stack.name, stack.status, target, real or "?")
    return target
