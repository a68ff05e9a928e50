"""Mounted by clinaiops/urls.py at /api/v1/models/."""

from django.urls import path

from models_ml.api.alert_views import (
    AcknowledgeModelAlertView,
    CloseModelAlertView,
    DriftReportListView,
    ModelAlertListView,
)
from models_ml.api.views import ModelCardView, ModelVersionListView

urlpatterns = [
    path("", ModelVersionListView.as_view(), name="model-version-list"),
    path("<str:version>/card/", ModelCardView.as_view(), name="model-card"),
    # Monitoring (admins): models_ml/api/alert_views.py
    path("alerts/", ModelAlertListView.as_view(), name="model-alert-list"),
    path(
        "alerts/<int:alert_id>/acknowledge/",
        AcknowledgeModelAlertView.as_view(),
        name="model-alert-acknowledge",
    ),
    path("alerts/<int:alert_id>/close/", CloseModelAlertView.as_view(), name="model-alert-close"),
    path("<str:version>/drift-reports/", DriftReportListView.as_view(), name="model-drift-reports"),
]
