"""Celery tasks: thin, idempotent, by id; they call services."""

from __future__ import annotations

import logging
from typing import Literal, TypedDict

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from clinicians.evaluation import evaluate_patient

logger = logging.getLogger("clinicians.tasks")
DEBOUNCE_KEY = "evaluation-queued:{patient_id}"
HEARTBEAT_KEY = "worker-heartbeat:safety"


class _RetryOptions(TypedDict):
    bind: Literal[True]
    autoretry_for: tuple[type[BaseException], ...]
    retry_backoff: bool
    retry_backoff_max: int
    max_retries: int
    acks_late: bool


# Thin, idempotent tasks that take ids: retried with backoff on any error (docs/architecture.md).
RETRIED = _RetryOptions(
    bind=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
    acks_late=True,
)


@shared_task(**RETRIED)
def evaluate_patient_task(self, patient_id: int) -> dict:
    cache.delete(DEBOUNCE_KEY.format(patient_id=patient_id))
    outcome = evaluate_patient(patient_id)
    return {
        "patient": patient_id,
        "skipped": outcome.skipped,
        "alerts": [alert.pk for alert in outcome.alerts_opened],
        "recommendation": outcome.recommendation.pk if outcome.recommendation else None,
    }


def queue_evaluation(patient_id: int) -> None:
    """Queue one evaluation per patient per debounce window: uploads arriving in a burst share a
    run. Eager (embedded stack) runs it now; the watermark makes a repeated run a no-op."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # In-process: a failing evaluation must not fail the upload that already committed;
        # the hourly sweep evaluates the patient again.
        try:
            failed = evaluate_patient_task.apply(args=(patient_id,), throw=False).failed()
        except Exception:  # an eager retry re-raises (celery.exceptions.Retry) despite throw
            failed = True
        if failed:
            logger.error("evaluation_failed", extra={"patient_id": patient_id})
        return
    delay = settings.EVALUATION_DEBOUNCE_SECONDS
    try:
        if cache.add(DEBOUNCE_KEY.format(patient_id=patient_id), 1, timeout=delay + 60):
            evaluate_patient_task.apply_async(args=(patient_id,), countdown=delay)
    except Exception:
        # The broker is down: the upload already committed (and its safety check ran inline),
        # so it must not fail; the evaluation watermark and the hourly sweep catch up.
        logger.warning("evaluation_not_queued", extra={"patient_id": patient_id}, exc_info=True)


@shared_task(acks_late=True)
def sweep_due_safety_checks() -> int:
    """Every 30 s on the ``safety`` queue: the uploads whose inline safety check did not run
    (a database blip, a killed web process) are checked here, oldest first."""
    from django.utils import timezone

    from clinicians.safety_path import check_safety, due_patient_ids

    checked = 0
    for patient_id in due_patient_ids(timezone.now()):
        try:
            check_safety(patient_id)
            checked += 1
        except Exception:
            logger.exception("safety_check_failed", extra={"patient_id": patient_id})
    return checked


@shared_task(acks_late=True)
def fire_due_escalations() -> int:
    """Every 30 s on the ``safety`` queue: the rungs of the care teams' escalation ladders that
    are due for alerts nobody has acknowledged (``clinicians.alerts``)."""
    from clinicians.alerts import fire_due_escalations as fire

    return fire()


@shared_task(ignore_result=True)
def worker_heartbeat() -> None:
    """Every 15 s on the ``safety`` queue: proof, for ``/readyz``, that a worker consumes it."""
    import time

    cache.set(HEARTBEAT_KEY, time.time(), timeout=3600)


@shared_task(acks_late=True)
def sweep_evaluations() -> int:
    """Hourly: evaluate the patients for whom time alone can change something — silence
    (stale data) raises its alert although no upload triggers an evaluation, a delivered
    proposal expires — or whose data no evaluation has seen
    (``clinicians.evaluation.patients_to_sweep``)."""
    from django.utils import timezone

    from clinicians.evaluation import patients_to_sweep

    count = 0
    due = patients_to_sweep(timezone.now()).values_list("pk", flat=True)
    for patient_id in due.iterator():
        evaluate_patient_task.delay(patient_id)
        count += 1
    return count


@shared_task(acks_late=True)
def monitor_models(window: str = "daily") -> list[str]:
    """Daily and weekly (Celery beat): drift, overrides and outcomes of the production model."""
    from django.utils import timezone

    from clinicians.selectors import monitoring_inputs
    from models_ml.monitoring import monitor, production_model

    model_version = production_model()
    if model_version is None:
        return []
    report = monitor(
        model_version,
        window=window,
        gather=lambda since, until: monitoring_inputs(model_version.version, since, until),
        now=timezone.now(),
    )
    return report.alerts


@shared_task(**RETRIED)
def plan_visit_task(self, patient_id: int) -> dict:
    """Keep one patient's proposed visit in step with the cadence rule (idempotent)."""
    from clinicians.loop.visits import CADENCE, plan_next_visit

    plan = plan_next_visit(patient_id, actor=CADENCE)
    return {
        "patient": patient_id,
        "outcome": plan.outcome,
        "visit": plan.visit.pk if plan.visit else None,
    }


@shared_task(acks_late=True)
def plan_visits() -> int:
    """Daily (Celery beat): re-evaluate every patient's visit cadence, one task per patient."""
    from patients.models import Patient

    count = 0
    in_care = Patient.objects.filter(discharged_at__isnull=True)  # discharged: no more visits
    for patient_id in in_care.values_list("pk", flat=True).iterator():
        plan_visit_task.delay(patient_id)
        count += 1
    return count
