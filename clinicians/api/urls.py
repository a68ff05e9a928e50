from django.urls import path
from rest_framework.routers import SimpleRouter

from clinicians.api.loop_views import (
    AppointmentAliasViewSet,
    GoalViewSet,
    MessageViewSet,
    VisitViewSet,
)
from clinicians.api.patient_screen_views import (
    DecisionsView,
    GoalsAndVisitsView,
    MedicationsView,
    MessagesView,
    MyMessagesView,
    MyThreadReadView,
    TodayView,
)
from clinicians.api.report_views import MyVisitReportPdfView, MyVisitReportView
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
    # The patient's screens (docs/patient-app.md): the signed-in patient's, and any patient's
    # the controller lets the caller read.
    path("me/today/", TodayView.as_view(), name="me-today"),
    path("me/medications/", MedicationsView.as_view(), name="me-medications"),
    path("me/decisions/", DecisionsView.as_view(), name="me-decisions"),
    path("me/goals-and-visits/", GoalsAndVisitsView.as_view(), name="me-goals-and-visits"),
    path("me/messages/", MyMessagesView.as_view(), name="me-messages"),
    path("me/messages/read/", MyThreadReadView.as_view(), name="me-messages-read"),
    path("me/visits/<int:visit_id>/report/", MyVisitReportView.as_view(), name="me-visit-report"),
    path(
        "me/visits/<int:visit_id>/report.pdf",
        MyVisitReportPdfView.as_view(),
        name="me-visit-report-pdf",
    ),
    path("patients/<int:patient_id>/today/", TodayView.as_view(), name="patient-today"),
    path(
        "patients/<int:patient_id>/medications/",
        MedicationsView.as_view(),
        name="patient-medications",
    ),
    path("patients/<int:patient_id>/decisions/", DecisionsView.as_view(), name="patient-decisions"),
    path(
        "patients/<int:patient_id>/goals-and-visits/",
        GoalsAndVisitsView.as_view(),
        name="patient-goals-and-visits",
    ),
    path("patients/<int:patient_id>/messages/", MessagesView.as_view(), name="patient-messages"),
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
