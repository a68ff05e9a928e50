"""Clinical oversight: the clinician's bounds and alert thresholds for a patient, the alerts the
safety rules raise, and the dose recommendations with their tier and review."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

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
    target_systolic = models.PositiveSmallIntegerField()
    target_diastolic = models.PositiveSmallIntegerField()
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

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
                condition=Q(target_systolic__gte=TARGET_SYSTOLIC_LIMITS[0])
                & Q(target_systolic__lte=TARGET_SYSTOLIC_LIMITS[1])
                & Q(target_diastolic__gte=TARGET_DIASTOLIC_LIMITS[0])
                & Q(target_diastolic__lte=TARGET_DIASTOLIC_LIMITS[1]),
                name="bounds_targets_within_hard_limits",
            ),
        ]


class AlertKind(models.TextChoices):
    CRISIS = "hypertensive_crisis", "Hypertensive crisis"
    HYPOTENSION = "hypotension", "Sustained hypotension"
    STALE_DATA = "stale_data", "No recent blood pressure"
    ABOVE_TARGET = "above_target", "Home average above target"


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


class AlertThresholds(models.Model):
    """Per-patient adjustments of the alert rules, within hard limits (``clinicians.safety``)."""

    patient = models.OneToOneField(
        Patient, on_delete=models.PROTECT, related_name="alert_thresholds"
    )
    crisis_systolic_mmhg = models.PositiveSmallIntegerField(default=180)
    crisis_diastolic_mmhg = models.PositiveSmallIntegerField(default=120)
    hypotension_systolic_mmhg = models.PositiveSmallIntegerField(default=90)
    stale_after_hours = models.PositiveSmallIntegerField(default=48)
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
        ]


class EvaluationState(models.Model):
    """Per-patient evaluation watermark: a run is skipped when nothing arrived since the last
    one (idempotent), and the row lock keeps at most one run in flight per patient."""

    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, related_name="+")
    last_reading_id = models.BigIntegerField(default=0)
    last_intake_id = models.BigIntegerField(default=0)
    evaluated_at = models.DateTimeField(null=True)
    runs = models.PositiveIntegerField(default=0)
