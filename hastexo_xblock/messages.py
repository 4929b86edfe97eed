"""Learner-facing messages stored as a code with parameters, shown in the learner's language.

Workers write messages that a learner reads later (a failed launch, a check
that could not run), in whatever language the worker happens to run.  So
nothing stores translated text: a message is stored as its code, its
parameters and, for readers without this catalog (an operator looking at the
database, an LMS older than the worker), its source-language text; the view
renders it with the learner's active language at the moment it is shown.

Parameters are data, never translated: a provider's error text, a path, a
number.  Every learner-facing message belongs in :data:`CATALOG`; a code
missing from it (or a plain string from before this module) is shown as its
stored text.  The catalog is the place to grow "what the learner reads" and
"what the operator needs" apart: each entry names the learner's template, and
the parameters carry the detail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext, gettext_noop

# code → the learner's template (source language, ``%(name)s`` parameters); translated when shown.
CATALOG: dict[str, str] = {
    # launching (lifecycle.py, labs.py)
    "launch.enqueue_failed": gettext_noop("Your lab could not be started. Please try again in a minute."),
    "launch.no_provider": gettext_noop("No lab environment is available right now. Please try again later."),
    "launch.timeout": gettext_noop("Your lab took too long to start. Please try again."),
    "launch.internal_error": gettext_noop("Your lab could not be started because of an internal error."),
    "launch.template_problem": gettext_noop("Lab template problem: %(detail)s"),
    "launch.no_template": gettext_noop("Lab template problem: the lab has no template configured."),
    "launch.no_private_key": gettext_noop("Lab template problem: the lab reported no private key."),
    "launch.unknown_key_type": gettext_noop("Lab configuration problem: unknown stack_key_type %(key_type)s."),
    "launch.create_failed": gettext_noop("Your lab could not be created: %(detail)s"),
    "launch.resume_failed": gettext_noop("Your lab could not be resumed: %(detail)s"),
    "launch.no_address": gettext_noop("The lab started but reported no address."),
    "launch.identity_unverified": gettext_noop("The lab's identity could not be verified."),
    "launch.create_refused": gettext_noop(
        "Your lab could not be created. Please try again later; if it keeps failing, tell your course staff."
    ),
    "launch.resume_refused": gettext_noop("Your lab could not be resumed. Please try again."),
    "launch.template_refused": gettext_noop(
        "Lab template problem: the lab environment refused the lab's template. Your course staff can see why."
    ),
    # what a provider error means for the learner (its own words go to Stack.error_detail)
    "provider.failed": gettext_noop("The lab environment reported a problem. Please try again later."),
    "provider.unavailable": gettext_noop("The lab environment is not available right now. Please try again later."),
    "provider.suspend_failed": gettext_noop("Your lab could not be paused; it will be tried again."),
    "provider.delete_failed": gettext_noop("Your lab could not be removed; it will be tried again."),
    # Stored by releases before error_detail existed (the provider's own words); still rendered.
    "provider.detail": gettext_noop("%(detail)s"),
    # progress checks (checks.py)
    "check.enqueue_failed": gettext_noop("Your progress could not be checked. Please try again in a minute."),
    "check.timeout": gettext_noop("The progress check did not finish in time. Please try again."),
    "check.lab_not_running": gettext_noop("Your lab is not running. Wait until it is ready, then check again."),
    "check.unreachable": gettext_noop("Your lab could not be reached to check your progress. Please try again."),
    "check.test_timed_out": gettext_noop(
        "This task could not be checked: its test did not finish within %(seconds)d seconds."
    ),
}


@dataclass(frozen=True)
class Message:
    """A learner-facing message: a :data:`CATALOG` code and its parameters."""

    code: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in CATALOG:
            raise KeyError(f"unknown message code {self.code!r}")

    def source_text(self) -> str:
        """The message in the source language (for logs and readers without the catalog)."""
        return CATALOG[self.code] % dict(self.params) if self.params else CATALOG[self.code]

    def dumps(self) -> str:
        """The stored form: JSON with the code, the parameters and the source-language text."""
        return json.dumps(
            {"code": self.code, "params": dict(self.params), "text": self.source_text()}, ensure_ascii=False
        )

    def __str__(self) -> str:
        return self.source_text()


def stored(code: str, **params: Any) -> str:
    """The stored form of message ``code`` with ``params`` (see :meth:`Message.dumps`)."""
    return Message(code, params).dumps()


def parse(value: str) -> Message | None:
    """The message in stored ``value``, or ``None`` when it is plain text (or an unknown code)."""
    if not value or not value.startswith("{"):
        return None
    try:
        data = json.loads(value)
        return Message(str(data["code"]), dict(data.get("params") or {}))
    except (ValueError, KeyError, TypeError):
        return None


def render(value: str) -> str:
    """Stored ``value`` as text in the active language (plain text and unknown codes as stored)."""
    message = parse(value)
    if message is None:
        if value and value.startswith("{"):
            try:
                return str(json.loads(value).get("text", value))
            except (ValueError, AttributeError):
                return value
        return value or ""
    template = gettext(CATALOG[message.code])
    try:
        return template % dict(message.params) if message.params else template
    except (KeyError, TypeError, ValueError):
        return message.source_text()  # a translation with a broken placeholder: the source text
