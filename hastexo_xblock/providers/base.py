"""The provider contract: what every backend that runs labs implements.

A provider turns a template into a running stack and manages its life.  The
calls *start* an operation and return the stack as it is then; the caller
(``lifecycle.py``) polls :meth:`Provider.get` until the status is final and
owns every timeout.  A provider that finishes synchronously (the local one)
simply returns the final status at once.

This module does not import Django or XBlock.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


class ProviderError(Exception):
    """An operation failed.  Two layers, never mixed:

    - ``str(error)`` is the operator's detail: whatever the cloud said
      (URLs, TLS and auth details included).  It goes to logs and to
      ``Stack.error_detail`` (the admin), never to a learner.
    - :attr:`learner` is ``(code, params)`` of a learner message in
      ``messages.CATALOG``: what the learner reads, translated, built only
      from values the provider chose to expose.

    Subclasses set :attr:`learner_code`; a provider may pass its own
    ``learner_code``/``learner_params`` (a catalog code) per error.
    """

    learner_code: str = "provider.failed"

    def __init__(
        self, *args: object, learner_code: str | None = None, learner_params: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(*args)
        if learner_code is not None:
            self.learner_code = learner_code
        self.learner_params = dict(learner_params or {})

    @property
    def learner(self) -> tuple[str, dict[str, Any]]:
        """The learner's message as ``(catalog code, parameters)``."""
        return self.learner_code, self.learner_params


class TransientProviderError(ProviderError):
    """A failure worth retrying (5xx, connection refused, time-out)."""

    learner_code = "provider.unavailable"


class ProviderAuthError(ProviderError):
    """Authentication or permission failure: retrying will not help."""

    learner_code = "provider.unavailable"


class TemplateError(ProviderError):
    """The author's template (or its parameters) is not valid."""

    learner_code = "launch.template_refused"


class ProviderConfigError(ProviderError):
    """The operator's provider configuration is not valid."""

    learner_code = "provider.unavailable"


@dataclass(frozen=True)
class StackOutputs:
    """What a running lab exposes to the workers and the gateway.

    ``private_key`` and ``password`` are secrets: never log them, never send
    them to the browser, store them only encrypted.
    """

    public_ip: str
    private_key: str
    password: str | None = None
    ssh_port: int = 22

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"StackOutputs(public_ip={self.public_ip!r}, ssh_port={self.ssh_port!r}, private_key=<hidden>)"


@dataclass(frozen=True)
class ProviderStack:
    """A provider's view of one stack.

    ``status`` uses Heat's ``ACTION_STATUS`` vocabulary (see ``states.py``);
    a stack that does not exist is ``DELETE_COMPLETE``.  ``progress`` is the
    provider's own estimate in 0..1 when it has one.  ``outputs`` is set
    once the stack is up.
    """

    name: str
    status: str
    status_reason: str = ""
    outputs: StackOutputs | None = None
    progress: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Provider(abc.ABC):
    """One configured cloud (or the local machine).

    Subclasses set ``type_name`` and implement the six operations.  They are
    constructed once per worker process from the operator's settings entry
    and must be safe to call from several threads.
    """

    type_name: ClassVar[str] = ""

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        self.name = name
        self.config = dict(config)

    @classmethod
    def validate_config(cls, name: str, config: Mapping[str, Any]) -> None:
        """Raise :class:`ProviderConfigError` naming the key that is wrong.

        Called at start-up for every configured provider; the default accepts anything.
        """
        return

    @abc.abstractmethod
    def create(
        self,
        name: str,
        template: str,
        environment: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> ProviderStack:
        """Start creating stack ``name``; return it (``CREATE_*``)."""

    @abc.abstractmethod
    def get(self, name: str) -> ProviderStack:
        """Return the stack's current status (``DELETE_COMPLETE`` if absent)."""

    @abc.abstractmethod
    def suspend(self, name: str) -> ProviderStack:
        """Start suspending the stack; return it (``SUSPEND_*``)."""

    @abc.abstractmethod
    def resume(self, name: str) -> ProviderStack:
        """Start resuming the stack; return it (``RESUME_*``)."""

    @abc.abstractmethod
    def delete(self, name: str) -> ProviderStack:
        """Start deleting the stack; absent already counts as deleted."""

    @abc.abstractmethod
    def list(self) -> list[str]:
        """Names of every stack this provider holds (for orphan sweeps)."""
