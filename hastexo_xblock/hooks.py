"""The author's hook script: run on the lab before suspend, after resume and before delete.

Worker side only.  A hook never blocks a lab's lifecycle: every failure is
logged and swallowed.

This module does not import XBlock.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import asyncssh

from . import compat, remote, stackops, states, timing
from .conf import Settings
from .models import Stack
from .providers.base import Provider, ProviderError, ProviderStack

log = logging.getLogger(__name__)

#: Provider states from which a stack can be resumed as it is.
RESUMABLE = frozenset({states.SUSPEND_COMPLETE, states.RESUME_IN_PROGRESS, states.RESUME_FAILED, states.SUSPEND_FAILED})

#: The events a hook script can run on.
HOOK_EVENTS = ("suspend", "resume", "delete")


def _shorten(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
            "stack %s: %s hook %s exited %d: %s", stack.name, event, path, result.exit_status, _shorten(result.stderr)
        )
        return False
    log.info("stack %s: %s hook %s ran", stack.name, event, path)
    return True


def before_delete(
    stack: Stack, provider: Provider, current: ProviderStack | None, deadline: timing.Deadline, settings: Settings
) -> None:
    """Run the delete hook on the lab; a suspended lab is resumed for it first (best effort).

    ``current`` is the provider's view of the stack if the caller has it; it
    is looked up only when a delete hook is to run.
    """
    if not hook_enabled(stack, "delete"):
        return
    if current is None:
        current = stackops.retrying(lambda: provider.get(stack.name), deadline, f"look up {stack.name}")
    if current.status in RESUMABLE:
        try:
            current = stackops.resume_and_wait(provider, stack.name, deadline)
        except (ProviderError, TimeoutError) as error:
            log.warning("stack %s: could not resume it for its delete hook: %s", stack.name, error)
            return
    if current.status in states.UP and current.outputs is not None:
        try:
            remote.run_sync(
                remote.wait_for_ssh(
                    current.outputs.public_ip, current.outputs.ssh_port, deadline.within(60), pinned=stack.host_key
                )
            )
        except (TimeoutError, remote.HostKeyMismatch) as error:
            log.warning("stack %s: delete hook not run, SSH did not answer: %s", stack.name, error)
            return
        run_hook(stack, "delete", settings, host=current.outputs.public_ip, port=current.outputs.ssh_port)
