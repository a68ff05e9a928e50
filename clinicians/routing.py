from django.urls import path

from clinicians.consumers import AlertsConsumer, PatientConsumer

websocket_urlpatterns = [
    path("ws/alerts/", AlertsConsumer.as_asgi()),
    path("ws/patient/", PatientConsumer.as_asgi()),
]
