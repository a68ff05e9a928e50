"""Exports requested through the API: a row tracks each one while a Celery task writes it.

The request is validated and journalled synchronously (so bad input is a 400 and an export
nobody can see still leaves a trace); the files are written by ``run_export`` in the task, into
``DATA_DIR/audit_exports/<id>``, and journalled again when complete (exports.write_export).
The task also builds the download's zip archive (``DATA_DIR/audit_exports/<id>.zip``): zipping
a large export takes seconds of CPU, and in the web process it held the one thread daphne runs
every request's view in, so every upload waited behind an auditor's download.
"""

from __future__ import annotations

import logging
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.exports import ExportError, ExportFilters, write_export
from audit.models import Action, AuditExport, ExportStatus
from audit.services import record_event
from core import authz, jobs

logger = logging.getLogger("clinaiops.audit")


def exports_root() -> Path:
    return Path(settings.DATA_DIR) / "audit_exports"


def export_directory(export: AuditExport) -> Path:
    return exports_root() / str(export.id)


def archive_path(export: AuditExport) -> Path:
    return exports_root() / f"{export.id}.zip"


# Deflate's fastest level: CSV and JSON still shrink several times, for a fraction of the CPU of
# the default level (6) on a journal's worth of rows.
ARCHIVE_COMPRESSLEVEL = 1


def build_archive(export: AuditExport) -> Path:
    """The export's files in one zip archive, built once (by the task; by the first download
    for an export finished before the task built archives). Written under a private name and
    renamed, so a reader never sees half an archive and two builders do not collide."""
    archive = archive_path(export)
    if archive.exists():
        return archive
    directory = export_directory(export)
    partial = archive.with_name(f"{archive.name}.{uuid.uuid4().hex}.partial")
    try:
        with zipfile.ZipFile(
            partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ARCHIVE_COMPRESSLEVEL
        ) as bundle:
            for path in sorted(directory.iterdir()):
                bundle.write(path, arcname=f"audit-export-{export.pk}/{path.name}")
        os.replace(partial, archive)
    finally:
        partial.unlink(missing_ok=True)
    return archive


def request_export(*, actor: Any, filters: ExportFilters) -> AuditExport:
    """Create the export row and queue the task after commit (eagerly run without Redis).
    Only auditors export (``audit.export_trail``)."""
    authz.authorize(actor, "audit.export_trail")
    with transaction.atomic():
        export = AuditExport.objects.create(
            requested_by=actor,
            since=filters.since,
            until=filters.until,
            patient_id=filters.patient_id,
            formats=list(filters.formats),
        )
        record_event(
            action=Action.EXPORT,
            actor=actor,
            object_type="audit_export",
            object_id=str(export.id),
            patient_id=filters.patient_id,
            outcome="success",
            detail={"status": "requested", "filters": filters.as_manifest()},
        )
        transaction.on_commit(lambda: jobs.enqueue("audit.run_export", str(export.id)))
    return export


def run_export(export_id: str) -> str:
    """Write the files for one export row; idempotent (a finished export is left alone)."""
    with transaction.atomic():
        export = AuditExport.objects.select_for_update().filter(pk=export_id).first()
        if export is None or export.status in (ExportStatus.DONE, ExportStatus.FAILED):
            return export.status if export else "missing"
        export.status = ExportStatus.RUNNING
        export.save(update_fields=["status"])
    filters = ExportFilters(export.since, export.until, export.patient_id, tuple(export.formats))
    destination = export_directory(export)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        manifest = write_export(destination, filters, actor=export.requested_by)
        export.directory = str(destination.relative_to(exports_root()))
        build_archive(export)
    except ExportError as exc:
        export.status, export.error = ExportStatus.FAILED, exc.message
        manifest = None
    except Exception:
        logger.exception("audit_export_failed", extra={"export_id": export_id})
        export.status, export.error = ExportStatus.FAILED, "internal error while writing the export"
        manifest = None
    else:
        export.status, export.manifest = ExportStatus.DONE, manifest
    export.finished_at = timezone.now()
    export.save(update_fields=["status", "error", "manifest", "directory", "finished_at"])
    return export.status
