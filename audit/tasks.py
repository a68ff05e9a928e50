"""Celery tasks: thin, idempotent, taking ids; the work is in services/exports/verification."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger("clinaiops.audit")


@shared_task(name="audit.seal_checkpoints")
def seal_checkpoints_task() -> int:
    """Sign every complete block not yet sealed. Queued when an append completes a block; also
    worth a beat entry (every few minutes) so a missed trigger is caught up."""
    from audit.services import seal_checkpoints

    return len(seal_checkpoints())


@shared_task(name="audit.verify_journal")
def verify_journal_task(full: bool = True) -> str:
    """Scheduled full verification; a broken chain is logged at CRITICAL for alerting."""
    from audit.verification import verify_journal

    result = verify_journal(full=full)
    if not result.ok:
        logger.critical("audit_chain_broken", extra={"detail": result.line()})
    return result.line()


@shared_task(name="audit.run_export")
def run_export_task(export_id: str) -> str:
    from audit.export_jobs import run_export

    return run_export(export_id)
