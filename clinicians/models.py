"""Clinical oversight: the clinician's bounds and alert thresholds for a patient, the alerts the
safety rules raise, the dose recommendations with their tier and review, and the
patient–clinician loop (shared goals, secure messages, visits)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length
from django.db.models.lookups import GreaterThan, LessThanOrEqual
from django.utils import timezone

from patients import clinical_defaults as defaults
from patients.course import DEFAULT_MIN_INTERVAL_DAYS, MIN_INTERVAL_LIMITS_DAYS
from patients.models import Patient

# Hard limits on what a clinician may set as a target (mmHg). ACC/AHA 2017 (Whelton et al.,
# Hypertension 2018;71:e13, section 8.1.5) recommends < 130/80 for most adults; the span lets a
# clinician relax targets for frail or elderly patients without allowing nonsense.
TARGET_SYSTOLIC_LIMITS = (110, 160)
TARGET_DIASTOLIC_LIMITS = (60, 100)


class SafetyBounds(models.Model):
    """What the clinician allows for one patient and one drug. Without bounds nothing reaches
    the patient (tier ``blocked``)."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="safety_bounds")
    medication = models.CharField(max_length=40)
    min_dose_mg = models.DecimalField(max_digits=7, decimal_places=2)
    max_dose_mg = models.DecimalField(max_digits=7, decimal_places=2)
    max_auto_step_mg = models.DecimalField(max_digits=7, decimal_places=2)
    target_systolic_mmhg = models.PositiveSmallIntegerField()
    target_diastolic_mmhg = models.PositiveSmallIntegerField()
    may_start = models.BooleanField(
        default=False,
        help_text="whether the patient may start this drug from the app (off: a clinician does)",
    )
    min_interval_days = models.PositiveSmallIntegerField(
        default=DEFAULT_MIN_INTERVAL_DAYS,
        help_text="minimum days between dose changes; the patient's is the longest of their rows",
    )
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)
    # Bounds entered at enrolment by an administrator (what the clinician prescribed) wait for a
    # clinician of the team to confirm them; until then no proposal uses them (``is_confirmed``).
    # Bounds a clinician sets are confirmed by that clinician at once.
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "safety bounds"
        constraints = [
            models.UniqueConstraint(fields=["patient", "medication"], name="bounds_once_per_drug"),
            models.CheckConstraint(
                condition=Q(min_dose_mg__gte=0) & Q(max_dose_mg__gte=F("min_dose_mg")),
                name="bounds_min_le_max",
            ),
            models.CheckConstraint(condition=Q(max_auto_step_mg__gte=0), name="bounds_step_nonneg"),
            models.CheckConstraint(
                condition=Q(target_systolic_mmhg__gte=TARGET_SYSTOLIC_LIMITS[0])
                & Q(target_systolic_mmhg__lte=TARGET_SYSTOLIC_LIMITS[1])
                & Q(target_diastolic_mmhg__gte=TARGET_DIASTOLIC_LIMITS[0])
                & Q(target_diastolic_mmhg__lte=TARGET_DIASTOLIC_LIMITS[1]),
                name="bounds_targets_within_hard_limits",
            ),
            models.CheckConstraint(
                condition=Q(min_interval_days__gte=MIN_INTERVAL_LIMITS_DAYS[0])
                & Q(min_interval_days__lte=MIN_INTERVAL_LIMITS_DAYS[1]),
                name="bounds_interval_within_hard_limits",
            ),
            models.CheckConstraint(
                condition=Q(confirmed_at__isnull=True, confirmed_by__isnull=True)
                | Q(confirmed_at__isnull=False, confirmed_by__isnull=False),
                name="bounds_confirmed_by_someone",
            ),
        ]

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None


class AlertKind(models.TextChoices):
    CRISIS = "hypertensive_crisis", "Hypertensive crisis"
    HYPOTENSION = "hypotension", "Sustained hypotension"
    STALE_DATA = "stale_data", "No recent blood pressure"
    ABOVE_TARGET = "above_target", "Home average above target"
    LAB = "lab_out_of_range", "Laboratory result out of range"


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class Alert(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="alerts")
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    severity = models.CharField(max_length=16, default="high")
    message = models.CharField(max_length=200)
    evidence = models.JSONField(default=dict, help_text="readings and thresholds that raised it")
    opened_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    resolution_note = models.CharField(
        max_length=500, blank=True, help_text="what was done (a clinician's resolve asks for it)"
    )

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # De-duplication: one unresolved alert per condition and patient.
            models.UniqueConstraint(
                fields=["patient", "kind"],
                condition=~Q(status="resolved"),
                name="one_unresolved_alert_per_kind",
            ),
        ]
        indexes = [models.Index(fields=["patient", "status"], name="alert_patient_status")]


class AlertSnooze(models.Model):
    """A clinician's "not again for a while" on one condition of one patient: while it holds, a
    new alert of that kind is neither raised nor pushed, whatever readings arrive. Only the
    conditions that are a status for review may be snoozed (``clinicians.alerts.SNOOZABLE``) —
    never a crisis or hypotension."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="alert_snoozes")
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    starts_at = models.DateTimeField()
    until = models.DateTimeField()
    reason = models.CharField(max_length=300)
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    ended_at = models.DateTimeField(null=True, blank=True, help_text="ended early by a clinician")

    class Meta:
        ordering = ["-starts_at"]
        indexes = [models.Index(fields=["patient", "kind", "until"], name="snooze_lookup")]
        constraints = [
            models.CheckConstraint(
                condition=Q(until__gt=F("starts_at")), name="snooze_has_a_window"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["above_target", "stale_data"]),
                name="snooze_never_silences_danger",
            ),
        ]


class EscalationTarget(models.TextChoices):
    TEAM = "team", "Re-notify the care team"
    ON_CALL = "on_call", "Notify the on-call clinician"


class EscalationStep(models.Model):
    """One rung of a care team's escalation ladder: ``after_minutes`` from the alert's opening,
    if nobody has acknowledged it, notify ``target``."""

    care_team = models.ForeignKey(
        "accounts.CareTeam", on_delete=models.PROTECT, related_name="escalation_steps"
    )
    position = models.PositiveSmallIntegerField()
    after_minutes = models.PositiveIntegerField()
    target = models.CharField(max_length=16, choices=EscalationTarget.choices)

    class Meta:
        ordering = ["care_team", "position"]
        constraints = [
            models.UniqueConstraint(fields=["care_team", "position"], name="ladder_step_once"),
            models.CheckConstraint(
                condition=Q(after_minutes__gte=1) & Q(after_minutes__lte=24 * 60),
                name="ladder_step_within_a_day",
            ),
        ]


class AlertEscalation(models.Model):
    """A rung scheduled for one alert when it opened: fired by the beat sweep at ``due_at``
    (whether or not anyone is connected), cancelled when the alert is acknowledged or resolved."""

    alert = models.ForeignKey(Alert, on_delete=models.PROTECT, related_name="escalations")
    care_team = models.ForeignKey("accounts.CareTeam", on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField()
    target = models.CharField(max_length=16, choices=EscalationTarget.choices)
    due_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    notified = models.JSONField(default=list, help_text="the user ids it notified")

    class Meta:
        ordering = ["due_at", "id"]
        indexes = [
            models.Index(
                fields=["due_at"],
                condition=Q(fired_at__isnull=True, cancelled_at__isnull=True),
                name="escalation_due",
            )
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "care_team", "position"], name="escalation_once_per_rung"
            ),
        ]


class AlertThresholds(models.Model):
    """Per-patient adjustments of the alert rules, within hard limits (``clinicians.safety``)."""

    patient = models.OneToOneField(
        Patient, on_delete=models.PROTECT, related_name="alert_thresholds"
    )
    crisis_systolic_mmhg = models.PositiveSmallIntegerField(default=defaults.CRISIS_SYSTOLIC_MMHG)
    crisis_diastolic_mmhg = models.PositiveSmallIntegerField(default=defaults.CRISIS_DIASTOLIC_MMHG)
    hypotension_systolic_mmhg = models.PositiveSmallIntegerField(
        default=defaults.HYPOTENSION_SYSTOLIC_MMHG
    )
    stale_after_hours = models.PositiveSmallIntegerField(default=defaults.STALE_AFTER_HOURS)
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)


class Tier(models.TextChoices):
    PATIENT = "patient", "Patient may act"
    CLINICIAN = "clinician", "Clinician review"
    BLOCKED = "blocked", "Blocked"


class RecommendationStatus(models.TextChoices):
    PENDING_REVIEW = "pending_review", "Waiting for a clinician"
    DELIVERED = "delivered", "Delivered to the patient"
    ACKNOWLEDGED = "acknowledged", "Acknowledged by the patient"
    APPROVED = "approved", "Approved"
    MODIFIED = "modified", "Modified"
    REJECTED = "rejected", "Rejected"
    BLOCKED = "blocked", "Blocked"
    SUPERSEDED = "superseded", "Superseded by a newer recommendation"


class RecommendationKind(models.TextChoices):
    TITRATE = "titrate", "Dose change"
    ADHERENCE_NUDGE = "adherence_nudge", "Adherence nudge"


class Recommendation(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="recommendations")
    kind = models.CharField(max_length=20, choices=RecommendationKind.choices)
    medication = models.CharField(max_length=40)
    current_dose_mg = models.DecimalField(max_digits=7, decimal_places=2)
    proposed_dose_mg = models.DecimalField(max_digits=7, decimal_places=2, null=True)
    tier = models.CharField(max_length=16, choices=Tier.choices)
    status = models.CharField(max_length=20, choices=RecommendationStatus.choices)
    reason = models.CharField(max_length=300)
    gate_reasons = models.JSONField(default=list, help_text="why the gate chose this tier")
    expected_effect = models.JSONField(default=dict)
    explanation = models.JSONField(default=list)
    model_version = models.CharField(max_length=64)
    evidence = models.JSONField(default=dict, help_text="the observed state the proposal used")
    created_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decision_reason = models.CharField(max_length=500, blank=True)
    patient_note = models.CharField(
        max_length=500, blank=True, help_text="the clinician's note written for the patient"
    )
    overrode_block = models.BooleanField(
        default=False, help_text="decided over the gate's or the course rules' block"
    )
    reasons = models.JSONField(
        default=list,
        help_text="the gate's and the course rules' reasons in words: [{code, message}]",
    )
    final_dose_mg = models.DecimalField(max_digits=7, decimal_places=2, null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["patient", "status"], name="rec_patient_status"),
            models.Index(fields=["tier", "status"], name="rec_tier_status"),
        ]
        constraints = [
            # A patient-tier dose change always proposes a dose (belt and braces under the gate).
            models.CheckConstraint(
                condition=~(
                    Q(tier="patient") & Q(kind="titrate") & Q(proposed_dose_mg__isnull=True)
                ),
                name="rec_patient_tier_has_dose",
            ),
            models.CheckConstraint(
                condition=Q(proposed_dose_mg__isnull=True) | Q(proposed_dose_mg__gte=Decimal("0")),
                name="rec_dose_nonneg",
            ),
            # One open proposal per patient and drug: a newer one supersedes, never piles up.
            models.UniqueConstraint(
                fields=["patient", "medication"],
                condition=Q(status__in=["pending_review", "delivered", "blocked"]),
                name="rec_one_open_per_drug",
            ),
        ]

    @property
    def made_by_model(self) -> bool:
        """A registered model version proposed it (it has a model card), not the protocol."""
        from models_ml.protocol import PROTOCOL_VERSION

        return bool(self.model_version) and self.model_version != PROTOCOL_VERSION


class EvaluationState(models.Model):
    """Per-patient evaluation watermark: a run is skipped when nothing arrived since the last
    one (idempotent), and the row lock keeps at most one run in flight per patient."""

    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, related_name="+")
    last_reading_id = models.BigIntegerField(default=0)
    last_intake_id = models.BigIntegerField(default=0)
    last_lab_id = models.BigIntegerField(default=0)
    evaluated_at = models.DateTimeField(null=True)
    runs = models.PositiveIntegerField(default=0)
    hold_reasons = models.JSONField(
        default=list, help_text="why the last evaluation proposed no change: [{code, message}]"
    )
    next_change_from = models.DateTimeField(
        null=True, help_text="the earliest moment a new titration may be proposed"
    )


# --- the patient–clinician loop: goals, messages, visits (docs/patient-clinician-loop.md) -------


class GoalKind(models.TextChoices):
    BLOOD_PRESSURE = "blood_pressure", "Blood pressure"
    LIFESTYLE = "lifestyle", "Lifestyle"


class GoalMeasure(models.TextChoices):
    """What a lifestyle goal is about; the unit is part of the name. Only steps are measured by
    the wearables today; the others are tracked by the patient and the care team."""

    STEPS_PER_DAY = "steps_per_day", "Steps per day"
    SODIUM_MG_PER_DAY = "sodium_mg_per_day", "Sodium (mg per day)"
    WEIGHT_KG = "weight_kg", "Body weight (kg)"
    FREE_TEXT = "free_text", "Other (described)"


MEASURES_WITH_TARGET_VALUE = (
    GoalMeasure.STEPS_PER_DAY,
    GoalMeasure.SODIUM_MG_PER_DAY,
    GoalMeasure.WEIGHT_KG,
)


class GoalStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    ACTIVE = "active", "Active"
    ACHIEVED = "achieved", "Achieved"
    ABANDONED = "abandoned", "Abandoned"


class Goal(models.Model):
    """A goal the patient and their care team share. A clinician's goal is active at once; a
    patient's is proposed until a clinician of the team activates it. Achieved and abandoned are
    final: a new goal replaces an old one (history stays in the rows and the audit journal)."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="goals")
    kind = models.CharField(max_length=16, choices=GoalKind.choices)
    measure = models.CharField(max_length=24, choices=GoalMeasure.choices, blank=True)
    target_systolic_mmhg = models.PositiveSmallIntegerField(null=True, blank=True)
    target_diastolic_mmhg = models.PositiveSmallIntegerField(null=True, blank=True)
    target_value = models.DecimalField(
        max_digits=9,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="for lifestyle goals, in the unit the measure names",
    )
    description = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=16, choices=GoalStatus.choices)
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    proposed_at = models.DateTimeField()
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-proposed_at", "-id"]
        indexes = [models.Index(fields=["patient", "status"], name="goal_patient_status")]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=GoalKind.values), name="goal_kind_valid"),
            models.CheckConstraint(
                condition=Q(status__in=GoalStatus.values), name="goal_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(kind="blood_pressure")
                | (
                    Q(measure="")
                    & Q(target_value__isnull=True)
                    & Q(target_systolic_mmhg__gte=TARGET_SYSTOLIC_LIMITS[0])
                    & Q(target_systolic_mmhg__lte=TARGET_SYSTOLIC_LIMITS[1])
                    & Q(target_diastolic_mmhg__gte=TARGET_DIASTOLIC_LIMITS[0])
                    & Q(target_diastolic_mmhg__lte=TARGET_DIASTOLIC_LIMITS[1])
                ),
                name="goal_bp_targets_within_hard_limits",
            ),
            models.CheckConstraint(
                condition=~Q(kind="lifestyle")
                | (
                    Q(measure__in=GoalMeasure.values)
                    & Q(target_systolic_mmhg__isnull=True)
                    & Q(target_diastolic_mmhg__isnull=True)
                ),
                name="goal_lifestyle_has_measure",
            ),
            models.CheckConstraint(
                condition=~Q(measure__in=MEASURES_WITH_TARGET_VALUE) | Q(target_value__gt=0),
                name="goal_measured_has_target",
            ),
            models.CheckConstraint(
                condition=~Q(measure="free_text") | ~Q(description=""),
                name="goal_free_text_described",
            ),
            models.UniqueConstraint(
                fields=["patient"],
                condition=Q(kind="blood_pressure", status="active"),
                name="one_active_bp_goal",
            ),
        ]


# Longest message body, in characters: a message, not a letter (a longer one is refused, with
# the limit named, rather than truncated).
MESSAGE_MAX_CHARS = 2000


class SenderRole(models.TextChoices):
    PATIENT = "patient", "Patient"
    CLINICIAN = "clinician", "Care team"


class Message(models.Model):
    """One secure message in a patient's thread (one thread per patient, shared by the care
    team). The body is plain text — stored as written, escaped wherever it is rendered — and
    is PHI: it never goes to logs or to the audit journal."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="messages")
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    sender_role = models.CharField(max_length=16, choices=SenderRole.choices)
    body = models.TextField()
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)
    read_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # A patient's message with urgent words (``clinicians.loop.urgency``): the patient was shown
    # emergency guidance at once, and the thread is urgent for the care team until one of them
    # reads it. ``urgent_terms`` names the curated terms found (never the body).
    is_urgent = models.BooleanField(default=False)
    urgent_terms = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["patient", "created_at"], name="message_thread")]
        constraints = [
            models.CheckConstraint(
                condition=Q(sender_role__in=SenderRole.values), name="message_sender_role_valid"
            ),
            models.CheckConstraint(
                condition=GreaterThan(Length("body"), 0)
                & LessThanOrEqual(Length("body"), MESSAGE_MAX_CHARS),
                name="message_body_length",
            ),
            models.CheckConstraint(
                condition=Q(read_at__isnull=True, read_by__isnull=True)
                | Q(read_at__isnull=False, read_by__isnull=False),
                name="message_read_receipt_complete",
            ),
            models.CheckConstraint(
                condition=Q(is_urgent=False) | Q(sender_role="patient"),
                name="message_urgent_only_from_patient",
            ),
        ]


class VisitStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed by the visit cadence"
    CONFIRMED = "confirmed", "Confirmed"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class VisitSource(models.TextChoices):
    CADENCE = "cadence", "Visit cadence"
    CLINICIAN = "clinician", "Clinician"


class Visit(models.Model):
    """A visit. The cadence keeps at most one ``proposed`` visit per patient and moves it as the
    patient's stability changes; only a clinician confirms, cancels or completes a visit."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="visits")
    status = models.CharField(max_length=16, choices=VisitStatus.choices)
    scheduled_at = models.DateTimeField()
    source = models.CharField(max_length=16, choices=VisitSource.choices)
    cadence_reason = models.CharField(max_length=32, blank=True)
    interval_days = models.PositiveSmallIntegerField(null=True, blank=True)
    # The due day the cadence rule gave, before an overdue day was moved to tomorrow: with
    # ``cadence_reason``, what identifies a cadence proposal from one daily run to the next.
    nominal_due_on = models.DateField(null=True, blank=True)
    explanation = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField()
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=300, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["scheduled_at", "id"]
        indexes = [models.Index(fields=["patient", "status", "scheduled_at"], name="visit_series")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=VisitStatus.values), name="visit_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(source__in=VisitSource.values), name="visit_source_valid"
            ),
            models.UniqueConstraint(
                fields=["patient"],
                condition=Q(status="proposed"),
                name="one_proposed_visit_per_patient",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["confirmed", "completed"]) | Q(confirmed_at__isnull=False),
                name="visit_confirmed_has_when",
            ),
        ]

    @property
    def is_overdue(self) -> bool:
        """A proposal whose time has passed with nobody acting on it: it needs a new time."""
        return self.status == VisitStatus.PROPOSED and self.scheduled_at <= timezone.now()


# --- the patient's copy of their record (clinaiops/record_export.py, docs/visit-report.md) ------


class RecordExportStatus(models.TextChoices):
    PENDING = "pending", "Requested"
    RUNNING = "running", "Being prepared"
    READY = "ready", "Ready to download"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired (file deleted)"


RECORD_EXPORT_IN_FLIGHT = (RecordExportStatus.PENDING, RecordExportStatus.RUNNING)


class RecordExport(models.Model):
    """A patient's download of everything the system holds about them (HIPAA right of access,
    45 CFR 164.524): written by a background task into ``DATA_DIR/record_exports``, fetched by
    the patient alone through a signed link until ``expires_at``, then deleted. The row stays
    (what was handed over, when, its digest) as the journal does."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="record_exports")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=RecordExportStatus.choices, default=RecordExportStatus.PENDING
    )
    fhir_base = models.CharField(max_length=255, blank=True, help_text="Bundle entries' fullUrl")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    file_name = models.CharField(max_length=120, blank=True, help_text="under record_exports/")
    sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    counts = models.JSONField(default=dict, help_text="resources in the Bundle, by type")
    error = models.CharField(max_length=300, blank=True)
    downloads = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=RecordExportStatus.values),
                name="record_export_status_valid",
            ),
            # One export in flight per patient: a second request is a 409, here too.
            models.UniqueConstraint(
                fields=["patient"],
                condition=Q(status__in=["pending", "running"]),
                name="one_record_export_in_flight",
            ),
            models.CheckConstraint(
                condition=~Q(status="ready")
                | (Q(expires_at__isnull=False) & ~Q(file_name="") & ~Q(sha256="")),
                name="record_export_ready_has_file",
            ),
        ]
