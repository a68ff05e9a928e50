"""The patient's copy of their record (HIPAA right of access, 45 CFR 164.524; issue #16).

A patient asks for it (``request_record_export``); a Celery task (``clinaiops.tasks``) writes one
ZIP under ``DATA_DIR/record_exports/``:

===============  ==================================================================================
file             what it holds
===============  ==================================================================================
bundle.json      FHIR R4 ``Bundle`` (type ``collection``) built with the facade's own mappings:
                 Patient, every Observation (readings — entered-in-error ones included, flagged —
                 and laboratory results), every MedicationRequest (the model's proposals in every
                 status, and the prescriptions), the Provenance of each proposal (from the journal)
record.json      what the FHIR facade does not serve as FHIR yet, labelled so: goals, visits,
                 messages, alerts, safety bounds, alert thresholds, medication intakes, devices,
                 care teams
record.pdf       the same, readable
README.txt       what each file is
===============  ==================================================================================

The link expires ``RECORD_EXPORT_TTL_HOURS`` (24) after the copy is ready: it is signed for the
requesting patient (``django.core.signing``), and only that signed-in patient may fetch it. An
expired copy's file is deleted by the beat task ``clinaiops.purge_expired_record_exports`` or at
the patient's next request, whichever comes first. The request, the completion, each download,
the deletion and every refusal are journalled. One copy is prepared at a time per patient: a
second request while one runs is a 409 (and a database constraint).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import CareTeam
from audit.models import Action, AuditEvent
from audit.services import record_event, record_refusal
from clinaiops.fhir import observations, patients
from clinaiops.fhir.medications import order_to_fhir, proposal_to_fhir
from clinaiops.fhir.provenance import provenance
from clinicians.alert_evidence import patient_zone
from clinicians.models import (
    RECORD_EXPORT_IN_FLIGHT,
    Alert,
    AlertThresholds,
    Goal,
    Message,
    Recommendation,
    RecommendationStatus,
    RecordExport,
    RecordExportStatus,
    SafetyBounds,
    Visit,
)
from clinicians.portal import report_pdf
from clinicians.portal.chart.figures import BpReading, daily_means
from core import authz, jobs
from core.authz import System
from core.errors import Conflict, DomainError, Forbidden, NotFound
from patients.models import Device, LabResult, MedicationIntake, Patient, Prescription, Reading

logger = logging.getLogger("clinaiops.record_export")
SYSTEM = System("record_export")
OBJECT_TYPE = "record_export"
# An export still pending or running after this long is taken for lost (a worker killed
# beyond its retries): it no longer blocks a new request, and is marked failed.
STALE_AFTER = timedelta(hours=1)
SIGNING_SALT = "clinaiops.record_export.download"


class Gone(DomainError):
    """The copy existed and has expired: its file is deleted."""

    http_status = 410
    code = "expired"


def ttl() -> timedelta:
    return timedelta(hours=float(getattr(settings, "RECORD_EXPORT_TTL_HOURS", 24)))


def exports_root() -> Path:
    return Path(settings.DATA_DIR) / "record_exports"


def file_of(export: RecordExport) -> Path:
    return exports_root() / export.file_name


# --- requesting --------------------------------------------------------------------------------


def _refused(actor: Any, error: DomainError, attempted: str, export_id: Any, patient_id) -> None:
    record_refusal(
        actor=actor,
        attempted=attempted,
        message=error.message,
        field=error.field,
        object_type=OBJECT_TYPE,
        object_id=str(export_id or ""),
        patient_id=patient_id,
    )


def request_record_export(*, actor: Any, fhir_base: str = "") -> RecordExport:
    """Queue a copy of the signed-in patient's record (after commit; eager without Redis)."""
    actor_id = getattr(actor, "pk", None)
    patient = Patient.objects.filter(user_id=actor_id).first() if actor_id is not None else None
    now = timezone.now()
    try:
        authz.authorize(actor, "clinaiops.request_record_export", patient)
        assert patient is not None  # the rule refuses a caller without a record
        purge_expired_record_exports(now=now, patient_id=patient.pk)
        with transaction.atomic():
            _fail_stale(patient, now)
            running = (
                RecordExport.objects.select_for_update()
                .filter(patient=patient, status__in=RECORD_EXPORT_IN_FLIGHT)
                .first()
            )
            if running is not None:
                raise _conflict(running)
            try:
                with transaction.atomic():
                    export = RecordExport.objects.create(
                        patient=patient, requested_by=actor, requested_at=now, fhir_base=fhir_base
                    )
            except IntegrityError:  # a request racing this one took the slot
                raise _conflict(None) from None
            record_event(
                action=Action.EXPORT,
                actor=actor,
                object_type=OBJECT_TYPE,
                object_id=str(export.pk),
                patient_id=patient.pk,
                detail={"status": "requested"},
            )
            transaction.on_commit(
                lambda: jobs.enqueue("clinaiops.run_record_export", str(export.pk))
            )
    except DomainError as error:
        _refused(actor, error, "request_record_export", "", patient.pk if patient else None)
        raise
    return export


def _conflict(running: RecordExport | None) -> Conflict:
    """The one answer to a second request while a copy is being made (``running``: that copy,
    when known; None when a racing request took the slot)."""
    since = f" (requested {running.requested_at:%Y-%m-%d %H:%M} UTC)" if running else ""
    return Conflict(
        f"A copy of your record is already being prepared{since}; you can request another "
        "when it is ready.",
        code="export_in_progress",
    )


def _fail_stale(patient: Patient, now: datetime) -> None:
    for export in RecordExport.objects.select_for_update().filter(
        patient=patient, status__in=RECORD_EXPORT_IN_FLIGHT, requested_at__lt=now - STALE_AFTER
    ):
        _finish_failed(export, "not finished within an hour; request a new copy", now)


def _finish_failed(export: RecordExport, error: str, now: datetime) -> None:
    export.status, export.error, export.finished_at = RecordExportStatus.FAILED, error, now
    export.save(update_fields=["status", "error", "finished_at"])
    record_event(
        action=Action.EXPORT,
        actor=SYSTEM,
        object_type=OBJECT_TYPE,
        object_id=str(export.pk),
        patient_id=export.patient_id,
        outcome="failure",
        detail={"status": "failed", "error": error},
    )


# --- reading and downloading -----------------------------------------------------------------


def record_export_for(*, actor: Any, export_id: Any) -> RecordExport:
    """One export of the caller's (404 for anybody else's), expired now if its time is up."""
    export = RecordExport.objects.filter(pk=export_id).first()
    try:
        if export is None:
            raise NotFound(authz.NOT_FOUND_MESSAGE)
        authz.authorize(actor, "clinaiops.view_record_export", export)
    except DomainError as error:
        _refused(
            actor, error, "view_record_export", export_id, export.patient_id if export else None
        )
        raise
    expires_at = export.expires_at
    if export.status == RecordExportStatus.READY and expires_at and expires_at <= timezone.now():
        purge_expired_record_exports(patient_id=export.patient_id)
        export.refresh_from_db()
    return export


def visible_exports(actor: Any):
    return authz.visible(actor, "clinaiops.record_export")


def download_token(export: RecordExport) -> str:
    return signing.dumps(
        {"export": str(export.pk), "user": export.requested_by_id}, salt=SIGNING_SALT
    )


def open_download(*, actor: Any, export_id: Any, token: str) -> tuple[Path, str]:
    """The file of a ready copy for its patient, with a valid signed link; the download is
    journalled. Refusals: another user (404), a bad or foreign link (403), expired (410)."""
    export = record_export_for(actor=actor, export_id=export_id)
    try:
        if export.status == RecordExportStatus.EXPIRED:
            raise Gone("This copy has expired and was deleted; request a new one.")
        if export.status != RecordExportStatus.READY:
            raise Conflict(f"This copy is not ready ({export.get_status_display().lower()}).")
        try:
            claims = signing.loads(token or "", salt=SIGNING_SALT, max_age=ttl())
        except signing.SignatureExpired:
            raise Gone("This download link has expired; ask for the link again.") from None
        except signing.BadSignature:
            raise Forbidden(
                "This download link is not valid; ask for the link again.", field="token"
            ) from None
        if claims != {"export": str(export.pk), "user": actor.pk}:
            raise Forbidden("This download link is for another copy.", field="token")
    except DomainError as error:
        _refused(actor, error, "download_record_export", export.pk, export.patient_id)
        raise
    with transaction.atomic():
        RecordExport.objects.filter(pk=export.pk).update(downloads=export.downloads + 1)
        record_event(
            action=Action.EXPORT_DOWNLOAD,
            actor=actor,
            object_type=OBJECT_TYPE,
            object_id=str(export.pk),
            patient_id=export.patient_id,
            detail={"sha256": export.sha256, "size_bytes": export.size_bytes},
        )
    return file_of(export), f"clinaiops-record-{export.requested_at:%Y%m%d}.zip"


def purge_expired_record_exports(
    *, now: datetime | None = None, patient_id: int | None = None
) -> int:
    """Delete the files of ready copies whose link has expired; each deletion journalled."""
    now = now or timezone.now()
    due = RecordExport.objects.filter(status=RecordExportStatus.READY, expires_at__lte=now)
    if patient_id is not None:
        due = due.filter(patient_id=patient_id)
    purged = 0
    for export_id in due.values_list("pk", flat=True):
        with transaction.atomic():
            export = RecordExport.objects.select_for_update().get(pk=export_id)
            if export.status != RecordExportStatus.READY:
                continue
            file_of(export).unlink(missing_ok=True)
            export.status = RecordExportStatus.EXPIRED
            export.save(update_fields=["status"])
            record_event(
                action=Action.UPDATE,
                actor=SYSTEM,
                object_type=OBJECT_TYPE,
                object_id=str(export.pk),
                patient_id=export.patient_id,
                changes={"status": {"old": "ready", "new": "expired"}},
                detail={"file": "deleted"},
            )
            purged += 1
    return purged


# --- writing (the task) ------------------------------------------------------------------------


def run_record_export(export_id: str) -> str:
    """Write the copy of one export row; idempotent (a finished one is left alone)."""
    now = timezone.now()
    with transaction.atomic():
        export = RecordExport.objects.select_for_update().filter(pk=export_id).first()
        if export is None or export.status not in RECORD_EXPORT_IN_FLIGHT:
            return export.status if export else "missing"
        export.status, export.started_at = RecordExportStatus.RUNNING, now
        export.save(update_fields=["status", "started_at"])
    try:
        content, counts = build_archive(export.patient, fhir_base=export.fhir_base, now=now)
        exports_root().mkdir(parents=True, exist_ok=True)
        name = f"{export.pk}.zip"
        partial = exports_root() / f".{name}.partial"
        partial.write_bytes(content)
        os.replace(partial, exports_root() / name)
    except Exception:
        logger.exception("record_export_failed", extra={"export_id": export_id})
        with transaction.atomic():
            _finish_failed(export, "internal error while preparing the copy", timezone.now())
        return RecordExportStatus.FAILED
    finished = timezone.now()
    with transaction.atomic():
        export.status, export.finished_at = RecordExportStatus.READY, finished
        export.expires_at = finished + ttl()
        export.file_name, export.size_bytes = name, len(content)
        export.sha256, export.counts = hashlib.sha256(content).hexdigest(), counts
        export.save()
        record_event(
            action=Action.EXPORT,
            actor=SYSTEM,
            object_type=OBJECT_TYPE,
            object_id=str(export.pk),
            patient_id=export.patient_id,
            detail={"status": "ready", "sha256": export.sha256, "counts": counts},
        )
    return export.status


# --- the content ---------------------------------------------------------------------------------


def fhir_resources(patient: Patient) -> list[dict[str, Any]]:
    """Every FHIR resource the facade maps about ``patient``, with the facade's own mappings.
    Read by the system for the patient's copy: the patient's right of access covers the
    proposals their app does not list (under review, blocked, rejected) too."""
    resources = [patients.to_fhir(patient)]
    readings = Reading.objects.filter(patient=patient).select_related("device").order_by("pk")
    resources += [observations.to_fhir(r) for r in readings]
    labs = LabResult.objects.filter(patient=patient).order_by("pk")
    resources += [observations.to_fhir(lab) for lab in labs]
    recommendations = list(Recommendation.objects.filter(patient=patient).order_by("pk"))
    resources += [proposal_to_fhir(rec) for rec in recommendations]
    prescriptions = Prescription.objects.filter(patient=patient).order_by("pk")
    resources += [order_to_fhir(p) for p in prescriptions]
    events = AuditEvent.objects.filter(
        object_type="recommendation",
        action__in=("create", "decision"),
        outcome="success",
        object_id__in=[str(rec.pk) for rec in recommendations],
    ).order_by("sequence")
    resources += [provenance(event) for event in events]
    return resources


def bundle(patient: Patient, *, fhir_base: str = "", now: datetime) -> dict[str, Any]:
    base = fhir_base.rstrip("/")
    entries = []
    for resource in fhir_resources(patient):
        entry: dict[str, Any] = {"resource": resource}
        if base:
            entry["fullUrl"] = f"{base}/{resource['resourceType']}/{resource['id']}"
        entries.append(entry)
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "entry": entries,
    }


def _rows(queryset, *fields: str) -> list[dict[str, Any]]:
    return list(queryset.values(*fields))


def other_records(patient: Patient) -> dict[str, Any]:
    """What the FHIR facade does not serve as FHIR: plain JSON, each section named."""
    return {
        "about": (
            "Parts of your record that this system's FHIR interface does not serve as FHIR "
            "resources yet, as plain JSON. Times are UTC."
        ),
        "patient_id": patient.pk,
        "care_teams": _rows(CareTeam.objects.filter(assignments__patient=patient), "id", "name"),
        "devices": _rows(Device.objects.filter(patient=patient), "device_id", "registered_at"),
        "medication_intakes": _rows(
            MedicationIntake.objects.filter(patient=patient).order_by("taken_at"),
            "client_id", "medication", "dose_mg", "taken_at", "received_at",
        ),
        "safety_bounds": _rows(
            SafetyBounds.objects.filter(patient=patient),
            "medication", "min_dose_mg", "max_dose_mg", "max_auto_step_mg",
            "target_systolic_mmhg", "target_diastolic_mmhg", "may_start", "min_interval_days",
            "updated_at", "confirmed_at",
        ),
        "alert_thresholds": _rows(
            AlertThresholds.objects.filter(patient=patient),
            "crisis_systolic_mmhg", "crisis_diastolic_mmhg", "hypotension_systolic_mmhg",
            "stale_after_hours", "updated_at",
        ),
        "alerts": _rows(
            Alert.objects.filter(patient=patient).order_by("opened_at"),
            "id", "kind", "status", "severity", "message", "evidence", "opened_at",
            "acknowledged_at", "resolved_at", "resolution_note",
        ),
        "goals": _rows(
            Goal.objects.filter(patient=patient).order_by("proposed_at"),
            "id", "kind", "measure", "target_systolic_mmhg", "target_diastolic_mmhg",
            "target_value", "description", "status", "proposed_at", "status_changed_at",
        ),
        "visits": _rows(
            Visit.objects.filter(patient=patient).order_by("scheduled_at"),
            "id", "status", "scheduled_at", "source", "explanation", "confirmed_at",
            "cancelled_at", "cancel_reason", "completed_at",
        ),
        "messages": _rows(
            Message.objects.filter(patient=patient).order_by("created_at"),
            "id", "sender_role", "body", "created_at", "read_at",
        ),
    }  # fmt: skip


README = """Your copy of your ClinAIOps record
===================================

Prepared {prepared} (UTC) for patient {patient_id}.

bundle.json   Your record as a FHIR R4 Bundle (type "collection"): you, every reading and lab
              result (readings marked "entered in error" are included and flagged so), every
              dose proposal and what was decided, every prescription, and who proposed and who
              decided each change (Provenance). Any FHIR-capable app or clinic system reads it.
record.json   The rest of your record as plain JSON: goals, visits, messages, alerts, the
              limits your care team set, the doses you logged, your devices and care teams.
record.pdf    The same record to read and print.

SHA-256 digests of the files:
{digests}
"""


def build_archive(
    patient: Patient, *, fhir_base: str = "", now: datetime
) -> tuple[bytes, dict[str, int]]:
    """The ZIP's bytes and the Bundle's resource counts by type."""
    fhir = bundle(patient, fhir_base=fhir_base, now=now)
    rest = other_records(patient)
    files = {
        "bundle.json": json.dumps(fhir, indent=1, cls=DjangoJSONEncoder).encode(),
        "record.json": json.dumps(rest, indent=1, cls=DjangoJSONEncoder).encode(),
        "record.pdf": record_pdf(patient, fhir, rest, now=now),
    }
    digests = "\n".join(
        f"  {name:<12} {hashlib.sha256(content).hexdigest()}" for name, content in files.items()
    )
    files["README.txt"] = README.format(
        prepared=f"{now:%Y-%m-%d %H:%M}", patient_id=patient.pk, digests=digests
    ).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    counts = Counter(entry["resource"]["resourceType"] for entry in fhir["entry"])
    return buffer.getvalue(), dict(sorted(counts.items()))


def record_pdf(
    patient: Patient, fhir: dict[str, Any], rest: dict[str, Any], *, now: datetime
) -> bytes:
    """The readable copy: everything of the Bundle and of record.json, readings by day."""
    R = report_pdf  # noqa: N806 - the block constructors, short
    blocks: list[R.Block] = [
        R.Text(
            f"{patient.family_name}, {patient.given_name} · born {patient.born}"
            + (f" · MRN {patient.mrn}" if patient.mrn else "")
        ),
        R.Text(
            f"Prepared {now:%Y-%m-%d %H:%M} UTC. Every reading is in bundle.json; here they "
            "are summed up by day."
        ),
        R.Heading("Care teams"),
        R.Text(", ".join(t["name"] for t in rest["care_teams"]) or "None."),
        R.Heading("Medicines prescribed"),
        R.Rows(
            [("Medicine", "Dose", "From", "Until", "Source")]
            + [
                (p.medication, f"{p.dose_mg.normalize():f} mg", p.started_at, p.ended_at, p.source)
                for p in Prescription.objects.filter(patient=patient).order_by("started_at", "pk")
            ]
        ),
        R.Heading("Dose proposals and decisions"),
    ]
    recommendations = Recommendation.objects.filter(patient=patient).order_by("created_at", "pk")
    blocks.append(
        R.Rows(
            [("Proposed", "Medicine", "Dose", "Outcome", "Note for you")]
            + [
                (
                    rec.created_at,
                    rec.medication,
                    f"{rec.current_dose_mg.normalize():f} → "
                    + (
                        f"{rec.proposed_dose_mg.normalize():f} mg"
                        if rec.proposed_dose_mg is not None
                        else "—"
                    ),
                    RecommendationStatus(rec.status).label,
                    rec.patient_note,
                )
                for rec in recommendations
            ]
        )
        if recommendations
        else R.Text("None.")
    )
    labs = LabResult.objects.filter(patient=patient).order_by("observed_at")
    blocks += [
        R.Heading("Laboratory results"),
        R.Rows(
            [("When", "LOINC", "Value")]
            + [(lab.observed_at, lab.code, f"{lab.value.normalize():f} {lab.unit}") for lab in labs]
        )
        if labs
        else R.Text("None."),
    ]
    in_use = Reading.objects.filter(patient=patient, reading_type="blood_pressure").in_use()
    means = daily_means(
        (
            BpReading(*row)
            for row in in_use.values_list(
                "measured_at", "utc_offset_minutes", "systolic_mmhg", "diastolic_mmhg"
            )
        ),
        patient_zone(patient),
    )
    blocks += [
        R.Heading("Home blood pressure by day"),
        R.Rows(
            [("Day", "Mean", "Readings")]
            + [(row.day.isoformat(), row.mean.text, row.mean.count) for row in means]
        )
        if means
        else R.Text("No blood pressure readings."),
    ]
    wrong = Reading.objects.filter(patient=patient, entered_in_error_at__isnull=False)
    if wrong:
        blocks += [
            R.Heading("Readings marked entered in error"),
            R.Rows(
                [("Measured", "Marked", "Reason")]
                + [(r.measured_at, r.entered_in_error_at, r.entered_in_error_reason) for r in wrong]
            ),
        ]
    blocks += [
        R.Heading("Alerts"),
        R.Rows([("Opened", "Kind", "Status", "Note")] + [
            (a["opened_at"], a["kind"], a["status"], a["resolution_note"]) for a in rest["alerts"]
        ]) if rest["alerts"] else R.Text("None."),
        R.Heading("Goals"),
        R.Rows([("Set", "Kind", "Status", "Description")] + [
            (g["proposed_at"], g["kind"], g["status"], g["description"]) for g in rest["goals"]
        ]) if rest["goals"] else R.Text("None."),
        R.Heading("Visits"),
        R.Rows([("When", "Status")] + [(v["scheduled_at"], v["status"]) for v in rest["visits"]])
        if rest["visits"] else R.Text("None."),
        R.Heading("Messages"),
        R.Rows([("Sent", "From", "Message")] + [
            (m["created_at"], "you" if m["sender_role"] == "patient" else "care team", m["body"])
            for m in rest["messages"]
        ]) if rest["messages"] else R.Text("None."),
        R.Heading("Doses you logged"),
        R.Text(f"{len(rest['medication_intakes'])} intakes (each one is in record.json)."),
        R.Heading("In bundle.json"),
        R.Text(", ".join(f"{n} {kind}" for kind, n in sorted(
            Counter(e["resource"]["resourceType"] for e in fhir["entry"]).items()))),
    ]  # fmt: skip
    return R.render("Your health record", blocks, footer="ClinAIOps · your copy of your record")
