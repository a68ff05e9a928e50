"""Posted Observations into ``patients.ingestion.record_readings`` and ``record_labs`` — the
one way readings and laboratory results are stored — with FHIR's semantics around it:

- every entry is judged (the FHIR checks, then the ingestion's own) and what is valid is stored,
  like ``POST /api/v1/readings/`` (one audit event per patient's batch, rejected entries
  reported with their reason); a create and a ``transaction`` Bundle are all or nothing
  because ``clinaiops.fhir.creates`` rolls the whole unit back, batch audit events included,
  when any entry fails;
- the identifier is the ingestion's ``client_id``, and what a re-used one means is the
  ingestion's rule, answered here per entry outcome: stored now 201, already stored (a re-post)
  200 with the stored observation, a conflict with a stored observation 409 (the API's
  per-item rejection under ``client_id``), a conflict with an earlier entry of the same
  Bundle 400 like any other invalid value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction

from clinaiops.fhir.http import Issue
from clinaiops.fhir.labs import resource_id as lab_resource_id
from clinaiops.fhir.observation_input import LAB, ROOT, ParsedObservation
from patients.ingestion import (
    CODED_READING_ADAPTER,
    ItemOutcome,
    ItemStatus,
    record_labs,
    record_readings,
)
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


def _resource_id(record: Reading | LabResult) -> str:
    return lab_resource_id(record) if isinstance(record, LabResult) else str(record.pk)


def _conflict(parsed: ParsedObservation, record: Reading | LabResult | None) -> EntryOutcome:
    stored = f" (Observation/{_resource_id(record)})" if record is not None else ""
    return EntryOutcome(
        409,
        issues=[
            Issue(
                f"identifier {parsed.client_id!r} was already used for a different observation"
                f"{stored}; an identifier names one observation",
                "duplicate",
                parsed.paths["client_id"],
            )
        ],
    )


def _rejection(parsed: ParsedObservation, outcome: ItemOutcome) -> EntryOutcome:
    field_name = outcome.field or ""
    path = parsed.paths.get(field_name) or parsed.paths.get("", ROOT)
    message = str(outcome.message)
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


def _entry_outcome(
    parsed: ParsedObservation, outcome: ItemOutcome, stored: dict[str, Reading | LabResult]
) -> EntryOutcome:
    """The ingestion's outcome of one entry, as FHIR answers it. ``stored`` is read by the
    entry's own identifier, the one its answer carries."""
    if outcome.status == ItemStatus.REJECTED:
        return _rejection(parsed, outcome)
    if outcome.status == ItemStatus.CONFLICT:
        if outcome.earlier_index is not None:  # the Bundle itself is inconsistent
            return _rejection(parsed, outcome)
        return _conflict(parsed, stored.get(parsed.client_id))
    record = stored.get(parsed.client_id)
    if record is None:
        return _not_found_after_storing(parsed)
    return EntryOutcome(201 if outcome.status == ItemStatus.ACCEPTED else 200, record=record)


def _store_patient(
    patient: Patient,
    kind: str,
    indexes: list[int],
    parsed: list,
    outcomes: list[EntryOutcome | None],
    user,
) -> None:
    # The ingestion serialises the batches of this patient (a row lock on PostgreSQL) and
    # decides each entry's fate under it; what is read back here is read under the same lock,
    # held until the caller's transaction ends.
    items = [parsed[i].item for i in indexes]
    if kind == LAB:
        result = record_labs(patient=patient, items=items, actor=user)
    else:  # with the codings sent beside the code, and step periods
        result = record_readings(
            patient=patient, items=items, actor=user, adapter=CODED_READING_ADAPTER
        )
    stored = _stored(patient, kind, [parsed[i].client_id for i in indexes])
    for outcome in result.outcomes:
        index = indexes[outcome.index]
        outcomes[index] = _entry_outcome(parsed[index], outcome, stored)


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
