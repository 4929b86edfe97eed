"""The original hastexo XBlock's tables, as its twelve migrations left them (8.x; stackamole 9.x renamed them).

Written field by field from ``hastexo/migrations/0001``–``0012`` (app label
``hastexo``): 0001 the stack table; 0002 the log table; 0003 blanks; 0004
the log's ``stack`` foreign key replaced by a plain ``stack_id`` column;
0005 ``hook_events``, ``hook_script``, ``providers``, ``run`` (``jsonfield``
columns are text); 0006 their defaults; 0007 ``delete_age``, ``delete_by``;
0008/0009 ``key`` and ``password`` nullable; 0010/0011 ``learner``, a
nullable foreign key to the platform's users with ``PROTECT``; 0012
``suspend_by``.  Django's schema editor turns these into each database's
DDL, as the original's migrations did (``create(schema_editor)``).

The models are unmanaged and only for the tests: nothing migrates them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

LABEL = "hastexo"


class _Common(models.Model):
    name = models.CharField(max_length=64, db_index=True)
    student_id = models.CharField(max_length=40, db_index=True)
    course_id = models.CharField(max_length=50, db_index=True)
    run = models.CharField(max_length=50, blank=True)
    provider = models.CharField(max_length=32, blank=True)
    providers = models.TextField(default="[]")  # jsonfield.JSONField: JSON text
    hook_script = models.CharField(max_length=256, null=True)
    hook_events = models.TextField(default="{}")  # jsonfield.JSONField
    protocol = models.CharField(max_length=32, blank=True)
    port = models.IntegerField(null=True)
    status = models.CharField(max_length=32, blank=True, db_index=True)
    error_msg = models.CharField(max_length=256, blank=True)
    ip = models.GenericIPAddressField(null=True)
    user = models.CharField(max_length=32, blank=True)
    launch_task_id = models.CharField(max_length=40, blank=True)
    launch_timestamp = models.DateTimeField(null=True, db_index=True)
    suspend_timestamp = models.DateTimeField(null=True, db_index=True)
    suspend_by = models.DateTimeField(null=True, db_index=True)
    created_on = models.DateTimeField(db_index=True)  # auto_now_add in the original; the dump sets it
    delete_age = models.IntegerField(null=True)
    delete_by = models.DateTimeField(null=True, db_index=True)

    class Meta:
        abstract = True


class OriginalStack(_Common):
    key = models.TextField(blank=True, null=True)
    password = models.CharField(max_length=128, blank=True, null=True)
    learner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, db_index=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        app_label = LABEL
        db_table = "hastexo_stack"
        managed = False
        unique_together = (("student_id", "course_id", "name"),)


class OriginalStackLog(_Common):
    stack_id = models.IntegerField(null=True, db_index=True)

    class Meta:
        app_label = LABEL
        db_table = "hastexo_stacklog"
        managed = False


MODELS = (OriginalStack, OriginalStackLog)


def create(schema_editor) -> None:
    """Create both tables (with their indexes and constraints) in the schema editor's database."""
    for model in MODELS:
        schema_editor.create_model(model)


def drop(schema_editor) -> None:
    for model in reversed(MODELS):
        schema_editor.delete_model(model)


def rename_to_stackamole(schema_editor) -> None:
    """What stackamole 9.x's migration 0013 does: the same tables, renamed."""
    schema_editor.alter_db_table(OriginalStackLog, "hastexo_stacklog", "stackamole_stacklog")
    schema_editor.alter_db_table(OriginalStack, "hastexo_stack", "stackamole_stack")


#: Columns migrations 0007 (delete_*), 0010 (learner) and 0012 (suspend_by) added.
LATER_COLUMNS = ("delete_age", "delete_by", "learner", "suspend_by")


def stack_as_of_0006() -> type[models.Model]:
    """The stack table as a release before migration 0007 had it (for reading older databases)."""
    attrs: dict[str, object] = {"__module__": __name__}
    for field in OriginalStack._meta.local_fields:
        if field.name not in ("id", *LATER_COLUMNS):
            attrs[field.name] = field.clone()
    attrs["Meta"] = type("Meta", (), {"app_label": LABEL, "db_table": "hastexo_stack", "managed": False})
    return type("OriginalStack0006", (models.Model,), attrs)
