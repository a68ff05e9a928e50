"""Reads of clinical-oversight objects, narrowed to what the caller may see."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from clinicians.models import Alert, Recommendation, RecommendationStatus, SafetyBounds
from core import authz
from patients.models import Patient


def recommendations_visible_to(user: User) -> QuerySet[Recommendation]:
    """``clinicians.rules``: the care team's proposals; of their own, a patient sees what they
    may act on and what was decided for them."""
    return authz.visible(user, "clinicians.recommendation")


def alerts_visible_to(user: User) -> QuerySet[Alert]:
    return authz.visible(user, "clinicians.alert")


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
        assert rec.decided_at is not None  # the decided_at filter above excludes NULL
        after = (
            Reading.objects.in_use()
            .filter(
                patient_id=rec.patient_id,
                reading_type=ReadingType.BLOOD_PRESSURE,
                measured_at__gte=rec.decided_at + timedelta(days=7),
                measured_at__lt=rec.decided_at + timedelta(days=14),
            )
            .aggregate(mean=Avg("systolic_mmhg"))["mean"]
        )
        before = (rec.evidence or {}).get("mean_systolic_7d")
        expected = (rec.expected_effect or {}).get("systolic_mmhg")
        if after is not None and before is not None and expected is not None:
            outcomes.append((float(expected), float(after) - float(before)))
    return {
        "rows": list(window.values_list("evidence", "expected_effect", "patient_id")),
        "decided": decided.count(),
        "overridden": decided.filter(status__in=OVERRIDDEN).count(),
        "outcomes": outcomes,
    }
