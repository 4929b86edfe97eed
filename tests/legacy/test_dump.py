"""The original's tables, as its migrations made them, and a dump of its rows: read and adopted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import connection

from hastexo_xblock import states
from hastexo_xblock.legacy import adopt, tables
from hastexo_xblock.models import LegacyAdoption, Stack, StackLog
from hastexo_xblock.usage import usage_seconds

from . import db
from .db import schema

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]

COURSE = "course-v1:DemoX+Linux101+2026"


def counts():
    return schema.OriginalStack.objects.count(), schema.OriginalStackLog.objects.count()


def test_the_schema_is_the_originals(original_tables):
    with connection.cursor() as cursor:
        stack_columns = {c.name for c in connection.introspection.get_table_description(cursor, "hastexo_stack")}
        log_columns = {c.name for c in connection.introspection.get_table_description(cursor, "hastexo_stacklog")}
    assert {"key", "password", "learner_id", "suspend_by", "delete_by", "hook_events", "providers"} <= stack_columns
    assert "stack_id" in log_columns and "key" not in log_columns and "learner_id" not in log_columns
    constraints = connection.introspection.get_constraints(connection.cursor(), "hastexo_stack")
    assert any(c["unique"] and set(c["columns"]) == {"student_id", "course_id", "name"} for c in constraints.values())
    assert any(c["foreign_key"] and c["columns"] == ["learner_id"] for c in constraints.values())


def test_the_dump_reads_back_as_the_original_wrote_it(original_tables):
    data = db.load()
    assert [t for t, _log in tables.find_tables()] == ["hastexo_stack"]
    rows = {row.id: row for row in tables.read("hastexo_stack", "hastexo_stacklog")}
    assert set(rows) == {obj["pk"] for obj in data["objects"] if obj["model"] == "hastexo.stack"}
    running = rows[1]
    assert running.name == f"Linux101_2026_{running.student_id}" and running.course_id == COURSE
    assert running.providers == [
        {"name": "default", "capacity": -1, "template": "hot/lab.yaml", "environment": "hot/env.yaml"}
    ]
    assert running.hook_events == {"suspend": True, "resume": True, "delete": False}
    assert running.suspend_by == datetime(2026, 11, 29, 10, 31, 30, tzinfo=UTC)
    assert running.key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----") and running.learner_id == 101
    assert [entry.status for entry in running.logs][-1] == "RESUME_COMPLETE"
    assert rows[4].key == "" and rows[4].ip == "" and rows[4].provider == ""
    assert sum(len(row.logs) for row in rows.values()) == 17  # the log row whose stack is gone is left out


def test_an_older_schema_reads_too(original_tables):
    """A table from before migrations 0007, 0010 and 0012 (no delete_*, learner or suspend_by) still reads."""
    db.drop_tables()
    older = schema.stack_as_of_0006()
    with connection.schema_editor() as editor:
        editor.create_model(older)
    fields = {k: v for k, v in db.dump()["objects"][0]["fields"].items() if k not in schema.LATER_COLUMNS}
    older.objects.create(**{**fields, "created_on": datetime(2019, 8, 1, tzinfo=UTC), "launch_timestamp": None})
    [row] = tables.read("hastexo_stack", None)
    assert row.name == fields["name"] and row.status == "RESUME_COMPLETE" and row.hook_events["suspend"] is True
    assert row.suspend_by is None and row.learner_id is None and row.delete_age is None and row.logs == []


def test_adopting_the_dump_without_any_lab_running(original_tables, capsys):
    """No lab of the dump exists on the provider: every adoptable row is adopted as it really is (gone)."""
    db.load()
    before = counts()
    call_command("hastexo_adopt_legacy", "--ssh-timeout", "2")
    out = capsys.readouterr().out
    assert "adopted 5, already adopted 0, not adopted 1" in out
    assert "PRIVATE KEY" not in out and "kPw9-fixture" not in out  # no secret in the report
    assert "not adopted hastexo_stack#5" in out and "provider gcloud1 is not configured here" in out
    for pk in (1, 2, 3, 4, 6):
        stack = Stack.objects.get(name=schema.OriginalStack.objects.get(pk=pk).name)
        assert stack.status == states.DELETE_COMPLETE and stack.provider == ""  # the provider has none of them
        assert stack.course_id == COURSE and stack.learner_id == 100 + pk
    assert counts() == before  # nothing of the original's is touched

    # The status history came along: usage time is summed from it, per learner, as before the switch.
    learner4 = Stack.objects.get(learner_id=104)
    assert [log.status for log in learner4.logs.all()] == [
        "CREATE_COMPLETE",
        "SUSPEND_COMPLETE",
        "DELETE_PENDING",
        "DELETE_COMPLETE",
        "DELETE_COMPLETE",
    ]
    assert usage_seconds(learner=learner4.learner) == 59 * 60  # 08:03 to 09:02
    assert "adopted from the original" in learner4.logs.last().error_msg

    # Idempotent: a second run adopts nothing new and says so.
    call_command("hastexo_adopt_legacy", "--ssh-timeout", "2")
    assert "adopted 0, already adopted 5, not adopted 1" in capsys.readouterr().out
    assert Stack.objects.count() == 5 and StackLog.objects.filter(stack__learner_id=104).count() == 5
    held = adopt.legacy_names("gcloud1")
    assert held == {schema.OriginalStack.objects.get(pk=5).name: True}


def test_a_dry_run_writes_nothing(original_tables, capsys):
    db.load()
    call_command("hastexo_adopt_legacy", "--dry-run")
    assert "would adopt 5" in capsys.readouterr().out
    assert not Stack.objects.exists() and not LegacyAdoption.objects.exists()


def test_stackamole_tables_are_adopted_too(original_tables):
    db.load()
    db.rename_to_stackamole()
    report = adopt.adopt(ssh_timeout=1)
    assert report.tables == ["stackamole_stack"] and len(report.adopted) == 5
    assert set(LegacyAdoption.objects.values_list("source_table", flat=True)) == {"stackamole_stack"}


def test_a_learner_with_a_lab_here_already_keeps_it(original_tables):
    db.load()
    row = schema.OriginalStack.objects.get(pk=2)
    Stack.objects.create(
        name="hx-already",
        course_id=COURSE,
        anonymous_user_id=row.student_id,
        status=states.SUSPEND_COMPLETE,
        provider="default",
    )
    empty = schema.OriginalStack.objects.get(pk=4)
    Stack.objects.create(
        name="hx-empty", course_id=COURSE, anonymous_user_id=empty.student_id
    )  # opened, never launched
    report = adopt.adopt(ssh_timeout=1)
    [refused] = [r for r in report.not_adopted if r.legacy_id == 2]
    assert "already has a lab of this project" in refused.detail and "hx-already" in refused.detail
    assert Stack.objects.get(anonymous_user_id=empty.student_id).name == empty.name  # the empty row is taken over
    assert adopt.legacy_names("default")[row.name] is True  # held by the original's row: never an orphan


def test_the_admin_lists_what_the_adoption_made_of_each_row(original_tables, client):
    from django.contrib.auth.models import User

    db.load()
    adopt.adopt(ssh_timeout=1)
    client.force_login(User.objects.create_superuser("root", "root@example.org", "pw"))
    page = client.get("/admin/hastexo_xblock/legacyadoption/?outcome=not_adopted").content.decode()
    assert schema.OriginalStack.objects.get(pk=5).name in page and "provider gcloud1 is not configured here" in page
    assert schema.OriginalStack.objects.get(pk=1).name not in page
    row = LegacyAdoption.objects.get(legacy_id=5)
    assert client.post(f"/admin/hastexo_xblock/legacyadoption/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert LegacyAdoption.objects.filter(pk=row.pk).exists()
