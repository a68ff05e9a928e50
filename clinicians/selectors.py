"""Reads of clinical-oversight objects, narrowed to what the caller may see."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Role, User
from clinicians.models import Alert, Recommendation, RecommendationStatus, SafetyBounds
from patients.models import Patient
from patients.selectors import patients_visible_to

# What a patient is shown: changes they may act on, and decisions made for them. Proposals
# under review, blocked or rejected stay with the care team (fail closed).
PATIENT_VISIBLE_STATUSES = (
    RecommendationStatus.DELIVERED,
    RecommendationStatus.ACKNOWLEDGED,
    RecommendationStatus.APPROVED,
    RecommendationStatus.MODIFIED,
)


def recommendations_visible_to(user: User) -> QuerySet[Recommendation]:
    recommendations = Recommendation.objects.filter(patient__in=patients_visible_to(user))
    if getattr(user, "role", None) == Role.PATIENT:
        recommendations = recommendations.filter(status__in=PATIENT_VISIBLE_STATUSES)
    return recommendations


def alerts_visible_to(user: User) -> QuerySet[Alert]:
    if getattr(user, "role", None) != Role.CLINICIAN:
        return Alert.objects.none()
    return Alert.objects.filter(patient__in=patients_visible_to(user))


def bounds_for_patient(patient: Patient) -> QuerySet[SafetyBounds]:
    return SafetyBounds.objects.filter(patient=patient).order_by("medication")


DECIDED = (
    RecommendationStatus.ACKNOWLEDGED,
    RecommendationStatus.APPROVED,
    RecommendationStatus.MODIFIED,
    RecommendationStatus.REJECTED,
)
OVERRIDDEN = (RecommendationStatus.MODIFIED, RecommendationStatus.REJECTED)


def monitoring_inputs(version: str, since, until) -> dict:
    """What model monitoring needs about one producer version over a window: its proposals'
    features and predictions, how clinicians decided, and realised outcomes of applied changes
    (mean systolic 7–13 days after the change minus the 7-day mean before it)."""
    from datetime import timedelta

    from django.db.models import Avg

    from patients.models import Reading, ReadingType

    recs = Recommendation.objects.filter(model_version=version)
    window = recs.filter(created_at__gte=since, created_at__lt=until)
    decided = window.filter(status__in=DECIDED)
    outcomes = []
    applied = recs.filter(
        status__in=(RecommendationStatus.ACKNOWLEDGED, RecommendationStatus.APPROVED),
        decided_at__lt=until - timedelta(days=14),
        decided_at__gte=since - timedelta(days=14),
    )
    for rec in applied:
        after = Reading.objects.filter(
            patient_id=rec.patient_id,
            reading_type=ReadingType.BLOOD_PRESSURE,
            measured_at__gte=rec.decided_at + timedelta(days=7),
            measured_at__lt=rec.decided_at + timedelta(days=14),
        ).aggregate(mean=Avg("systolic_mmhg"))["mean"]
        before = (rec.evidence or {}).get("mean_systolic_7d")
        expected = (rec.expected_effect or {}).get("systolic_mmhg")
        if after is not None and before is not None and expected is not None:
            outcomes.append((float(expected), float(after) - float(before)))
    return {
        "rows": list(window.values_list("evidence", "expected_effect")),
        "decided": decided.count(),
        "overridden": decided.filter(status__in=OVERRIDDEN).count(),
        "outcomes": outcomes,
    }
