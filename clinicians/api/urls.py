from django.urls import path
from rest_framework.routers import SimpleRouter

from clinicians.api.loop_views import (
    AppointmentAliasViewSet,
    GoalViewSet,
    MessageViewSet,
    VisitViewSet,
)
from clinicians.api.me_views import MyDecisionsView, MyMedicationsView
from clinicians.api.views import (
    AlertThresholdsView,
    AlertViewSet,
    ConfirmSafetyBoundsView,
    RecommendationViewSet,
    SafetyBoundsView,
)

router = SimpleRouter()
router.register("recommendations", RecommendationViewSet, basename="recommendation")
router.register("alerts", AlertViewSet, basename="alert")
router.register("goals", GoalViewSet, basename="goal")
router.register("messages", MessageViewSet, basename="message")
router.register("visits", VisitViewSet, basename="visit")
# The path visits had before: API.md keeps it working (the same view, out of the schema).
router.register("appointments", AppointmentAliasViewSet, basename="appointment")

urlpatterns = [
    path("me/medications/", MyMedicationsView.as_view(), name="me-medications"),
    path("me/decisions/", MyDecisionsView.as_view(), name="me-decisions"),
    path(
        "patients/<int:patient_id>/safety-bounds/", SafetyBoundsView.as_view(), name="safety-bounds"
    ),
    path(
        "patients/<int:patient_id>/safety-bounds/<str:medication>/confirm/",
        ConfirmSafetyBoundsView.as_view(),
        name="confirm-safety-bounds",
    ),
    path(
        "patients/<int:patient_id>/alert-thresholds/",
        AlertThresholdsView.as_view(),
        name="alert-thresholds",
    ),
    *router.urls,
]
