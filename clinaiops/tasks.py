"""Celery tasks of the project layer: thin, idempotent, by id; they call
``clinaiops.record_export``."""

from __future__ import annotations

from celery import shared_task

from clinaiops.record_export import purge_expired_record_exports, run_record_export


@shared_task(
    name="clinaiops.run_record_export",
    bind=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=3,
    acks_late=True,
)
def run_record_export_task(self, export_id: str) -> str:
    return str(run_record_export(export_id))


@shared_task(name="clinaiops.purge_expired_record_exports", acks_late=True)
def purge_expired_record_exports_task() -> int:
    """Beat: delete the files of the patients' copies whose link has expired."""
    return purge_expired_record_exports()
