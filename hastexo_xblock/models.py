"""The stack record (one per learner per course run) and its status history.

Status changes go through :func:`transition`, a conditional ``UPDATE … WHERE
status IN (…)``: it is atomic on every database Django supports (SQLite
included, where ``SELECT … FOR UPDATE`` is a no-op), so two requests, two tabs
or a redelivered task can never both win the same change.  Every change that
wins is appended to :class:`StackLog` in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from . import states
from .secrets import decrypt, encrypt


class EncryptedTextField(models.TextField):
    """A text column whose value is encrypted at rest (see ``secrets.py``).

    Python code sees plaintext; the database holds Fernet tokens.  Saving a
    row re-encrypts with the newest key, which is how keys are rotated.
    """

    description = "Text encrypted at rest"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if not value:
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> str | None:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)


class Stack(models.Model):
    """A learner's lab in one course run, shared by every ``hastexo`` block in it."""

    name = models.CharField(max_length=64, unique=True)
    course_id = models.CharField(max_length=255, db_index=True)
    anonymous_user_id = models.CharField(max_length=255)
    # SET_NULL: deleting or retiring a user must never be blocked by a lab.
    learner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    status = models.CharField(max_length=32, default=states.INITIAL, db_index=True)
    error_msg = models.TextField(blank=True, default="")
    phase = models.CharField(max_length=16, blank=True, default="")
    progress = models.FloatField(default=0.0)
    #: Incremented for every launch; a task carries it so a stale one can tell.
    attempt = models.PositiveIntegerField(default=0)
    #: When the current pending/in-progress status is to be recovered.
    status_deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    suspend_by = models.DateTimeField(null=True, blank=True, db_index=True)
    suspend_timeout = models.PositiveIntegerField(null=True, blank=True)
    delete_age = models.PositiveIntegerField(null=True, blank=True, help_text="seconds; empty = setting")
    delete_attempts = models.PositiveIntegerField(default=0)

    #: What the worker needs to launch (template path, providers, user…): no secrets.
    spec = models.JSONField(default=dict, blank=True)
    provider = models.CharField(max_length=64, blank=True, default="")
    protocol = models.CharField(max_length=16, default="ssh")
    port = models.PositiveIntegerField(null=True, blank=True, help_text="selected port (desktop protocols)")

    ip = models.CharField(max_length=255, blank=True, default="")
    ssh_port = models.PositiveIntegerField(null=True, blank=True)
    ssh_user = models.CharField(max_length=64, blank=True, default="")
    private_key = EncryptedTextField(blank=True, default="")
    password = EncryptedTextField(blank=True, default="")
    host_key = models.TextField(blank=True, default="", help_text="pinned at first contact")
    desktop = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="where the lab's desktop server listens, seen from its SSH server: unix:/path or host:port",
    )

    launched_at = models.DateTimeField(null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "hastexo_xblock"
        constraints = [
            models.UniqueConstraint(fields=["course_id", "anonymous_user_id"], name="hastexo_stack_one_per_learner"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    def __repr__(self) -> str:  # never the secrets
        return f"<Stack {self.pk} {self.name} {self.status}>"

    @property
    def is_up(self) -> bool:
        return self.status in states.UP


class StackLog(models.Model):
    """One row per status change: the audit trail and the source of usage time."""

    stack = models.ForeignKey(Stack, on_delete=models.CASCADE, related_name="logs")
    status = models.CharField(max_length=32, db_index=True)
    error_msg = models.TextField(blank=True, default="")
    provider = models.CharField(max_length=64, blank=True, default="")
    course_id = models.CharField(max_length=255)
    anonymous_user_id = models.CharField(max_length=255)
    learner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        app_label = "hastexo_xblock"
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.stack_id} {self.status} at {self.created_at:%Y-%m-%d %H:%M:%S}"


def transition(
    stack_id: int,
    to: str,
    *,
    allowed_from: Iterable[str] | None = None,
    if_attempt: int | None = None,
    where: dict[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Move stack ``stack_id`` to status ``to`` if it is in one of ``allowed_from``.

    ``allowed_from`` defaults to every other status; either way only those from
    which the transition table allows ``to`` count (if none does,
    :class:`states.InvalidTransition` is raised).  ``if_attempt``, when
    given, must match the row's attempt (a stale task loses); ``where`` adds
    further conditions (``{"suspend_by__lte": now}``).  ``fields`` are
    written in the same ``UPDATE``.  Returns whether this call won; a
    winning call appends a :class:`StackLog` row.
    """
    candidates = [s for s in states.ALL if s != to] if allowed_from is None else allowed_from
    allowed_from = [old for old in candidates if states.can_transition(old, to)]
    if not allowed_from:
        raise states.InvalidTransition("|".join(sorted(candidates)), to)
    query = Stack.objects.filter(pk=stack_id, status__in=allowed_from)
    if if_attempt is not None:
        query = query.filter(attempt=if_attempt)
    if where:
        query = query.filter(**where)
    fields.setdefault("error_msg", "")
    for name in ("private_key", "password"):
        # QuerySet.update() still calls get_prep_value, so these are encrypted.
        if name in fields and fields[name] is None:
            fields[name] = ""
    with transaction.atomic():
        won = query.update(status=to, updated_at=timezone.now(), **fields) == 1
        if won:
            row = Stack.objects.values("course_id", "anonymous_user_id", "learner_id", "provider").get(pk=stack_id)
            StackLog.objects.create(stack_id=stack_id, status=to, error_msg=fields["error_msg"], **row)
    return won


class UsedTicket(models.Model):
    """Gateway tickets already spent (single use across gateway replicas)."""

    ticket_id = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        app_label = "hastexo_xblock"


class OrphanSighting(models.Model):
    """A stack a provider lists under our naming scheme that no live row owns.

    The reaper records when it first saw one and deletes it only after the
    ``orphan_grace`` period, so a stack whose row is being written is safe.
    """

    provider = models.CharField(max_length=64)
    name = models.CharField(max_length=255)
    first_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "hastexo_xblock"
        constraints = [models.UniqueConstraint(fields=["provider", "name"], name="hastexo_orphan_once")]

    def __str__(self) -> str:
        return f"{self.provider}:{self.name} (since {self.first_seen:%Y-%m-%d %H:%M})"


class Check(models.Model):
    """One progress check: the author's test scripts run on a learner's lab.

    Created by the block's handler (``checks.start``), run by a worker
    (``checks.run``, which reads the lab's keys from the stack row, never
    from the task), recorded as the learner's score by the block once done.
    The scripts are copied here so the worker runs exactly what the learner
    checked against.
    """

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    ACTIVE = (PENDING, RUNNING)

    stack = models.ForeignKey(Stack, on_delete=models.CASCADE, related_name="checks")
    #: The usage id of the block that started it (several blocks can share a stack).
    block_id = models.CharField(max_length=255)
    status = models.CharField(max_length=16, default=PENDING, db_index=True)
    tests = models.JSONField(default=list)
    #: Per test, in order: ``{"passed": bool, "hint": str, "timed_out": bool}``.
    results = models.JSONField(default=list, blank=True)
    passed = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    error_msg = models.TextField(blank=True, default="")
    #: After this the check counts as lost (worker gone) and another may start.
    deadline = models.DateTimeField()
    #: Set once the block has stored the score and published the grade.
    recorded = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "hastexo_xblock"
        indexes = [models.Index(fields=["stack", "status"], name="hastexo_check_active")]

    def __repr__(self) -> str:
        return f"<Check {self.pk} stack={self.stack_id} {self.status} {self.passed}/{self.total}>"


class LegacyAdoption(models.Model):
    """One row of the original hastexo XBlock's stack table, and what ``hastexo_adopt_legacy`` made of it.

    Written by the adoption (``legacy/adopt.py``), never by the lab's
    lifecycle.  It makes the adoption idempotent (a row adopted once is not
    looked at again), keeps the report of what could not be adopted, and
    tells the reaper's orphan sweep which stack names the original made:
    those are ours too, although they do not follow our naming scheme.
    """

    ADOPTED = "adopted"
    NOT_ADOPTED = "not_adopted"

    #: The original's table the row was read from (``hastexo_stack``, or stackamole's ``stackamole_stack``).
    source_table = models.CharField(max_length=64)
    legacy_id = models.BigIntegerField()
    name = models.CharField(max_length=255, db_index=True)
    #: The provider the original recorded (kept even when the stack is gone).
    provider = models.CharField(max_length=64, blank=True, default="")
    course_id = models.CharField(max_length=255, blank=True, default="")
    anonymous_user_id = models.CharField(max_length=255, blank=True, default="")
    #: The original's status at the last adoption run.
    legacy_status = models.CharField(max_length=32, blank=True, default="")
    outcome = models.CharField(max_length=16)
    #: Why it was not adopted, or what to know about how it was.
    detail = models.TextField(blank=True, default="")
    stack = models.ForeignKey(Stack, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    first_seen = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "hastexo_xblock"
        constraints = [
            models.UniqueConstraint(fields=["source_table", "legacy_id"], name="hastexo_legacy_adopted_once")
        ]

    def __str__(self) -> str:
        return f"{self.source_table}#{self.legacy_id} {self.name}: {self.outcome}"
