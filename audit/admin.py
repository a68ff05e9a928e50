"""Read-only admin views of the journal, for auditors only (``audit.view_trail``, the rule of the
audit API): the people who run the system, superusers included, are not the people who audit it.

Nothing can be added, changed or deleted here, and every page that shows journal rows is itself
journalled, as the API and the FHIR facade journal theirs: one ``read`` of ``audit_event``
through ``core.authz.authorize_read``, naming the auditor and the patients on the page.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

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
        return authz.can(request.user, "audit.view_trail")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return authz.can(request.user, "audit.view_trail")

    def patients_of(self, row: Any) -> Iterable[int]:
        """The patients a row names (journalled with the read)."""
        return ()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        changelist = (getattr(response, "context_data", None) or {}).get("cl")
        if changelist is not None:  # a page of rows (not a redirect)
            # Evaluated here, on the queryset the template iterates: the rows journalled are
            # the rows shown.
            self._journal_read(request, "changelist", list(changelist.result_list))
        return response

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        shown = (getattr(response, "context_data", None) or {}).get("original")
        if shown is not None:
            self._journal_read(request, "detail", [shown])
        return response

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().history_view(request, object_id, extra_context)
        shown = (getattr(response, "context_data", None) or {}).get("object")
        if shown is not None:
            self._journal_read(request, "history", [shown])
        return response

    def _journal_read(self, request: HttpRequest, page: str, rows: list[Any]) -> None:
        authz.authorize_read(
            request.user,
            "audit.view_trail",
            shown=sorted({patient for row in rows for patient in self.patients_of(row)}),
            detail={
                "channel": "admin",
                "page": page,
                "resource": self.model.__name__,
                "shown": [str(row.pk) for row in rows],
            },
        )


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

    def patients_of(self, row: AuditEvent) -> Iterable[int]:
        return cast(list[int], row.patient_ids)


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

    def patients_of(self, row: AuditExport) -> Iterable[int]:
        return () if row.patient_id is None else (row.patient_id,)
