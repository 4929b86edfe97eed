"""Adopt the labs the original hastexo XBlock was running: this project's rows for its stacks.

For every row of the original's stack table (``tables.py``), :func:`adopt`
makes one :class:`~hastexo_xblock.models.Stack` row, with the original's
stack name (so the suspender, the reaper, the learner's next visit and the
orphan sweep all act on the stack that exists), the provider, the address,
the keys (encrypted on the way in, by the model field), the block's
settings the original recorded, and the status history (every log row,
then one for the adoption), which is where lab usage time comes from.

The stack's status is what its provider says now, not what the original
last wrote (the original's workers are gone; whatever they were doing did
not finish):

* up (the original's up states): adopted up; its SSH host key is pinned now
  (first contact, as at a launch) and a login with its key is tried.  A lab
  whose SSH does not answer is adopted up but due for suspension at once:
  the learner's next visit resumes it and pins its key then;
* suspended, or a failed suspend or resume: adopted suspended (resumable);
* gone: adopted as deleted (the next visit creates it anew, same name);
* in progress: adopted in the matching pending state with its deadline now,
  so the next suspender run settles it from the provider (``jobs.py``);
* failed otherwise: ``CREATE_FAILED``/``DELETE_FAILED`` as they are, any
  other failure as ``LAUNCH_ERROR`` (the next visit creates the lab anew).

A row is not adopted, and the report says why, when it is incomplete, its
provider is not configured here (or does not answer), its name is taken, or
the learner already has a lab of this project in that course run (a lab
with nothing on any provider is taken over instead).  Each run is
idempotent: a row adopted once is skipped; rows not adopted are tried
again.  Nothing is ever deleted, here or on a provider.

This module does not import XBlock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncssh
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from .. import names, remote, states, timing
from ..conf import Settings, get_settings
from ..models import LegacyAdoption, Stack, StackLog
from ..providers import get_provider
from ..providers.base import ProviderError, ProviderStack
from . import tables
from .tables import LegacyStack

log = logging.getLogger(__name__)

#: The original's "up" states (its ``UP_STATES``).
ORIGINAL_UP = frozenset(
    {"CREATE_COMPLETE", "RESUME_COMPLETE", "UPDATE_COMPLETE", "ROLLBACK_COMPLETE", "SNAPSHOT_COMPLETE"}
)
_SUSPENDED = frozenset({states.SUSPEND_COMPLETE, states.SUSPEND_FAILED, states.RESUME_FAILED})
_IN_PROGRESS = {
    states.CREATE_IN_PROGRESS: states.CREATE_IN_PROGRESS,
    states.RESUME_IN_PROGRESS: states.RESUME_IN_PROGRESS,
    states.SUSPEND_IN_PROGRESS: states.SUSPEND_IN_PROGRESS,
    states.DELETE_IN_PROGRESS: states.DELETE_IN_PROGRESS,
}
#: The original's statuses that mean "nothing on any provider".
_ABSENT = frozenset({"", states.DELETE_COMPLETE})


class NotAdoptable(Exception):
    """This row cannot be adopted (now); the message says why, for the report."""


@dataclass
class Result:
    """What became of one row of the original's table."""

    table: str
    legacy_id: int
    name: str
    course_id: str
    learner: str
    legacy_status: str
    outcome: str  # "adopted", "already", "not_adopted"
    status: str = ""  # this project's status, when adopted
    detail: str = ""

    def line(self) -> str:
        where = f"{self.table}#{self.legacy_id} {self.name or '(no name)'} ({self.course_id}, {self.learner})"
        if self.outcome == "adopted":
            text = f"adopted {where}: {self.legacy_status or '(no status)'} -> {self.status}"
        elif self.outcome == "already":
            text = f"already adopted {where}"
        else:
            text = f"not adopted {where}"
        return f"{text}: {self.detail}" if self.detail else text


@dataclass
class Report:
    """One run of :func:`adopt`."""

    tables: list[str] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    dry_run: bool = False

    def of(self, outcome: str) -> list[Result]:
        return [result for result in self.results if result.outcome == outcome]

    @property
    def adopted(self) -> list[Result]:
        return self.of("adopted")

    @property
    def already(self) -> list[Result]:
        return self.of("already")

    @property
    def not_adopted(self) -> list[Result]:
        return self.of("not_adopted")

    def summary(self) -> str:
        verb = "would adopt" if self.dry_run else "adopted"
        return (
            f"{verb} {len(self.adopted)}, already adopted {len(self.already)}, "
            f"not adopted {len(self.not_adopted)} (tables: {', '.join(self.tables) or 'none found'})"
        )


@dataclass
class _Plan:
    """The row to write for one adoption."""

    fields: dict[str, Any]
    detail: str = ""


def _result(row: LegacyStack, outcome: str, status: str = "", detail: str = "") -> Result:
    return Result(
        table=row.table,
        legacy_id=row.id,
        name=row.name,
        course_id=row.course_id,
        learner=row.student_id,
        legacy_status=row.status,
        outcome=outcome,
        status=status,
        detail=detail,
    )


def _check_row(row: LegacyStack) -> None:
    """Refuse a row this project cannot hold: no name, course or learner, or a name no provider takes."""
    if not (row.name and row.course_id and row.student_id):
        raise NotAdoptable("the row has no stack name, course or learner")
    if len(row.name) > Stack._meta.get_field("name").max_length or not names.NAME_PATTERN.match(row.name):
        raise NotAdoptable(f"{row.name!r} is not a stack name a provider takes")
    if Stack.objects.filter(name=row.name).exists():
        raise NotAdoptable("a lab of this project already has this stack name")
    other = Stack.objects.filter(course_id=row.course_id, anonymous_user_id=row.student_id).first()
    if other is not None and not (other.status in states.ABSENT and not other.provider):
        raise NotAdoptable(
            f"the learner already has a lab of this project in this course run ({other.name}, {other.status}); "
            "the original's stack was left as it is"
        )


def _spec(row: LegacyStack, settings: Settings) -> dict[str, Any]:
    """The settings the original recorded for the lab (the block's own replace them at the next launch)."""
    providers = [dict(entry) for entry in row.providers if entry.get("name")]
    if not providers and row.provider:
        providers = [{"name": row.provider, "capacity": -1, "template": None, "environment": None}]
    template = next((entry.get("template") for entry in providers if entry.get("template")), "") or ""
    return {
        "template": template,
        "providers": providers,
        "ssh_user": row.user,
        "protocol": row.protocol or "ssh",
        "key_type": "",
        "launch_timeout": settings["launch_timeout"],
        "ports": [],
        "hook_script": row.hook_script,
        "hook_events": {event: bool(on) for event, on in row.hook_events.items()},
        "adopted_from": f"{row.table}#{row.id}",
    }


def _suspended_at(row: LegacyStack, settings: Settings, now: datetime) -> datetime:
    """When the lab was suspended, so that the reaper deletes it when the original would have."""
    age = row.delete_age if row.delete_age is not None else settings.delete_age_seconds
    if row.delete_by is not None and age:
        return row.delete_by - timedelta(seconds=age)
    for entry in reversed(row.logs):
        if entry.status == states.SUSPEND_COMPLETE and entry.created_on:
            return entry.created_on
    return now


def _pin(row: LegacyStack, real: ProviderStack, ip: str, port: int, key: str, timeout: float) -> tuple[str, str]:
    """``(host key, note)``: the lab's SSH host key, pinned now, and a note when something is off."""
    offered = real.extra.get("host_key") if real.extra else None
    try:
        host_key = remote.run_sync(remote.wait_for_ssh(ip, port, timing.Deadline.after(timeout), pinned=offered))
    except remote.HostKeyMismatch:
        return "", "its SSH host key differs from the one its provider reports; not pinned"
    except TimeoutError:
        return "", f"its SSH server did not answer within {timeout:.0f} s"
    if not key:
        return host_key, "the original recorded no private key: the learner will have to reset the lab"
    login = remote.SSHTarget(host=ip, port=port, username=row.user, private_key=key, host_key=host_key)
    try:
        [result] = remote.run_sync(
            remote.run_scripts(login, ["exit 0\n"], script_timeout=timeout, total_timeout=timeout)
        )
    except (TimeoutError, OSError, asyncssh.Error, ValueError) as error:
        return host_key, f"logging in with its key failed ({type(error).__name__}): the learner may have to reset it"
    if result.exit_status != 0:
        return host_key, f"a login with its key ran a shell that exited {result.exit_status}"
    return host_key, ""


def _plan(row: LegacyStack, settings: Settings, now: datetime, ssh_timeout: float) -> _Plan:
    """Decide the row to write from the provider's real state (see the module docstring)."""
    common: dict[str, Any] = {
        "protocol": row.protocol or "ssh",
        "port": row.port,
        "ssh_user": row.user,
        "delete_age": row.delete_age if row.delete_age and row.delete_age > 0 else None,
        "spec": _spec(row, settings),
        "launched_at": row.launch_timestamp,
        "error_msg": "",
    }
    absent = {
        **common,
        "status": states.DELETE_COMPLETE,
        "provider": "",
        "ip": "",
        "ssh_port": None,
        "private_key": "",
        "password": "",
    }
    if not row.provider:
        if row.status not in _ABSENT:
            raise NotAdoptable(f"the original recorded no provider for a stack in status {row.status}")
        return _Plan(absent)
    problem = settings.provider_problem(row.provider)
    if problem:
        raise NotAdoptable(problem)
    try:
        real = get_provider(row.provider, settings["providers"]).get(row.name)
    except ProviderError as error:
        raise NotAdoptable(f"provider {row.provider} did not answer ({error}); run the adoption again") from None

    if real.status == states.DELETE_COMPLETE:
        return _Plan(absent, "nothing of it is left on its provider" if row.status not in _ABSENT else "")
    outputs = real.outputs
    live = {
        **common,
        "provider": row.provider,
        "ip": (outputs.public_ip if outputs else "") or row.ip,
        "ssh_port": outputs.ssh_port if outputs else 22,
        "private_key": row.key or (outputs.private_key if outputs else ""),
        "password": row.password or ((outputs.password or "") if outputs else ""),
    }
    if real.status in ORIGINAL_UP:
        if not live["ip"]:
            raise NotAdoptable(f"provider {row.provider} reports it up but gives no address")
        host_key, note = _pin(row, real, live["ip"], live["ssh_port"], live["private_key"], ssh_timeout)
        due = row.suspend_by or ((row.suspend_timestamp or now) + timedelta(seconds=settings["suspend_timeout"]))
        if not host_key:
            due = now  # nobody can reach it now: the suspender puts it to sleep, the next visit resumes it
            note += "; due for suspension now (the learner's next visit resumes it and pins its key)"
        status = states.CREATE_COMPLETE if row.status == states.CREATE_COMPLETE else states.RESUME_COMPLETE
        return _Plan(
            {
                **live,
                "status": status,
                "host_key": host_key,
                "suspend_by": due,
                "launched_at": row.launch_timestamp or now,
                "phase": states.PHASE_READY,
                "progress": 1.0,
            },
            note,
        )
    if real.status in _SUSPENDED:
        return _Plan({**live, "status": real.status, "suspended_at": _suspended_at(row, settings, now)})
    if real.status in _IN_PROGRESS:
        return _Plan(
            {**live, "status": _IN_PROGRESS[real.status], "status_deadline": now},
            f"its provider reports {real.status}: settled from its real state by the next suspender run",
        )
    if real.status in (states.CREATE_FAILED, states.DELETE_FAILED):
        return _Plan({**live, "status": real.status, "error_msg": real.status_reason[:400]})
    if real.status.endswith("_IN_PROGRESS"):
        return _Plan(
            {**live, "status": states.RESUME_IN_PROGRESS, "status_deadline": now},
            f"its provider reports {real.status}: settled from its real state by the next suspender run",
        )
    return _Plan(
        {**live, "status": states.LAUNCH_ERROR, "error_msg": f"Adopted in provider state {real.status}."},
        f"its provider reports {real.status}: the learner's next visit creates it anew",
    )


def _learner(row: LegacyStack) -> Any:
    if row.learner_id is None:
        return None
    return get_user_model().objects.filter(pk=row.learner_id).first()


def _write(row: LegacyStack, plan: _Plan, now: datetime) -> Stack:
    """Create (or take over the empty) row, copy the history, record the adoption: one transaction."""
    learner = _learner(row)
    fields = {**plan.fields, "name": row.name, "learner": learner}
    with transaction.atomic():
        stack = Stack.objects.filter(course_id=row.course_id, anonymous_user_id=row.student_id).first()
        if stack is None:
            stack = Stack.objects.create(course_id=row.course_id, anonymous_user_id=row.student_id, **fields)
        else:
            Stack.objects.filter(pk=stack.pk).update(**fields, updated_at=now)
        if row.created_on:
            Stack.objects.filter(pk=stack.pk).update(created_at=row.created_on)
        common = {"stack": stack, "course_id": row.course_id, "anonymous_user_id": row.student_id, "learner": learner}
        history = [
            StackLog(
                status=entry.status[:32],
                error_msg=entry.error_msg,
                provider=entry.provider,
                created_at=entry.created_on or now,
                **common,
            )
            for entry in row.logs
        ]
        history.append(
            StackLog(
                status=fields["status"],
                error_msg=f"adopted from the original hastexo XBlock ({row.table} #{row.id}, {row.status or '-'})",
                provider=fields.get("provider", ""),
                created_at=now,
                **common,
            )
        )
        StackLog.objects.bulk_create(history)
        LegacyAdoption.objects.update_or_create(
            source_table=row.table,
            legacy_id=row.id,
            defaults=_record(row, LegacyAdoption.ADOPTED, plan.detail, stack),
        )
    return stack


def _record(row: LegacyStack, outcome: str, detail: str, stack: Stack | None = None) -> dict[str, Any]:
    return {
        "name": row.name,
        "provider": row.provider,
        "course_id": row.course_id,
        "anonymous_user_id": row.student_id,
        "legacy_status": row.status[:32],
        "outcome": outcome,
        "detail": detail,
        "stack": stack,
    }


def adopt_row(row: LegacyStack, *, settings: Settings, now: datetime, ssh_timeout: float, dry_run: bool) -> Result:
    """Adopt one row of the original's table (see the module docstring)."""
    done = LegacyAdoption.objects.filter(
        source_table=row.table, legacy_id=row.id, outcome=LegacyAdoption.ADOPTED
    ).exists()
    if done:
        return _result(row, "already")
    try:
        _check_row(row)
        plan = _plan(row, settings, now, ssh_timeout)
    except NotAdoptable as reason:
        if not dry_run:
            LegacyAdoption.objects.update_or_create(
                source_table=row.table, legacy_id=row.id, defaults=_record(row, LegacyAdoption.NOT_ADOPTED, str(reason))
            )
        return _result(row, "not_adopted", detail=str(reason))
    if not dry_run:
        _write(row, plan, now)
    return _result(row, "adopted", plan.fields["status"], plan.detail)


def adopt(*, dry_run: bool = False, ssh_timeout: float = 10.0, now: datetime | None = None) -> Report:
    """Adopt every row of the original's stack tables found in this database; return the report."""
    settings = get_settings()
    report = Report(dry_run=dry_run)
    for stack_table, log_table in tables.find_tables():
        report.tables.append(stack_table)
        for row in tables.read(stack_table, log_table):
            result = adopt_row(
                row, settings=settings, now=now or timezone.now(), ssh_timeout=ssh_timeout, dry_run=dry_run
            )
            if result.outcome != "already":
                log.info("legacy adoption: %s", result.line())
            report.results.append(result)
    return report


def legacy_names(provider: str) -> dict[str, bool]:
    """Stack names on ``provider`` that the original made: name → whether the original still holds it.

    For the orphan sweep (``jobs.py``): these names are ours although they
    do not follow our naming scheme.  A stack whose row could not be
    adopted is still held by the original's row, so it is never an orphan.
    """
    rows = LegacyAdoption.objects.filter(provider=provider).values_list("name", "outcome")
    held: dict[str, bool] = {}
    for name, outcome in rows:
        held[name] = held.get(name, False) or outcome == LegacyAdoption.NOT_ADOPTED
    return held
