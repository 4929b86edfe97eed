"""Errors internal to the Heat provider: each caller decides what they mean (no OpenStack import)."""

from __future__ import annotations

from ..base import ProviderConfigError, ProviderError, TransientProviderError


class NotFound(ProviderError):
    """404 from Heat or Nova.  Internal: each caller decides what "absent" means."""


class NoEndpoint(ProviderConfigError):
    """The catalog has no endpoint for a service.  Internal: the keypair code asks whether compute exists."""


class Conflict(TransientProviderError):
    """409 from Heat or Nova.

    Transient when nobody handles it: for suspend, resume and delete it
    means the stack is busy with another action, which passes.
    """
