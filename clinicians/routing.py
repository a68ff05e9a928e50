from django.urls import path

from clinicians.caregiver_consumer import CaregiverConsumer
from clinicians.consumers import AlertsConsumer, PatientConsumer

# django-stubs' path() has no overload for an ASGI application (typeddjango/django-stubs#3354).
websocket_urlpatterns = [
    path("ws/alerts/", AlertsConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/patient/", PatientConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/care/", CaregiverConsumer.as_asgi()),  # type: ignore[arg-type]
]
