"""Wearable readings and medication intakes in: validate each item, store the valid ones in bulk,
report every rejected one by index, field and reason, store each ``client_id`` once.

Validation uses pydantic v2 (DESIGN.md: DRF serializers cost ~50 µs per item; a batch is up to
5,000 items). The schema published in OpenAPI is the same model's JSON schema.

Ranges:
- systolic 50–300, diastolic 20–200 mmHg, systolic above diastolic: outside them a cuffless
  reading is an artefact, not a patient state (ranges of the issue; ESH 2023 validation protocols
  for cuffless devices consider 60–260/30–150 the measurable span, ours is wider on purpose so a
  real extreme is never dropped);
- heart rate 20–300 /min; steps 0–100,000 per reading;
- ``measured_at`` must carry a timezone, may run ahead of the server by at most
  ``CLOCK_SKEW_ALLOWANCE`` (phone clocks drift) and may be at most ``MAX_READING_AGE`` old.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from django.db import connection, transaction
from django.utils import timezone
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from audit.services import record_event
from patients.formulary import FORMULARY
from patients.models import Device, MedicationIntake, Patient, Reading, ReadingType
from patients.signals import intakes_recorded, readings_recorded

MAX_BATCH_ITEMS = 5000
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)
MAX_READING_AGE = timedelta(days=365)

ClientId = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
DeviceId = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: ClientId
    measured_at: AwareDatetime
    device_id: DeviceId


class BloodPressureItem(_Item):
    type: Literal["blood_pressure"]
    systolic: StrictInt = Field(ge=50, le=300)
    diastolic: StrictInt = Field(ge=20, le=200)
    unit: Literal["mm[Hg]"]

    @model_validator(mode="after")
    def systolic_above_diastolic(self) -> BloodPressureItem:
        if self.systolic <= self.diastolic:
            raise ValueError("systolic must be above diastolic")
        return self


class HeartRateItem(_Item):
    type: Literal["heart_rate"]
    value: StrictInt = Field(ge=20, le=300)
    unit: Literal["/min"]


class StepsItem(_Item):
    type: Literal["steps"]
    value: StrictInt = Field(ge=0, le=100_000)
    unit: Literal["{steps}"]


ReadingItem = Annotated[BloodPressureItem | HeartRateItem | StepsItem, Field(discriminator="type")]
READING_ADAPTER: TypeAdapter[Any] = TypeAdapter(ReadingItem)


class IntakeItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: ClientId
    medication: str
    dose_mg: Decimal = Field(gt=0, le=1000, max_digits=7, decimal_places=2, allow_inf_nan=False)
    taken_at: AwareDatetime

    @field_validator("medication")
    @classmethod
    def known_medication(cls, value: str) -> str:
        if value not in FORMULARY:
            raise ValueError(f"unknown medication; expected one of {', '.join(sorted(FORMULARY))}")
        return value

    @field_validator("dose_mg", mode="before")
    @classmethod
    def number_not_text(cls, value: object) -> object:
        # "5 mg" or "5" as a string is refused: units are fixed by the field name.
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise ValueError("must be a number in mg")
        return value


INTAKE_ADAPTER: TypeAdapter[IntakeItem] = TypeAdapter(IntakeItem)


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, object]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def _rejection(index: int, field_name: str | None, message: str) -> dict[str, object]:
    return {"index": index, "field": field_name, "message": message}


def _first_error(index: int, error: ValidationError) -> dict[str, object]:
    detail = error.errors(include_url=False)[0]
    location = [str(part) for part in detail["loc"]]
    # Discriminated unions prefix the location with the chosen tag; drop it.
    if location and location[0] in ReadingType.values:
        location = location[1:]
    message = detail["msg"]
    if detail["type"] == "extra_forbidden":
        message = "unknown field"
    elif detail["type"] == "union_tag_invalid":
        location, message = ["type"], f"must be one of {', '.join(ReadingType.values)}"
    elif detail["type"] == "union_tag_not_found":
        location, message = ["type"], "is required"
    elif detail["type"] == "missing":
        message = "is required"
    return _rejection(index, ".".join(location) or None, message)


def _non_finite(item: object) -> str | None:
    """NaN and ±Infinity (accepted by the lenient JSON parser) are named per item."""
    if isinstance(item, dict):
        for key, value in item.items():
            if isinstance(value, float) and not math.isfinite(value):
                return str(key)
    return None


def _check_time(index: int, moment: datetime, now: datetime, field_name: str) -> dict | None:
    if moment > now + CLOCK_SKEW_ALLOWANCE:
        return _rejection(index, field_name, "is in the future beyond the allowed clock skew")
    if moment < now - MAX_READING_AGE:
        return _rejection(index, field_name, "is more than a year old")
    return None


def _validate(
    items: list[object], adapter: TypeAdapter, time_field: str, now: datetime, result: BatchResult
) -> list[tuple[int, Any]]:
    """The valid items with their indexes; every other item goes to ``result.rejected``."""
    valid = []
    for index, raw in enumerate(items):
        bad_number = _non_finite(raw)
        if bad_number:
            result.rejected.append(_rejection(index, bad_number, "must be a finite number"))
            continue
        try:
            item = adapter.validate_python(raw)
        except ValidationError as error:
            result.rejected.append(_first_error(index, error))
            continue
        problem = _check_time(index, getattr(item, time_field), now, time_field)
        if problem:
            result.rejected.append(problem)
            continue
        valid.append((index, item))
    return valid


def _finish_batch(
    patient: Patient,
    items: list[object],
    result: BatchResult,
    *,
    actor,
    kind: str,
    digest: str | None,
    signal,
    sender,
) -> None:
    """The batch's one audit event (last in its transaction), and the announcement of new data
    once it commits."""
    result.rejected.sort(key=lambda rejection: rejection["index"])
    detail: dict[str, object] = {
        "items": len(items),
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": len(result.rejected),
    }
    if digest is not None:
        detail["digest"] = digest
    record_event(
        action="create",
        actor=actor,
        object_type=f"{kind}_batch",
        patient_id=patient.pk,
        outcome="success" if not result.rejected else "partial",
        detail=detail,
        component="" if actor else f"patients.record_{kind}s",
    )
    if result.accepted:
        patient_id = patient.pk
        transaction.on_commit(lambda: signal.send(sender=sender, patient_id=patient_id))


def _digest(items: list[dict[str, Any]]) -> str:
    canonical = json.dumps(items, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _lock_patient(patient: Patient) -> None:
    """Serialise batches of one patient so concurrent retries of a batch store it once and
    count duplicates exactly (PostgreSQL row lock; SQLite transactions are already serial).

    ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: batches still exclude each other, but rows that
    merely reference the patient (an evaluation's recommendation or alert, whose foreign-key
    check takes ``FOR KEY SHARE``) are not blocked — with ``FOR UPDATE`` such an insert, holding
    the audit chain head, deadlocked against a batch waiting for that head."""
    Patient.objects.select_for_update(no_key=True).filter(pk=patient.pk).values_list("pk").first()


def record_readings(*, patient: Patient, items: list[object], actor=None) -> BatchResult:
    """Validate and store a batch of readings for ``patient``; see the module docstring."""
    now = timezone.now()
    result = BatchResult()
    valid = _validate(items, READING_ADAPTER, "measured_at", now, result)

    received_at = connection.ops.adapt_datetimefield_value(now)
    with transaction.atomic():
        _lock_patient(patient)
        devices = _devices_for(patient, {item.device_id for _, item in valid}, now)
        unique = _unique_in_batch(valid, result, key=lambda item: item.client_id)
        existing = set(
            Reading.objects.filter(
                patient=patient, client_id__in=[item.client_id for _, item in unique]
            ).values_list("client_id", flat=True)
        )
        rows: list[tuple] = []
        stored: list[dict[str, Any]] = []
        for index, item in unique:
            if item.client_id in existing:
                result.duplicates += 1
                continue
            device = devices.get(item.device_id)
            if device is None:
                result.rejected.append(
                    _rejection(index, "device_id", "is registered to another patient")
                )
                continue
            rows.append(_reading_row(patient.pk, device.pk, item, received_at))
            stored.append(item.model_dump(mode="json"))
        _insert_readings(rows)
        result.accepted = len(rows)
        _finish_batch(
            patient,
            items,
            result,
            actor=actor,
            kind="reading",
            digest=_digest(stored),
            signal=readings_recorded,
            sender=Reading,
        )
    return result


def _unique_in_batch(valid, result: BatchResult, *, key) -> list:
    """An identical repeat inside one batch is a duplicate; a repeat with other values is an
    error (the client reused an id), reported at the later index."""
    first_seen: dict[str, Any] = {}
    unique = []
    for index, item in valid:
        client_id = key(item)
        earlier = first_seen.get(client_id)
        if earlier is None:
            first_seen[client_id] = item
            unique.append((index, item))
        elif earlier == item:
            result.duplicates += 1
        else:
            result.rejected.append(
                _rejection(
                    index, "client_id", "repeats an earlier item of this batch with other values"
                )
            )
    return unique


def _devices_for(patient: Patient, device_ids: set[str], now: datetime) -> dict[str, Device]:
    """This patient's devices among ``device_ids``; unknown ids are registered to the patient on
    first use; ids registered to someone else are left out (their items are rejected)."""
    known = {device.device_id: device for device in Device.objects.filter(device_id__in=device_ids)}
    new = [
        Device(patient=patient, device_id=device_id, registered_at=now)
        for device_id in sorted(device_ids - known.keys())
    ]
    if new:
        Device.objects.bulk_create(new)
        known.update(
            {
                device.device_id: device
                for device in Device.objects.filter(
                    device_id__in=[device.device_id for device in new]
                )
            }
        )
        record_event(
            action="create",
            object_type="device",
            patient_id=patient.pk,
            detail={"registered": [device.device_id for device in new]},
            component="patients.record_readings",
        )
    return {
        device_id: device for device_id, device in known.items() if device.patient_id == patient.pk
    }


READING_COLUMNS = (
    "patient_id",
    "device_id",
    "client_id",
    "reading_type",
    "systolic_mmhg",
    "diastolic_mmhg",
    "value",
    "measured_at",
    "utc_offset_minutes",
    "received_at",
)


def _reading_row(patient_id: int, device_pk: int, item, received_at) -> tuple:
    """One row for :func:`_insert_readings`, in ``READING_COLUMNS`` order."""
    measured_at = item.measured_at
    offset = int(measured_at.utcoffset().total_seconds() // 60)
    if isinstance(item, BloodPressureItem):
        systolic, diastolic, value = item.systolic, item.diastolic, None
    else:
        systolic, diastolic, value = None, None, item.value
    return (
        patient_id,
        device_pk,
        item.client_id,
        item.type,
        systolic,
        diastolic,
        value,
        connection.ops.adapt_datetimefield_value(measured_at),
        offset,
        received_at,
    )


def _insert_readings(rows: list[tuple]) -> None:
    """Store validated rows: ``COPY`` on PostgreSQL, multi-row INSERTs of 500 elsewhere.

    Written by hand because Django's ``bulk_create`` spends most of an ingestion batch compiling
    per-field SQL for values that are already validated and typed, and psycopg re-parses a large
    placeholder INSERT on every execute (profiles in bench/RESULTS.md, "Ingestion throughput");
    the table's constraints still have the last word."""
    if not rows:
        return
    table = connection.ops.quote_name(Reading._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in READING_COLUMNS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        placeholder = "(" + ", ".join(["%s"] * len(READING_COLUMNS)) + ")"
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            values = ", ".join([placeholder] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {values}",  # noqa: S608 - names are ours
                [value for row in chunk for value in row],
            )


def record_intakes(*, patient: Patient, items: list[object], actor=None) -> BatchResult:
    """Validate and store a batch of medication intakes (the adherence log)."""
    now = timezone.now()
    result = BatchResult()
    valid = _validate(items, INTAKE_ADAPTER, "taken_at", now, result)

    with transaction.atomic():
        _lock_patient(patient)
        unique = _unique_in_batch(valid, result, key=lambda item: item.client_id)
        existing = set(
            MedicationIntake.objects.filter(
                patient=patient, client_id__in=[item.client_id for _, item in unique]
            ).values_list("client_id", flat=True)
        )
        rows = [
            MedicationIntake(
                patient=patient,
                client_id=item.client_id,
                medication=item.medication,
                dose_mg=item.dose_mg,
                taken_at=item.taken_at,
                received_at=now,
            )
            for _, item in unique
            if item.client_id not in existing
        ]
        result.duplicates += len(unique) - len(rows)
        MedicationIntake.objects.bulk_create(rows, batch_size=1000)
        result.accepted = len(rows)
        _finish_batch(
            patient,
            items,
            result,
            actor=actor,
            kind="intake",
            digest=None,
            signal=intakes_recorded,
            sender=MedicationIntake,
        )
    return result
