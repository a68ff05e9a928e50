"""Project wiring: settings, URL routing, ASGI and Celery entry points, the FHIR facade."""

from clinaiops.celery import app as celery_app

__all__ = ["celery_app"]
