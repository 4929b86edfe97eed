"""Read the original's stack and log tables (same database), whatever release made them.

The original hastexo XBlock (Django app label ``hastexo``) keeps one row per
learner per course run in ``hastexo_stack`` and every status change in
``hastexo_stacklog``; stackamole 9.x renamed them to ``stackamole_stack``
and ``stackamole_stacklog`` (its migration 0013).  Columns came and went
over its twelve migrations (``hook_*``, ``providers`` and ``run`` in 0005,
``delete_*`` in 0007, ``learner`` in 0010, ``suspend_by`` in 0012), so the
columns are read by name, from what the table has.  Nothing is written.

The values of interest (from the original's models and tasks):

``name``, ``course_id``, ``student_id``
    The Heat stack name (``<course>_<run>_<anonymous id>``, every other
    character ``_``), the course run key, the learner's anonymous id.
``status``, ``error_msg``, ``provider``, ``providers``
    Heat's ``ACTION_STATUS`` vocabulary plus the original's own
    (``LAUNCH_PENDING``, ``SUSPEND_ISSUED``, ``SUSPEND_RETRY``, …); the
    provider the stack lives on; the block's providers list (JSON text).
``ip``, ``user``, ``key``, ``password``, ``port``, ``protocol``
    The lab's address (SSH on port 22), the lab user, the private key and
    password in plain text, the learner's chosen port, ``ssh``/``rdp``/``vnc``.
``hook_script``, ``hook_events`` (JSON text), ``delete_age`` (seconds)
``launch_timestamp``, ``suspend_timestamp`` (the last keepalive), ``suspend_by``, ``delete_by``, ``created_on``
``learner_id``
    The platform's user id (0010 and later).

Log rows carry the same columns (no keys) plus ``stack_id``; their
``created_on`` is when the status changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

#: (stack table, log table) of each release line, in the order they are looked for.
TABLE_PAIRS = (("hastexo_stack", "hastexo_stacklog"), ("stackamole_stack", "stackamole_stacklog"))

_STACK_COLUMNS = (
    "id",
    "name",
    "student_id",
    "course_id",
    "run",
    "provider",
    "providers",
    "hook_script",
    "hook_events",
    "protocol",
    "port",
    "status",
    "error_msg",
    "ip",
    "user",
    "key",
    "password",
    "launch_task_id",
    "launch_timestamp",
    "suspend_timestamp",
    "suspend_by",
    "created_on",
    "delete_age",
    "delete_by",
    "learner_id",
)
_LOG_COLUMNS = ("id", "stack_id", "status", "error_msg", "provider", "created_on")
_TIMES = ("launch_timestamp", "suspend_timestamp", "suspend_by", "created_on", "delete_by")


@dataclass
class LegacyLog:
    """One status change the original logged."""

    id: int
    stack_id: int | None
    status: str
    error_msg: str = ""
    provider: str = ""
    created_on: datetime | None = None


@dataclass
class LegacyStack:
    """One row of the original's stack table (see the module docstring)."""

    table: str
    id: int
    name: str = ""
    student_id: str = ""
    course_id: str = ""
    run: str = ""
    provider: str = ""
    providers: list[dict[str, Any]] = field(default_factory=list)
    hook_script: str = ""
    hook_events: dict[str, Any] = field(default_factory=dict)
    protocol: str = ""
    port: int | None = None
    status: str = ""
    error_msg: str = ""
    ip: str = ""
    user: str = ""
    key: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    launch_task_id: str = ""
    launch_timestamp: datetime | None = None
    suspend_timestamp: datetime | None = None
    suspend_by: datetime | None = None
    created_on: datetime | None = None
    delete_age: int | None = None
    delete_by: datetime | None = None
    learner_id: int | None = None
    logs: list[LegacyLog] = field(default_factory=list)


def _time(value: Any) -> datetime | None:
    """A datetime column as an aware UTC datetime (the platform runs with ``USE_TZ``: stored in UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = parse_datetime(value)
        if value is None:
            return None
    if timezone.is_naive(value):
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _json(value: Any, empty: Any) -> Any:
    """A ``jsonfield`` column (JSON text; ``"null"`` or ``null`` in rows older than migration 0006)."""
    if value is None or value == "":
        return empty
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            return empty
        if isinstance(value, str):  # stored twice-encoded ("\"null\"")
            try:
                value = json.loads(value)
            except ValueError:
                return empty
    return value if isinstance(value, type(empty)) else empty


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def find_tables() -> list[tuple[str, str | None]]:
    """The original's ``(stack table, log table or None)`` pairs present in this database."""
    present = set(connection.introspection.table_names())
    return [(stack, log if log in present else None) for stack, log in TABLE_PAIRS if stack in present]


def _columns(table: str) -> list[str]:
    with connection.cursor() as cursor:
        return [column.name for column in connection.introspection.get_table_description(cursor, table)]


def _select(table: str, wanted: tuple[str, ...], order: str = "id") -> Iterator[dict[str, Any]]:
    present = [name for name in wanted if name in set(_columns(table))]
    quote = connection.ops.quote_name
    # Table and column names are this module's constants (filtered by what the table has), quoted.
    sql = f"SELECT {', '.join(quote(name) for name in present)} FROM {quote(table)} ORDER BY {quote(order)}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql)
        for row in cursor.fetchall():
            yield dict(zip(present, row, strict=True))


def read(stack_table: str, log_table: str | None) -> list[LegacyStack]:
    """Every row of ``stack_table``, with its log rows from ``log_table``, in id order."""
    logs: dict[int, list[LegacyLog]] = {}
    if log_table:
        for row in _select(log_table, _LOG_COLUMNS):
            if row.get("stack_id") is None:
                continue  # a log row whose stack was deleted before 0004: no learner to give it to
            logs.setdefault(int(row["stack_id"]), []).append(
                LegacyLog(
                    id=int(row["id"]),
                    stack_id=int(row["stack_id"]),
                    status=_text(row.get("status")),
                    error_msg=_text(row.get("error_msg")),
                    provider=_text(row.get("provider")),
                    created_on=_time(row.get("created_on")),
                )
            )
    stacks = []
    for row in _select(stack_table, _STACK_COLUMNS):
        values: dict[str, Any] = {"table": stack_table, "id": int(row["id"])}
        for name, value in row.items():
            if name in ("id",):
                continue
            if name in _TIMES:
                values[name] = _time(value)
            elif name == "providers":
                values[name] = [p for p in _json(value, []) if isinstance(p, dict)]
            elif name == "hook_events":
                values[name] = _json(value, {})
            elif name in ("port", "delete_age", "learner_id"):
                values[name] = int(value) if value not in (None, "") else None
            else:
                values[name] = _text(value)
        values["logs"] = logs.get(values["id"], [])
        stacks.append(LegacyStack(**values))
    return stacks
