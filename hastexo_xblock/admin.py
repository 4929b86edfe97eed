"""Django admin for labs: who has one, in what state, on which provider, and the buttons operators need.

Read-only views of :class:`Stack` and :class:`StackLog`, with actions that
suspend, resume or delete through the same claims and tasks as the jobs
(``operations.py``).  Secrets are never shown to anyone, superusers
included: the private key and password are not fields of any admin form,
list or export, and the admin cannot change a row by hand (a wrong status
written here would bypass the state machine).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.contrib import messages as django_messages
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import messages, operations, states
from .conf import get_settings
from .models import LegacyAdoption, Stack, StackLog
from .usage import usage_seconds

SECRET_FIELDS = ("private_key", "password")


def _duration(seconds: float) -> str:
    minutes = int(seconds) // 60
    return f"{minutes // 60}:{minutes % 60:02d} h"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows change through the state machine only, never through a form."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class StatusGroupFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"
    GROUPS = {
        "up": (_("Up"), states.UP),
        "launching": (_("Launching"), states.LAUNCHING),
        "suspended": (_("Suspended"), states.SUSPENDED | states.SUSPENDING),
        "failed": (_("Failed"), states.FAILED),
        "deleted": (_("Deleted"), states.ABSENT | states.DELETING),
    }

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _statuses) in self.GROUPS.items()]

    def queryset(self, request, queryset):
        if self.value() in self.GROUPS:
            return queryset.filter(status__in=self.GROUPS[self.value()][1])
        return queryset


def _run(modeladmin, request, queryset, action: str, done: str) -> None:
    outcome = operations.apply(action, queryset)
    if outcome.started:
        modeladmin.message_user(request, f"{done}: {', '.join(outcome.started)}", django_messages.SUCCESS)
    if outcome.skipped:
        text = ngettext(
            "Skipped (busy, or not possible in its state): %(names)s",
            "Skipped (busy, or not possible in their state): %(names)s",
            len(outcome.skipped),
        ) % {"names": ", ".join(outcome.skipped)}
        modeladmin.message_user(request, text, django_messages.WARNING)


@admin.action(description=_("Suspend the selected labs"), permissions=["operate"])
def suspend_labs(modeladmin, request, queryset):
    _run(modeladmin, request, queryset, "suspend", _("Suspending"))


@admin.action(description=_("Resume the selected labs"), permissions=["operate"])
def resume_labs(modeladmin, request, queryset):
    _run(modeladmin, request, queryset, "resume", _("Resuming"))


@admin.action(description=_("Delete the selected labs on their provider"), permissions=["operate"])
def delete_labs(modeladmin, request, queryset):
    _run(modeladmin, request, queryset, "delete", _("Deleting"))


@admin.display(description=_("message"))
def message_text(row) -> str:
    """The stored learner message as text (stored as a catalog code; see ``messages.py``)."""
    return messages.render(row.error_msg)


class StackLogInline(admin.TabularInline):
    model = StackLog
    fields = ("created_at", "status", "provider", "message")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-created_at", "-pk")
    max_num = 0

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def message(self, row: StackLog) -> str:
        return message_text(row)


@admin.register(Stack)
class StackAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "status",
        "provider",
        "course_id",
        "learner_name",
        "last_activity",
        "usage",
        "updated_at",
    )
    list_filter = (StatusGroupFilter, "status", "provider", "protocol")
    search_fields = ("name", "course_id", "anonymous_user_id", "learner__username", "learner__email", "ip")
    list_select_related = ("learner",)
    list_per_page = 50
    ordering = ("-updated_at",)
    actions = (suspend_labs, resume_labs, delete_labs)
    # Everything but the secrets; the inline shows the status history.
    exclude = SECRET_FIELDS
    readonly_fields = tuple(
        f.name for f in Stack._meta.get_fields() if f.concrete and f.name not in SECRET_FIELDS and f.name != "id"
    )
    inlines = (StackLogInline,)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a row is the lab's record; "delete" deletes the lab, through the worker

    def has_operate_permission(self, request) -> bool:
        """Operating a lab needs the permission to change labs (``hastexo_xblock.change_stack``)."""
        return request.user.has_perm("hastexo_xblock.change_stack")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description=_("learner"), ordering="learner__username")
    def learner_name(self, stack: Stack) -> str:
        return stack.learner.username if stack.learner else stack.anonymous_user_id

    @admin.display(description=_("last activity"), ordering="suspend_by")
    def last_activity(self, stack: Stack):
        """When the learner was last active: ``suspend_by`` is set to that moment plus the suspend timeout."""
        if stack.suspend_by is None:
            return None
        timeout = stack.suspend_timeout or get_settings()["suspend_timeout"]
        return timezone.localtime(stack.suspend_by - timedelta(seconds=timeout))

    @admin.display(description=_("usage"))
    def usage(self, stack: Stack) -> str:
        return _duration(usage_seconds(stack_id=stack.pk))


@admin.register(StackLog)
class StackLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "stack", "status", "provider", "course_id", "learner", message_text)
    list_filter = ("status", "provider")
    search_fields = ("stack__name", "course_id", "anonymous_user_id", "learner__username")
    list_select_related = ("stack", "learner")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-pk")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the audit trail and the source of usage time


@admin.register(LegacyAdoption)
class LegacyAdoptionAdmin(ReadOnlyAdmin):
    """What ``hastexo_adopt_legacy`` made of each row of the original's table (see the README)."""

    list_display = ("name", "source_table", "legacy_id", "provider", "legacy_status", "outcome", "stack", "detail")
    list_filter = ("outcome", "source_table", "provider")
    search_fields = ("name", "course_id", "anonymous_user_id")
    list_select_related = ("stack",)
    ordering = ("source_table", "legacy_id")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the orphan sweep reads the original's stack names from here
