"""The portal's alert actions — acknowledge, resolve with a note, snooze a condition — and the
worklist's live counts (the tab title and the section counts follow the pushes)."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_otp.decorators import otp_required

from clinicians import alerts
from clinicians.alert_evidence import FiredReading, fired_by, rule_of
from clinicians.alerts import snoozes_for
from clinicians.models import Alert, AlertEscalation, AlertSnooze
from clinicians.portal.worklist import worklist_for
from clinicians.selectors import alerts_visible_to
from core import authz
from core.errors import DomainError
from patients.selectors import patients_visible_to


@dataclass
class ChartAlert:
    alert: Alert
    rule: str
    readings: list[FiredReading]
    escalated: list[AlertEscalation]


def chart_alerts(rows: list[Alert], patient) -> dict:
    """The chart's alert section, for the unresolved alerts the chart already read
    (``PatientChart.alerts``): each with its rule and the readings that fired it (in the
    patient's zone), who acknowledged it, the rungs that fired, and the conditions snoozed now."""
    fired: dict[int, list[AlertEscalation]] = {}
    for rung in AlertEscalation.objects.filter(alert__in=rows, fired_at__isnull=False):
        fired.setdefault(rung.alert_id, []).append(rung)
    return {
        "alert_rows": [ChartAlert(a, rule_of(a), fired_by(a), fired.get(a.pk, [])) for a in rows],
        "snoozes": snoozes_for([patient.pk], timezone.now()).get(patient.pk, []),
    }


def _back(request):
    """Back where the clinician was (the worklist or the chart), at the alert."""
    target = request.POST.get("next", "")
    if target.startswith("/portal/") and "//" not in target and "\\" not in target:
        return redirect(target)
    return redirect("portal:home")


@require_POST
@otp_required(login_url="portal:login")
def acknowledge_alert(request, alert_id: int):
    alert: Alert = get_object_or_404(
        alerts_visible_to(request.user).select_related("patient"), pk=alert_id
    )
    try:
        if request.POST.get("resolve"):
            note = request.POST.get("note", "")
            alerts.resolve_alert(alert=alert, actor=request.user, note=note)
            messages.success(
                request, f"{alert.get_kind_display()} resolved for {alert.patient.identity}."
            )
        else:
            alerts.acknowledge_alert(alert=alert, actor=request.user)
            messages.success(
                request, f"{alert.get_kind_display()} acknowledged for {alert.patient.identity}."
            )
    except DomainError as error:
        messages.error(request, f"{alert.patient.display_name}: {error.message}")
    return _back(request)


@require_POST
@otp_required(login_url="portal:login")
def snooze_condition(request, patient_id: int):
    patient = get_object_or_404(patients_visible_to(request.user), pk=patient_id)
    try:
        snooze = alerts.snooze_condition(
            patient=patient,
            kind=request.POST.get("kind", ""),
            hours=request.POST.get("hours", ""),
            reason=request.POST.get("reason", ""),
            actor=request.user,
        )
    except DomainError as error:
        messages.error(request, f"{patient.display_name}: {error.message}")
    else:
        messages.success(
            request,
            f"{snooze.get_kind_display()} snoozed for {patient.identity} until "
            f"{snooze.until:%Y-%m-%d %H:%M %Z}. Crisis and hypotension alerts still come through.",
        )
    return _back(request)


@require_POST
@otp_required(login_url="portal:login")
def end_snooze(request, snooze_id: int):
    snooze = get_object_or_404(
        AlertSnooze.objects.filter(patient__in=patients_visible_to(request.user)), pk=snooze_id
    )
    try:
        alerts.end_snooze(snooze=snooze, actor=request.user)
        messages.success(request, f"{snooze.get_kind_display()} is no longer snoozed.")
    except DomainError as error:
        messages.error(request, error.message)
    return _back(request)


@require_GET
@otp_required(login_url="portal:login")
def worklist_counts(request):
    """What the live script refreshes after each push: the section counts and the tab title's
    urgent count (the server stays the one source of truth)."""
    if not authz.can(request.user, "clinicians.follow_care_team_events"):
        return JsonResponse(
            {"errors": [{"message": authz.message_of("clinicians.follow_care_team_events")}]},
            status=403,
        )
    return JsonResponse(worklist_for(request.user).counts)
