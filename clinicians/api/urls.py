from django.urls import path
from rest_framework.routers import SimpleRouter

from clinicians.api.views import (
    AlertThresholdsView,
    AlertViewSet,
    RecommendationViewSet,
    SafetyBoundsView,
)

router = SimpleRouter()
router.register("recommendations", RecommendationViewSet, basename="recommendation")
router.register("alerts", AlertViewSet, basename="alert")

urlpatterns = [
    path(
        "patients/<int:patient_id>/safety-bounds/", SafetyBoundsView.as_view(), name="safety-bounds"
    ),
    path(
        "patients/<int:patient_id>/alert-thresholds/",
        AlertThresholdsView.as_view(),
        name="alert-thresholds",
    ),
    *router.urls,
]
