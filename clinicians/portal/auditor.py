"""The auditors' workspace in the portal: search the journal, the chain's verification status,
exports, and the report of emergency accesses and overrides to review.

Only auditors (``audit.view_trail``; exports ``audit.export_trail``): everyone else is shown
the rule's refusal with a 403, and the refusal is journalled. Every page that shows journal
rows, checkpoints or exports is a read of the trail, journalled by ``core.authz.authorize_read``
with the patients it showed. Exports go through the service the API uses
(``audit.export_jobs.request_export``) and download through the API's own view, so a download
is journalled (``export_download``) exactly as there. The reads are in ``audit.workspace``.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods
from django_otp.decorators import otp_required

from audit import workspace
from audit.api.views import AuditExportViewSet
from audit.export_jobs import request_export
from audit.exports import ExportError, build_filters
from audit.models import Action, ExportStatus, Outcome
from audit.selectors import exports_visible_to
from audit.services import record_refusal
from core import authz
from core.ids import DATABASE_INTEGER_MAX, parse_id

EXPORTS_PER_PAGE = 25
DATE_FORMAT = "%Y-%m-%d"

# The API's download, served to the portal's verified session: one archive, one journal entry.
_api_download = AuditExportViewSet.as_view({"get": "download"})


def for_auditors(action: str, view_name: str):
    """Refuse anyone ``action``'s rule does not allow, with its message and a 403, and journal
    the refusal (``refused``: who tried to read the trail is part of the trail)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if not authz.can(request.user, action):
                message = authz.message_of(action)
                record_refusal(
                    actor=request.user,
                    attempted=view_name,
                    message=message,
                    object_type="audit_event",
                )
                return render(
                    request, "portal/audit/forbidden.html", {"message": message}, status=403
                )
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


class DayField(forms.DateField):
    """A UTC day, ``YYYY-MM-DD``; the refusal repeats what was given (a date picker cannot
    show a value that is not a date)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("input_formats", [DATE_FORMAT])
        kwargs.setdefault("widget", forms.DateInput(attrs={"type": "date"}, format=DATE_FORMAT))
        super().__init__(required=False, **kwargs)

    def to_python(self, value):
        try:
            return super().to_python(value)
        except forms.ValidationError:
            raise forms.ValidationError(
                f"{str(value)[:40]!r} is not a date: enter it as YYYY-MM-DD.", code="invalid"
            ) from None


class DateRangeForm(forms.Form):
    since = DayField(label="From (UTC day)")
    until = DayField(label="To (UTC day, included)")

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        since, until = self.cleaned_data.get("since"), self.cleaned_data.get("until")
        if since and until and until < since:
            self.add_error("until", "The end of the range is before its start.")
        return cleaned

    def query_string(self) -> str:
        """The submitted filters (what the next page link carries), cursors left out."""
        return urlencode(
            {
                name: self.data[name]
                for name in self.fields
                if name not in ("before", "after") and self.data.get(name)
            }
        )


def _choices(choices) -> list[tuple[str, str]]:
    return [("", "any"), *((str(value), str(label)) for value, label in choices)]


class JournalSearchForm(DateRangeForm):
    patient = forms.CharField(label="Patient id", required=False, max_length=24)
    actor = forms.CharField(label="Actor (username or id)", required=False, max_length=150)
    action = forms.ChoiceField(
        required=False,
        choices=_choices(Action.choices),
        error_messages={"invalid_choice": "Unknown action %(value)s: choose one from the list."},
    )
    outcome = forms.ChoiceField(
        required=False,
        choices=_choices(Outcome.choices),
        error_messages={"invalid_choice": "Unknown outcome %(value)s: choose one from the list."},
    )
    object_type = forms.CharField(label="Object type", required=False, max_length=64)
    object_id = forms.CharField(label="Object id", required=False, max_length=128)
    before = forms.IntegerField(
        required=False, min_value=1, max_value=DATABASE_INTEGER_MAX, widget=forms.HiddenInput
    )
    after = forms.IntegerField(
        required=False, min_value=1, max_value=DATABASE_INTEGER_MAX, widget=forms.HiddenInput
    )

    field_order = ["patient", "actor", "action", "outcome", "object_type", "object_id"]

    def clean_patient(self) -> int | None:
        text = self.cleaned_data["patient"].strip()
        if not text:
            return None
        patient_id = parse_id(text)
        if patient_id is None:
            raise forms.ValidationError("A patient id is a positive whole number, e.g. 42.")
        return patient_id

    def clean_actor(self) -> int | None:
        text = self.cleaned_data["actor"].strip()
        if not text:
            return None
        actor_id = workspace.actor_id_named(text)
        if actor_id is None:
            raise forms.ValidationError(
                f"No account is named {text!r}; give a username or a user id."
            )
        return actor_id

    def query(self) -> workspace.JournalQuery:
        data = self.cleaned_data
        return workspace.JournalQuery(
            patient_id=data["patient"],
            actor_id=data["actor"],
            action=data["action"],
            outcome=data["outcome"],
            object_type=data["object_type"].strip(),
            object_id=data["object_id"].strip(),
            since=data["since"],
            until=data["until"],
        )


@require_GET
@otp_required(login_url="portal:login")
@for_auditors("audit.view_trail", "portal.audit.search")
def search(request):
    """The workspace's home: the journal, newest first, filtered; bad filters are a 400 naming
    the field, and nothing is read."""
    form = JournalSearchForm(request.GET)
    if not form.is_valid():
        return render(request, "portal/audit/search.html", {"form": form}, status=400)
    query = form.query()
    page = workspace.search_journal(
        query, before=form.cleaned_data["before"], after=form.cleaned_data["after"]
    )
    authz.authorize_read(
        request.user,
        "audit.view_trail",
        shown=workspace.patient_ids(page.rows),
        detail={
            "view": "portal.audit.search",
            "filters": query.as_detail(),
            "shown": [row.sequence for row in page.rows],
        },
    )
    return render(
        request,
        "portal/audit/search.html",
        {"form": form, "page": page, "filters": form.query_string()},
    )


class VerifyForm(forms.Form):
    quick = forms.BooleanField(required=False)


@require_http_methods(["GET", "POST"])
@otp_required(login_url="portal:login")
@for_auditors("audit.view_trail", "portal.audit.verify")
def verification(request):
    """GET: the chain head, the last signed tree head, the signing key's fingerprint and the
    last verification journalled here. POST ("Verify now"): ``verify_journal`` runs now, in the
    request, full unless ``quick``; its result and duration are journalled with the read."""
    if request.method == "POST":
        form = VerifyForm(request.POST)
        full = not (form.is_valid() and form.cleaned_data["quick"])
        result = workspace.run_verification(full=full)
        authz.authorize_read(request.user, "audit.view_trail", detail=result.as_detail())
        (messages.success if result.ok else messages.error)(
            request, f"{result.line} ({result.duration_ms} ms)"
        )
        return redirect("portal:audit-verify")
    status = workspace.chain_status()
    latest, latest_full = workspace.last_verifications()
    authz.authorize_read(
        request.user,
        "audit.view_trail",
        detail={
            "view": "portal.audit.status",
            "head_sequence": status.head_sequence,
            "checkpoint": status.tree_head.index if status.tree_head else None,
        },
    )
    return render(
        request,
        "portal/audit/verify.html",
        {"status": status, "latest": latest, "latest_full": latest_full},
    )


class ExportForm(forms.Form):
    """The export API's request (``audit.exports.build_filters`` validates it, as there)."""

    since = forms.CharField(
        label="Since (YYYY-MM-DD or ISO 8601, included)", required=False, max_length=40
    )
    until = forms.CharField(
        label="Until (a date: that day included)", required=False, max_length=40
    )
    patient = forms.CharField(label="Patient id", required=False, max_length=24)
    formats = forms.MultipleChoiceField(
        label="Also write",
        required=False,
        choices=[("csv", "CSV (events.csv)"), ("fhir", "FHIR R4 Bundle (auditevents.fhir.json)")],
        widget=forms.CheckboxSelectMultiple,
        help_text="events.jsonl, the evidence, is always written.",
    )

    def clean_patient(self) -> str:
        text = self.cleaned_data["patient"].strip()
        if text and parse_id(text) is None:
            raise forms.ValidationError("A patient id is a positive whole number, e.g. 42.")
        return text

    def filters(self):
        """The validated filters, or None with the service's message on its field."""
        data = self.cleaned_data
        try:
            return build_filters(
                since=data["since"].strip() or None,
                until=data["until"].strip() or None,
                patient=data["patient"] or None,
                formats=data["formats"],
            )
        except ExportError as error:
            self.add_error(error.field if error.field in self.fields else None, error.message)
            return None


def _exports_page(request, form: ExportForm, status: int = 200):
    exports = exports_visible_to(request.user).select_related("requested_by")
    page = Paginator(exports, EXPORTS_PER_PAGE).get_page(request.GET.get("page"))
    shown = list(page.object_list)
    authz.authorize_read(
        request.user,
        "audit.view_trail",
        shown=sorted({e.patient_id for e in shown if e.patient_id is not None}),
        detail={
            "view": "portal.audit.exports",
            "resource": "AuditExport",
            "shown": [str(e.pk) for e in shown],
        },
    )
    return render(
        request,
        "portal/audit/exports.html",
        {"form": form, "page": page, "exports": shown},
        status=status,
    )


@require_http_methods(["GET", "POST"])
@otp_required(login_url="portal:login")
@for_auditors("audit.export_trail", "portal.audit.exports")
def exports(request):
    """The exports (status, who, when, counts) and a form to request one; the archive is written
    by the same task as the API's (eagerly without a broker)."""
    if request.method != "POST":
        return _exports_page(request, ExportForm())
    form = ExportForm(request.POST)
    filters = form.filters() if form.is_valid() else None
    if filters is None:
        return _exports_page(request, form, status=400)
    export = request_export(actor=request.user, filters=filters)
    messages.success(request, f"Export {export.pk} requested.")
    return redirect("portal:audit-exports")


@require_GET
@otp_required(login_url="portal:login")
@for_auditors("audit.export_trail", "portal.audit.export_download")
def export_download(request, pk):
    """The finished archive, from the API's download (journalled ``export_download`` there)."""
    export = get_object_or_404(exports_visible_to(request.user), pk=pk)
    if export.status != ExportStatus.DONE:
        raise Http404("This export is not finished.")
    return _api_download(request, pk=str(export.pk))


@require_GET
@otp_required(login_url="portal:login")
@for_auditors("audit.view_trail", "portal.audit.review")
def review(request):
    """Emergency accesses and the overrides to review (clinicians' modifications and rejections
    of proposals, gate waivers, non-private training waivers, refused requests), by date."""
    form = DateRangeForm(request.GET)
    if not form.is_valid():
        return render(request, "portal/audit/review.html", {"form": form}, status=400)
    since, until = form.cleaned_data["since"], form.cleaned_data["until"]
    report = workspace.review_report(since=since, until=until)
    authz.authorize_read(
        request.user,
        "audit.view_trail",
        shown=report.patient_ids(),
        detail={
            "view": "portal.audit.review",
            "filters": workspace.JournalQuery(since=since, until=until).as_detail(),
            "shown": report.sequences(),
        },
    )
    return render(
        request,
        "portal/audit/review.html",
        {"form": form, "report": report, "limit": workspace.REVIEW_LIMIT},
    )
