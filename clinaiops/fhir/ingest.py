"""Posted Observations into ``patients.ingestion.record_readings`` and ``record_labs`` — the
one way readings and laboratory results are stored — with FHIR's semantics around it:

- every entry is judged (the FHIR checks, then the ingestion's own) and what is valid is stored,
  like ``POST /api/v1/readings/`` (one audit event per patient's batch, rejected entries
  reported with their reason); a create and a ``transaction`` Bundle are all or nothing
  because ``clinaiops.fhir.creates`` rolls the whole unit back, batch audit events included,
  when any entry fails;
- the identifier is the ingestion's ``client_id``: re-posting answers 200 with the stored
  observation, re-using an identifier for a *different* one is a 409 (it would otherwise be
  counted as a duplicate and the new values lost without a word).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction

from clinaiops.fhir.http import Issue
from clinaiops.fhir.labs import resource_id as lab_resource_id
from clinaiops.fhir.observation_input import LAB, ROOT, ParsedObservation
from patients.ingestion import record_labs, record_readings
from patients.labs import parse_value
from patients.models import LabResult, Patient, Reading

logger = logging.getLogger("clinaiops.fhir")


@dataclass
class EntryOutcome:
    status: int
    record: Reading | LabResult | None = None  # what is stored under the entry's identifier
    issues: list[Issue] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status >= 400


def _same(record: Reading | LabResult, item: dict) -> bool:
    if isinstance(record, LabResult):
        return _same_lab(record, item)
    return _same_reading(record, item)


def _same_lab(lab: LabResult, item: dict) -> bool:
    value = parse_value(item["value"])
    try:
        observed_at = datetime.fromisoformat(item["observed_at"])
    except ValueError:
        return True  # not a date at all: the ingestion rejects it with its own message
    return (
        lab.code == item["code"]
        and lab.original_unit == item["unit"]
        and (value is None or lab.original_value == value)
        and lab.observed_at == observed_at
    )


def _same_reading(reading: Reading, item: dict) -> bool:
    try:
        measured_at = datetime.fromisoformat(item["measured_at"])
    except ValueError:
        return True  # not a date at all: the ingestion rejects it with its own message
    return (
        reading.reading_type == item["type"]
        and reading.systolic_mmhg == item.get("systolic")
        and reading.diastolic_mmhg == item.get("diastolic")
        and reading.value == item.get("value")
        and reading.measured_at == measured_at
        and reading.device.device_id == item["device_id"]
    )


def _resource_id(record: Reading | LabResult) -> str:
    return lab_resource_id(record) if isinstance(record, LabResult) else str(record.pk)


def _conflict(parsed: ParsedObservation, record: Reading | LabResult) -> EntryOutcome:
    return EntryOutcome(
        409,
        issues=[
            Issue(
                f"identifier {parsed.client_id!r} was already used for a different observation "
                f"(Observation/{_resource_id(record)}); an identifier names one observation",
                "duplicate",
                parsed.paths["client_id"],
            )
        ],
    )


def _rejection(parsed: ParsedObservation, rejection: dict) -> EntryOutcome:
    field_name = rejection["field"] or ""
    path = parsed.paths.get(field_name) or parsed.paths.get("", ROOT)
    message = str(rejection["message"])
    if field_name == "device_id":  # a device of another patient: a business rule, not syntax
        return EntryOutcome(422, issues=[Issue(message, "business-rule", path)])
    return EntryOutcome(400, issues=[Issue(message, "value", path)])


def _not_found_after_storing(parsed: ParsedObservation) -> EntryOutcome:
    """The ingestion accepted the entry but nothing stored has its identifier: a fault of this
    server (the keys compared here must be the ones the ingestion stores), answered for the
    entry alone — never a crash that loses the other entries of a batch."""
    logger.error(
        "fhir_observation_missing_after_ingestion",
        extra={"client_id": parsed.client_id, "kind": parsed.kind},
    )
    return EntryOutcome(
        500,
        issues=[
            Issue(
                f"the observation with identifier {parsed.client_id!r} was accepted but cannot be "
                "found; it may not be stored — post it again",
                "exception",
                parsed.paths["client_id"],
            )
        ],
    )


def _stored(patient: Patient, kind: str, client_ids: list[str]) -> dict[str, Reading | LabResult]:
    rows = (
        LabResult.objects.filter(patient=patient, client_id__in=client_ids)
        if kind == LAB
        else Reading.objects.filter(patient=patient, client_id__in=client_ids).select_related(
            "device"
        )
    )
    return {row.client_id: row for row in rows}


def _store_patient(
    patient: Patient,
    kind: str,
    indexes: list[int],
    parsed: list,
    outcomes: list[EntryOutcome | None],
    user,
) -> None:
    # Serialise with other batches of this patient before looking for existing identifiers
    # (the ingestion takes the same lock again). NO KEY: rows referencing the patient may still
    # be inserted meanwhile (a foreign-key check takes KEY SHARE on the patient row).
    Patient.objects.select_for_update(no_key=True).filter(pk=patient.pk).values_list("pk").first()
    client_ids = [parsed[i].client_id for i in indexes]
    existing = _stored(patient, kind, client_ids)
    to_send = []
    for index in indexes:
        record = existing.get(parsed[index].client_id)
        if record is not None and not _same(record, parsed[index].item):
            outcomes[index] = _conflict(parsed[index], record)
        else:
            to_send.append(index)
    if not to_send:
        return
    record_batch = record_labs if kind == LAB else record_readings
    result = record_batch(patient=patient, items=[parsed[i].item for i in to_send], actor=user)
    for rejection in result.rejected:
        index = to_send[rejection["index"]]
        outcomes[index] = _rejection(parsed[index], rejection)
    stored = _stored(patient, kind, client_ids)
    created: set[str] = set()
    for index in to_send:
        if outcomes[index] is not None:
            continue
        client_id = parsed[index].client_id
        record = stored.get(client_id)
        if record is None:
            outcomes[index] = _not_found_after_storing(parsed[index])
            continue
        is_new = client_id not in existing and client_id not in created
        created.add(client_id)
        outcomes[index] = EntryOutcome(201 if is_new else 200, record=record)


def store_observations(user, parsed: list[ParsedObservation]) -> list[EntryOutcome]:
    """One outcome per entry, in order; what is valid is stored, in one transaction (the caller
    rolls back an all-or-nothing unit)."""
    outcomes: list[EntryOutcome | None] = [None] * len(parsed)
    by_patient: dict[tuple[int, str], list[int]] = {}
    for index, item in enumerate(parsed):
        by_patient.setdefault((item.patient.pk, item.kind), []).append(index)
    with transaction.atomic():
        for (_, kind), indexes in by_patient.items():
            _store_patient(parsed[indexes[0]].patient, kind, indexes, parsed, outcomes, user)
    assert all(outcome is not None for outcome in outcomes)
    return outcomes  # type: ignore[return-value]
