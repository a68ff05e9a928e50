"""Celery application. Without REDIS_URL tasks run eagerly in-process (the embedded default)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinaiops.settings")

app = Celery("clinaiops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# A worker keeps its database connections across tasks (CELERY_DB_REUSE_MAX in settings).
import clinaiops.worker_connections  # noqa: E402, F401 - connects its signal receivers
