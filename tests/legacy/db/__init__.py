"""The original's tables in the test database: its schema (``schema.py``) and a dump of its rows (``dump.json``)."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.dateparse import parse_datetime

from . import schema

DUMP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dump.json")
_TIMES = ("launch_timestamp", "suspend_timestamp", "suspend_by", "created_on", "delete_by")


def dump() -> dict[str, Any]:
    with open(DUMP, encoding="utf-8") as handle:
        return json.load(handle)


def create_tables() -> None:
    with connection.schema_editor() as editor:
        schema.create(editor)


def drop_tables(stackamole: bool = False) -> None:
    names = set(connection.introspection.table_names())
    with connection.schema_editor() as editor:
        for table in ("stackamole_stacklog", "stackamole_stack", "hastexo_stacklog", "hastexo_stack"):
            if table in names:
                editor.execute(f"DROP TABLE {editor.quote_name(table)}")


def rename_to_stackamole() -> None:
    with connection.schema_editor() as editor:
        schema.rename_to_stackamole(editor)


def _row(model: type, fields: Mapping[str, Any], pk: int) -> Any:
    values = dict(fields)
    for name in _TIMES:
        if values.get(name):
            values[name] = parse_datetime(values[name])
    if "learner" in values:
        values["learner_id"] = values.pop("learner")
    return model(pk=pk, **values)


def load(stack_overrides: Mapping[int, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Create the learners' users and insert every row of the dump; return the dump.

    ``stack_overrides`` (stack pk → fields) stand for what the original had
    written for real labs (their addresses and keys).
    """
    data = copy.deepcopy(dump())
    users = get_user_model()
    for pk in data["header"]["learner_user_ids"]:
        users.objects.get_or_create(pk=pk, defaults={"username": f"learner{pk}"})
    stacks, logs = [], []
    for obj in data["objects"]:
        fields = (
            {**obj["fields"], **(stack_overrides or {}).get(obj["pk"], {})}
            if obj["model"] == "hastexo.stack"
            else obj["fields"]
        )
        if obj["model"] == "hastexo.stack":
            stacks.append(_row(schema.OriginalStack, fields, obj["pk"]))
        else:
            logs.append(_row(schema.OriginalStackLog, fields, obj["pk"]))
    schema.OriginalStack.objects.bulk_create(stacks)
    schema.OriginalStackLog.objects.bulk_create(logs)
    if connection.vendor == "postgresql":
        # Explicit ids do not move PostgreSQL's sequences; the original's next row would collide.
        with connection.cursor() as cursor:
            for table in ("hastexo_stack", "hastexo_stacklog"):
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))")
    return data
