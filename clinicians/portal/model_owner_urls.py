"""URLs of the model owner workspace (included by ``clinicians.portal.urls``)."""

from django.urls import path

from clinicians.portal import model_owner

urlpatterns: list = [
    path("", model_owner.versions, name="models-home"),
    path(
        "alerts/<int:alert_id>/acknowledge/",
        model_owner.acknowledge_alert,
        name="models-alert-acknowledge",
    ),
    path("alerts/<int:alert_id>/close/", model_owner.close_alert, name="models-alert-close"),
    path("<str:version>/", model_owner.version_page, name="models-version"),
    path("<str:version>/promote/", model_owner.promote, name="models-promote"),
    path("<str:version>/shadow/", model_owner.shadow, name="models-shadow"),
    path("<str:version>/rollback/", model_owner.rollback, name="models-rollback"),
]
