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
