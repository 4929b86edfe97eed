"""Provider calls as the workers make them: retried, waited for, never twice.

Every wait here is :func:`timing.poll` against the operation's
:class:`timing.Deadline`, so one clock and one backoff policy govern all of
them.  These run in workers only (never in a request).

This module does not import XBlock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import states, timing
from .providers.base import Provider, ProviderError, ProviderStack, TransientProviderError

log = logging.getLogger(__name__)


def retrying(call: Callable[[], ProviderStack], deadline: timing.Deadline, what: str) -> ProviderStack:
    """Run a provider ``call``, retrying :class:`TransientProviderError` with backoff until ``deadline``.

    Raises :class:`timing.Timeout` (a ``TimeoutError``) when the provider
    kept failing until then; other errors are raised at once.
    """
    return timing.poll(call, deadline, timing.RETRY, what=what, retry_on=(TransientProviderError,))


def create_once(
    provider: Provider,
    name: str,
    template: str,
    environment: str | None,
    parameters: dict[str, Any],
    deadline: timing.Deadline,
) -> ProviderStack:
    """``provider.create`` that never creates twice: look before every try (also after a transient error)."""

    def attempt() -> ProviderStack:
        existing = provider.get(name)
        if existing.status != states.DELETE_COMPLETE:
            return existing  # a previous try (or a previous worker) got through
        return provider.create(name, template, environment, parameters)

    return retrying(attempt, deadline, f"create {name}")


def wait_for(
    provider: Provider,
    name: str,
    deadline: timing.Deadline,
    on_progress: Callable[[ProviderStack], None] | None = None,
) -> ProviderStack:
    """Poll ``provider.get(name)`` until its status is not ``*_IN_PROGRESS``; return it (any status).

    Polls with :data:`timing.SETTLE` (a lab is seen up at most a second
    after the provider finishes, at one cheap GET per launching lab and
    second).  Transient provider errors count as "not yet".  Raises
    :class:`timing.Timeout` at ``deadline``.
    """

    def probe() -> ProviderStack | None:
        current = provider.get(name)
        if on_progress is not None:
            on_progress(current)
        return None if current.status.endswith("_IN_PROGRESS") else current

    return timing.poll(
        probe, deadline, timing.SETTLE, what=f"{name} on provider {provider.name}", retry_on=(TransientProviderError,)
    )


def resume_and_wait(
    provider: Provider,
    name: str,
    deadline: timing.Deadline,
    on_progress: Callable[[ProviderStack], None] | None = None,
) -> ProviderStack:
    """Ask the provider to resume ``name`` and wait until it settles; return the final stack."""
    retrying(lambda: provider.resume(name), deadline, f"resume {name}")
    return wait_for(provider, name, deadline, on_progress=on_progress)


def discard(provider: Provider, name: str) -> None:
    """Delete a failed stack so that it costs nothing; errors are only logged."""
    try:
        provider.delete(name)
    except ProviderError as error:
        log.warning("could not delete failed stack %s on %s: %s", name, provider.name, error)


def suspend_again(provider: Provider, name: str) -> None:
    """After a failed resume, put the stack back to sleep (it costs nothing, keeps its key); log errors only."""
    try:
        provider.suspend(name)
    except ProviderError as error:
        log.warning("could not suspend %s again after a failed resume: %s", name, error)
