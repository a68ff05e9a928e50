from django.urls import path
from rest_framework.routers import SimpleRouter

from patients.api.ingestion import IntakeBatchView, ReadingBatchView
from patients.api.labs import LabViewSet
from patients.api.readings import ReadingEnteredInErrorView
from patients.api.views import PatientViewSet

router = SimpleRouter()
router.register("patients", PatientViewSet, basename="patient")
router.register("labs", LabViewSet, basename="lab")

urlpatterns = [
    path("readings/", ReadingBatchView.as_view(), name="readings"),
    path("medication-intakes/", IntakeBatchView.as_view(), name="medication-intakes"),
    path(
        "patients/<int:patient_id>/readings/<int:reading_id>/entered-in-error/",
        ReadingEnteredInErrorView.as_view(),
        name="reading-entered-in-error",
    ),
    *router.urls,
]
