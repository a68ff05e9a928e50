"""Read-only admin views of the journal: nothing can be added, changed or deleted here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEvent, AuditExport, Checkpoint
from core import authz


# ModelAdmin is generic only in django-stubs, not subscriptable at run time.
class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return authz.can(request.user, "audit.browse_in_admin")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = (
        "sequence",
        "occurred_at",
        "action",
        "actor_id",
        "actor_role",
        "object_type",
        "object_id",
        "patient_id",
        "outcome",
    )
    list_filter = ("action", "actor_role", "outcome")
    search_fields = ("=sequence", "=object_id", "=patient_id")
    show_full_result_count = False  # a COUNT(*) over millions of rows per page is wasted work


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = (
        "index",
        "first_sequence",
        "last_sequence",
        "merkle_root",
        "key_fingerprint",
        "created_at",
    )


@admin.register(AuditExport)
class AuditExportAdmin(ReadOnlyAdmin):
    list_display = ("id", "status", "requested_by", "requested_at", "finished_at")
