"""Periodic jobs: the suspender (with the recovery of overdue pending states) and the reaper.

Plain functions over the database; Celery beat (``tasks.suspender``,
``tasks.reaper``) and the management commands ``hastexo_suspender`` and
``hastexo_reaper`` call :func:`run_suspender` and :func:`run_reaper`, passing
how to send a task (``dispatch.send``).  Nothing here imports Celery or the
tasks; the reaper's orphan sweep is the one place that asks providers (for
their lists), and it runs in a worker or a management command, never in a
request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from . import dispatch, labs, names, states
from .conf import get_settings
from .legacy.adopt import legacy_names
from .models import OrphanSighting, Stack, transition
from .providers import get_provider
from .providers.base import ProviderError

log = logging.getLogger(__name__)


def claim_due(batch: int, now=None) -> list[int]:
    """Claim up to ``batch`` stacks whose ``suspend_by`` has passed; return their ids.

    The claim is a conditional update (status still up and still due), so two
    suspenders running at once never claim the same stack, and a keepalive
    that moved ``suspend_by`` forward in between wins over the claim.
    """
    now = now or timezone.now()
    deadline = now + timedelta(seconds=get_settings()["suspend_task_timeout"])
    candidates = list(
        Stack.objects.filter(status__in=states.UP, suspend_by__lte=now)
        .order_by("suspend_by")
        .values_list("pk", flat=True)[:batch]
    )
    return [
        pk
        for pk in candidates
        if transition(
            pk, states.SUSPEND_PENDING, allowed_from=states.UP, where={"suspend_by__lte": now}, status_deadline=deadline
        )
    ]


def recover_overdue(send: dispatch.Send | None = None, now=None) -> int:
    """Hand every dead launch and overdue pending state to the workers (see ``labs.watch``); return how many.

    Dead launches are those whose heartbeat is older than ``heartbeat_timeout``:
    a worker killed mid-launch is noticed within that, not at the deadline.
    """
    send = send or dispatch.send
    settings = get_settings()
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings["heartbeat_timeout"])
    rows = Stack.objects.filter(
        Q(status__in=states.PENDING, status_deadline__lte=now) | Q(status__in=states.LAUNCHING, heartbeat_at__lt=stale)
    )
    handed = 0
    for stack in rows:
        try:
            handed += labs.watch(stack, settings, send, now)
        except Exception:
            log.exception("could not hand stack %s to the workers", stack.pk)
    return handed


def run_suspender(send: dispatch.Send | None = None, now=None) -> int:
    """Claim every due stack in batches of ``suspend_concurrency`` and enqueue a suspend each.

    Loops until no due stack is left (not "a handful per run"), then recovers
    overdue pending states.  Returns how many suspends were enqueued.
    """
    send = send or dispatch.send
    batch = get_settings()["suspend_concurrency"]
    total = 0
    while True:
        claimed = claim_due(batch, now)
        for pk in claimed:
            send("suspend", pk)
        total += len(claimed)
        if len(claimed) < batch:
            break
    recover_overdue(send, now)
    if total:
        log.info("suspender: %d stack(s) claimed for suspension", total)
    return total


@dataclass
class ReaperReport:
    """What one reaper run did."""

    claimed: list[int] = field(default_factory=list)
    orphans_deleted: list[tuple[str, str]] = field(default_factory=list)
    orphans_waiting: int = 0


def claim_aged(now=None) -> list[int]:
    """Claim for deletion every lab suspended longer than its delete age, and failed deletes to retry.

    The delete age is the block's ``delete_age`` (seconds, stored on the row
    at launch) or else the ``delete_age`` setting (days); ``0`` disables
    deletion.  Labs that are up, launching or already being handled are
    never touched: only suspended rows and ``DELETE_FAILED`` rows with
    attempts left are candidates.  Returns the claimed ids.
    """
    settings = get_settings()
    now = now or timezone.now()
    deadline = now + timedelta(seconds=settings["delete_task_timeout"])
    claimed = []
    rows = Stack.objects.filter(status__in=states.SUSPENDED | {states.DELETE_FAILED}).values(
        "pk", "status", "suspended_at", "delete_age", "delete_attempts"
    )
    for row in rows:
        if row["status"] == states.DELETE_FAILED:
            if row["delete_attempts"] >= settings["delete_attempts"]:
                continue  # given up; lifecycle.delete logged it, an operator has to look
        else:
            age = row["delete_age"] if row["delete_age"] is not None else settings.delete_age_seconds
            if age == 0 or row["suspended_at"] is None or row["suspended_at"] > now - timedelta(seconds=age):
                continue
        if transition(row["pk"], states.DELETE_PENDING, allowed_from=[row["status"]], status_deadline=deadline):
            claimed.append(row["pk"])
    return claimed


def sweep_orphans(delete_orphan: Callable[[str, str], None], now=None) -> tuple[list[tuple[str, str]], int]:
    """Delete stacks that providers list under our naming scheme but no live row owns.

    Our naming scheme is ``hx-…`` plus the names of the stacks the original
    hastexo XBlock made, as ``hastexo_adopt_legacy`` recorded them; one whose
    row of the original's table could not be adopted is held by that row and
    never counts as an orphan.  An orphan is deleted once it has been seen
    for ``orphan_grace`` seconds (the grace protects a stack whose row is
    still being written).  Returns the ``(provider, name)`` pairs handed to
    ``delete_orphan`` and how many orphans are still within their grace period.
    """
    settings = get_settings()
    now = now or timezone.now()
    grace = timedelta(seconds=settings["orphan_grace"])
    deleted: list[tuple[str, str]] = []
    waiting = 0
    for provider_name in settings["providers"]:
        legacy = legacy_names(provider_name)
        try:
            listed = {
                name
                for name in get_provider(provider_name, settings["providers"]).list()
                if names.is_ours(name) or name in legacy
            }
        except ProviderError as error:
            log.warning("reaper: could not list provider %s: %s", provider_name, error)
            continue
        owned = set(
            Stack.objects.filter(name__in=listed, provider=provider_name)
            .exclude(status__in=states.ABSENT)
            .values_list("name", flat=True)
        ) | {name for name, held in legacy.items() if held}
        orphans = listed - owned
        OrphanSighting.objects.filter(provider=provider_name).exclude(name__in=orphans).delete()
        for name in sorted(orphans):
            sighting, _created = OrphanSighting.objects.get_or_create(provider=provider_name, name=name)
            if sighting.first_seen > now - grace:
                waiting += 1
                continue
            log.warning(
                "reaper: deleting orphan stack %s on provider %s (no lab record owns it since %s)",
                name,
                provider_name,
                sighting.first_seen.isoformat(),
            )
            delete_orphan(provider_name, name)
            sighting.delete()
            deleted.append((provider_name, name))
    return deleted, waiting


def run_reaper(send: dispatch.Send | None = None, now=None) -> ReaperReport:
    """Claim aged and failed labs for deletion (one delete task each), then sweep orphans."""
    send = send or dispatch.send
    report = ReaperReport()
    report.claimed = claim_aged(now)
    for pk in report.claimed:
        send("delete", pk)
    report.orphans_deleted, report.orphans_waiting = sweep_orphans(
        lambda provider, name: send("delete_orphan", provider, name), now
    )
    if report.claimed or report.orphans_deleted:
        log.info(
            "reaper: %d lab(s) claimed for deletion, %d orphan(s) deleted, %d orphan(s) in grace",
            len(report.claimed),
            len(report.orphans_deleted),
            report.orphans_waiting,
        )
    return report
