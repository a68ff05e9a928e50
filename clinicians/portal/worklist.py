"""The clinician's worklist, grouped by what the clinician must do next:

1. **Urgent alerts** — a crisis, hypotension, a laboratory result: open ones first (they page
   people: the escalation ladder is climbing), then the acknowledged ones still to be resolved,
   with who acknowledged them and when.
2. **Reviews waiting** — proposals for a clinician's decision, oldest first, with the time waiting.
3. **Messages unread** — patients whose messages nobody on the team has read yet.
4. **Out of target** — one row per patient (above target is a status for review, not an alarm):
   the 7-day home mean against the patient's target, or no recent blood pressure.
5. **Needs set-up** — drugs without bounds in force, bounds waiting for confirmation, proposals
   the gate blocked (with the reasons in words).

Every row names the patient with birth date and MRN. Filters: care team, group, a search by name
or MRN, and the order of the patient list. A fixed number of queries whatever the panel's size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django import forms
from django.db.models import Avg, Count, Max, Min, Q
from django.utils import timezone

from accounts.models import CareTeam, User
from clinicians.alert_evidence import URGENT_KINDS, FiredReading, fired_by, rule_of
from clinicians.alerts import snoozes_for
from clinicians.models import (
    Alert,
    AlertEscalation,
    AlertKind,
    AlertSnooze,
    AlertStatus,
    Message,
    Recommendation,
    RecommendationStatus,
    SafetyBounds,
    SenderRole,
)
from clinicians.portal.review_card import reasons_in_words
from clinicians.selectors import alerts_visible_to, recommendations_visible_to
from clinicians.treatment import DEFAULT_TARGET
from patients.models import EmergencyAccess, Patient, Prescription, ReadingType
from patients.rules import care_teams_of

GROUPS = (
    ("urgent", "Urgent alerts"),
    ("reviews", "Reviews waiting"),
    ("messages", "Messages unread"),
    ("out_of_target", "Out of target"),
    ("setup", "Needs set-up"),
)
SORTS = (
    ("name", "Name"),
    ("bp", "Highest 7-day BP first"),
    ("last_reading", "Longest without a reading first"),
)
SEARCH_MAX = 100


class WorklistFilters(forms.Form):
    team = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Care team")
    group = forms.ChoiceField(required=False, choices=[("", "All groups"), *GROUPS], label="Show")
    q = forms.CharField(
        required=False, max_length=SEARCH_MAX, strip=True, label="Search name or MRN"
    )
    sort = forms.ChoiceField(required=False, choices=SORTS, label="Sort patients by")

    def __init__(self, *args, teams: list[CareTeam], **kwargs):
        super().__init__(*args, **kwargs)
        team = self.fields["team"]
        assert isinstance(team, forms.TypedChoiceField)
        team.choices = [("", "All my teams"), *((t.pk, t.name) for t in teams)]


@dataclass
class UrgentRow:
    alert: Alert
    rule: str
    readings: list[FiredReading]
    escalated: list[AlertEscalation]  # rungs already fired

    @property
    def patient(self) -> Patient:
        return self.alert.patient


@dataclass
class ReviewRow:
    recommendation: Recommendation
    waiting: timedelta

    @property
    def patient(self) -> Patient:
        return self.recommendation.patient


@dataclass
class MessageRow:
    patient: Patient
    unread: int
    oldest_unread_at: datetime
    urgent: int = 0  # unread messages with urgent words (``clinicians.loop.urgency``)


@dataclass
class PatientRow:
    patient: Patient
    mean_systolic: float | None
    mean_diastolic: float | None
    readings_7d: int
    last_bp_at: datetime | None
    target: tuple[int, int]
    statuses: list[str] = field(default_factory=list)  # in words: why it is out of target
    snoozes: list[AlertSnooze] = field(default_factory=list)
    open_alerts: int = 0
    pending_reviews: int = 0

    @property
    def out_of_target(self) -> bool:
        return bool(self.statuses)


@dataclass
class SetupRow:
    patient: Patient
    reasons: list[str]
    bounds_to_confirm: list[SafetyBounds] = field(default_factory=list)


@dataclass
class Worklist:
    filters: WorklistFilters
    urgent: list[UrgentRow] = field(default_factory=list)
    acknowledged: list[UrgentRow] = field(default_factory=list)
    reviews: list[ReviewRow] = field(default_factory=list)
    messages: list[MessageRow] = field(default_factory=list)
    out_of_target: list[PatientRow] = field(default_factory=list)
    setup: list[SetupRow] = field(default_factory=list)
    patients: list[PatientRow] = field(default_factory=list)
    emergency: list[EmergencyAccess] = field(default_factory=list)
    group: str = ""

    @property
    def counts(self) -> dict[str, int]:
        return {
            "urgent": len(self.urgent),
            "acknowledged": len(self.acknowledged),
            "reviews": len(self.reviews),
            "messages": len(self.messages),
            "out_of_target": len(self.out_of_target),
            "setup": len(self.setup),
        }

    @property
    def show(self) -> dict[str, bool]:
        """Which groups the page shows (all, or the one chosen in the filter)."""
        return {key: not self.group or self.group == key for key, _ in GROUPS}


def teams_of(user: User) -> list[CareTeam]:
    return list(CareTeam.objects.filter(memberships__user=user, is_active=True).order_by("name"))


def _matches(patient: Patient, query: str) -> bool:
    if not query:
        return True
    needle = query.casefold()
    return (
        needle in patient.display_name.casefold()
        or needle in f"{patient.given_name} {patient.family_name}".casefold()
        or (patient.mrn is not None and needle in patient.mrn.casefold())
    )


def worklist_for(user: User, data=None, *, now: datetime | None = None) -> Worklist:
    """The worklist for ``user`` (a clinician), narrowed by the filters in ``data`` (GET)."""
    now = now or timezone.now()
    teams = teams_of(user)
    filters = WorklistFilters(data or None, teams=teams)
    choice = filters.cleaned_data if filters.is_valid() else {}
    team, group = choice.get("team"), choice.get("group") or ""
    query, sort = choice.get("q") or "", choice.get("sort") or "name"

    # The care team's patients (emergency access is listed apart: it reads, it does not triage).
    mine = Patient.objects.filter(
        pk__in=Patient.objects.filter(care_teams_of(user)).values("pk"),
        discharged_at__isnull=True,
    )
    if team is not None:
        mine = mine.filter(care_teams__pk=team)
    since = now - timedelta(days=7)
    bp = Q(readings__reading_type=ReadingType.BLOOD_PRESSURE, readings__entered_in_error_at=None)
    patients = [
        p
        for p in mine.annotate(
            mean_systolic=Avg(
                "readings__systolic_mmhg", filter=bp & Q(readings__measured_at__gte=since)
            ),
            mean_diastolic=Avg(
                "readings__diastolic_mmhg", filter=bp & Q(readings__measured_at__gte=since)
            ),
            readings_7d=Count("readings", filter=bp & Q(readings__measured_at__gte=since)),
            last_bp_at=Max("readings__measured_at", filter=bp),
        ).order_by("family_name", "given_name", "pk")
        if _matches(p, query)
    ]
    by_id = {p.pk: p for p in patients}
    ids = list(by_id)

    # Targets: the bounds in force (lowest target across drugs, as ``treatment.target_from``).
    bounds = list(SafetyBounds.objects.filter(patient_id__in=ids).order_by("medication"))
    targets: dict[int, tuple[int, int]] = {}
    for b in bounds:
        if b.is_confirmed:
            old = targets.get(b.patient_id, (999, 999))
            targets[b.patient_id] = (
                min(old[0], b.target_systolic_mmhg),
                min(old[1], b.target_diastolic_mmhg),
            )

    alerts = list(
        alerts_visible_to(user)
        .filter(patient_id__in=ids)
        .exclude(status=AlertStatus.RESOLVED)
        .select_related("patient", "acknowledged_by__clinician_profile")
        .order_by("opened_at", "pk")
    )
    fired: dict[int, list[AlertEscalation]] = {}
    for rung in AlertEscalation.objects.filter(
        alert__in=[a.pk for a in alerts if a.kind in URGENT_KINDS], fired_at__isnull=False
    ).order_by("fired_at"):
        fired.setdefault(rung.alert_id, []).append(rung)
    worklist = Worklist(filters=filters, group=group)
    open_by_patient: dict[int, int] = {}
    kinds_by_patient: dict[int, dict[str, Alert]] = {}
    for alert in alerts:
        alert.patient = by_id[alert.patient_id]
        kinds_by_patient.setdefault(alert.patient_id, {})[alert.kind] = alert
        if alert.kind not in URGENT_KINDS:
            continue
        open_by_patient[alert.patient_id] = open_by_patient.get(alert.patient_id, 0) + 1
        urgent = UrgentRow(alert, rule_of(alert), fired_by(alert), fired.get(alert.pk, []))
        shown = worklist.urgent if alert.status == AlertStatus.OPEN else worklist.acknowledged
        shown.append(urgent)
    # The most dangerous first, then the longest waiting.
    order: dict[str, int] = {AlertKind.CRISIS: 0, AlertKind.HYPOTENSION: 1, AlertKind.LAB: 2}
    worklist.urgent.sort(key=lambda r: (order.get(r.alert.kind, 9), r.alert.opened_at))

    recs = list(
        recommendations_visible_to(user)
        .filter(
            patient_id__in=ids,
            status__in=[RecommendationStatus.PENDING_REVIEW, RecommendationStatus.BLOCKED],
        )
        .order_by("created_at", "pk")
    )
    reviews_by_patient: dict[int, int] = {}
    blocked: dict[int, list[Recommendation]] = {}
    for rec in recs:
        rec.patient = by_id[rec.patient_id]
        if rec.status == RecommendationStatus.PENDING_REVIEW:
            worklist.reviews.append(ReviewRow(rec, now - rec.created_at))
            reviews_by_patient[rec.patient_id] = reviews_by_patient.get(rec.patient_id, 0) + 1
        else:
            blocked.setdefault(rec.patient_id, []).append(rec)

    unread = (
        Message.objects.filter(
            patient_id__in=ids, sender_role=SenderRole.PATIENT, read_at__isnull=True
        )
        .values("patient_id")
        .annotate(
            count=Count("pk"),
            oldest=Min("created_at"),
            urgent=Count("pk", filter=Q(is_urgent=True)),
        )
        .order_by("-urgent", "oldest")  # a thread with urgent words first
    )
    worklist.messages = [
        MessageRow(by_id[row["patient_id"]], row["count"], row["oldest"], row["urgent"])
        for row in unread
    ]

    snoozes = snoozes_for(ids, now)
    rows = []
    for p in patients:
        target = targets.get(p.pk, DEFAULT_TARGET)
        row = PatientRow(
            patient=p,
            mean_systolic=p.mean_systolic,
            mean_diastolic=p.mean_diastolic,
            readings_7d=p.readings_7d,
            last_bp_at=p.last_bp_at,
            target=target,
            snoozes=snoozes.get(p.pk, []),
            open_alerts=open_by_patient.get(p.pk, 0),
            pending_reviews=reviews_by_patient.get(p.pk, 0),
        )
        kinds = kinds_by_patient.get(p.pk, {})
        if AlertKind.ABOVE_TARGET in kinds:
            row.statuses.append(
                f"7-day home mean {row.mean_systolic:.0f}/{row.mean_diastolic or 0:.0f} mmHg, "
                f"target below {target[0]}/{target[1]}"
                if row.mean_systolic is not None
                else kinds[AlertKind.ABOVE_TARGET].message
            )
        if AlertKind.STALE_DATA in kinds:
            row.statuses.append(
                "No blood pressure since "
                + (
                    timezone.localtime(row.last_bp_at).strftime("%Y-%m-%d %H:%M")
                    if row.last_bp_at
                    else "enrolment"
                )
            )
        rows.append(row)
    worklist.patients = _sorted(rows, sort, now)
    worklist.out_of_target = [row for row in worklist.patients if row.out_of_target]

    regimen: dict[int, set[str]] = {}
    for patient_id, medication in Prescription.objects.filter(
        patient_id__in=ids, ended_at__isnull=True
    ).values_list("patient_id", "medication"):
        regimen.setdefault(patient_id, set()).add(medication)
    bounds_of: dict[int, list[SafetyBounds]] = {}
    for b in bounds:
        bounds_of.setdefault(b.patient_id, []).append(b)
    for p in patients:
        reasons, pending = [], [b for b in bounds_of.get(p.pk, []) if not b.is_confirmed]
        confirmed = {b.medication for b in bounds_of.get(p.pk, []) if b.is_confirmed}
        if not bounds_of.get(p.pk):
            reasons.append("No safety bounds: no change reaches this patient without you.")
        for drug in sorted(regimen.get(p.pk, set()) - confirmed - {b.medication for b in pending}):
            reasons.append(f"No bounds for {drug}, which the patient takes.")
        for b in pending:
            reasons.append(
                f"{b.medication} bounds entered at enrolment wait for your confirmation."
            )
        for rec in blocked.get(p.pk, []):
            why = "; ".join(reasons_in_words(rec.reasons, rec.gate_reasons)) or rec.reason
            reasons.append(f"Proposal {rec.medication} blocked: {why}")
        if reasons:
            worklist.setup.append(SetupRow(p, reasons, pending))

    worklist.emergency = list(
        EmergencyAccess.objects.filter(user=user, expires_at__gt=now)
        .select_related("patient")
        .order_by("expires_at")
    )
    return worklist


def _sorted(rows: list[PatientRow], sort: str, now: datetime) -> list[PatientRow]:
    if sort == "bp":
        return sorted(rows, key=lambda r: -(r.mean_systolic or 0))
    if sort == "last_reading":
        oldest = now - timedelta(days=3650)
        return sorted(rows, key=lambda r: r.last_bp_at or oldest)
    return rows
