"""Wearable readings, medication intakes and laboratory results in: validate each item, store
the valid ones in bulk, report every rejected one by index, field and reason, store each
``client_id`` once.

A ``client_id`` names one item of its patient. Sent again with the same values it is a
duplicate (a retry: stored once); sent with other values it is a *conflict*, rejected under
``client_id`` while the first stays stored — whether the first was stored before or sent
earlier in the same batch. Each item's outcome (``ItemOutcome``) is reported, so that every way
in (the mobile API, ``/api/v1/labs/``, FHIR's 409) answers the same case the same way.

Validation uses pydantic v2 (DESIGN.md: DRF serializers cost ~50 µs per item; a batch is up to
5,000 items). The schema published in OpenAPI is the same model's JSON schema.

Ranges:
- systolic 50–300, diastolic 20–200 mmHg, systolic above diastolic: outside them a cuffless
  reading is an artefact, not a patient state (ranges of the issue; ESH 2023 validation protocols
  for cuffless devices consider 60–260/30–150 the measurable span, ours is wider on purpose so a
  real extreme is never dropped);
- heart rate 20–300 /min; steps 0–100,000 per reading;
- steps may be counted over a period (a daily total): it starts before ``measured_at`` (its
  end) and lasts at most ``MAX_STEP_PERIOD``;
- the codings a FHIR client sent beside the code a reading is stored by (``Coding``): at most
  ``MAX_EXTRA_CODINGS``, each a system (an absolute URI) and a code, kept and served back; the
  mobile API sends none (``READING_ADAPTER``), FHIR does (``CODED_READING_ADAPTER``);
- ``measured_at`` must carry a timezone, may run ahead of the server by at most
  ``CLOCK_SKEW_ALLOWANCE`` (phone clocks drift) and may be at most ``MAX_READING_AGE`` old;
- an intake's dose is a plain decimal (``core.doses``), above 0 and at most the drug's labelled
  maximum (``patients.formulary``), and a prescription of the drug covers ``taken_at``;
- a laboratory result's code, unit and plausible range are ``patients.labs``'; its value is a
  plain decimal; ``observed_at`` obeys the same window as ``measured_at``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, cast

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from audit.models import Action
from audit.services import record_event
from core import authz
from core.authz import System
from core.doses import DOSE_MESSAGE, PLAIN_DECIMAL, parse_dose
from core.moments import OUT_OF_RANGE_MESSAGE, in_utc
from core.text import CONTROL_CHARACTERS_MESSAGE, has_control_characters
from patients.formulary import FORMULARY
from patients.labs import (
    LAB_CODES,
    PLAIN_VALUE,
    VALUE_MESSAGE,
    Canonical,
    parse_value,
    to_canonical,
)
from patients.models import (
    Device,
    LabResult,
    MedicationIntake,
    Patient,
    Prescription,
    Reading,
    ReadingType,
    SafetyCheckDue,
)
from patients.signals import intakes_recorded, labs_recorded, readings_recorded

# The system storing data no person sends (the demo seed, an import): named, never implied.
READINGS_IMPORT = System("patients.record_readings")
INTAKES_IMPORT = System("patients.record_intakes")
LABS_IMPORT = System("patients.record_labs")

MAX_BATCH_ITEMS = 5000
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)
MAX_READING_AGE = timedelta(days=365)


def _without_control_characters(value: str) -> str:
    if has_control_characters(value):
        raise PydanticCustomError("control_characters", CONTROL_CHARACTERS_MESSAGE)
    return value


# Every string of an item: a NUL refused here is that item's rejection; past here it would fail
# the batch's statements on PostgreSQL (``core.text``).
NoControlCharacters = AfterValidator(_without_control_characters)


def _exists_in_utc(value: datetime) -> datetime:
    if in_utc(value) is None:
        raise PydanticCustomError("datetime_out_of_range", OUT_OF_RANGE_MESSAGE)
    return value


# An instant with its offset, that also exists in UTC (``core.moments``): stored, compared and
# digested there.
Instant = Annotated[AwareDatetime, AfterValidator(_exists_in_utc)]
ClientId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True), NoControlCharacters
]
DeviceId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True), NoControlCharacters
]


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: ClientId
    measured_at: Instant
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

MAX_EXTRA_CODINGS = 5
# A calendar day in local time, the 25-hour day at the end of daylight saving time included.
MAX_STEP_PERIOD = timedelta(hours=25)
# RFC 3986 absolute URI: a scheme, a colon, then no whitespace (http://snomed.info/sct, urn:oid:…).
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
# FHIR's ``code`` datatype: no leading, trailing or repeated whitespace.
_FHIR_CODE = re.compile(r"[^\s]+( [^\s]+)*")


def _absolute_uri(value: str) -> str:
    if not _ABSOLUTE_URI.fullmatch(value):
        raise PydanticCustomError(
            "absolute_uri", "must be an absolute URI (e.g. http://snomed.info/sct)"
        )
    return value


def _fhir_code(value: str) -> str:
    if not _FHIR_CODE.fullmatch(value):
        raise PydanticCustomError(
            "fhir_code", "must not start or end with whitespace or repeat it (FHIR code)"
        )
    return value


class Coding(BaseModel):
    """A coding of a reading's code beside the one it is stored by (FHIR ``Coding``): kept as
    sent, served back after ours. Bounded so that a client cannot store a document in it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: Annotated[
        str, StringConstraints(max_length=255), NoControlCharacters, AfterValidator(_absolute_uri)
    ]
    version: (
        Annotated[str, StringConstraints(min_length=1, max_length=64), NoControlCharacters] | None
    ) = None
    code: Annotated[
        str,
        StringConstraints(min_length=1, max_length=100),
        NoControlCharacters,
        AfterValidator(_fhir_code),
    ]
    display: (
        Annotated[str, StringConstraints(min_length=1, max_length=255), NoControlCharacters] | None
    ) = None


class _Coded(BaseModel):
    codings: tuple[Coding, ...] = ()

    @field_validator("codings", mode="before")
    @classmethod
    def few_codings(cls, value: object) -> object:
        if isinstance(value, list | tuple) and len(value) > MAX_EXTRA_CODINGS:
            raise PydanticCustomError(
                "too_many_codings",
                "at most {maximum} codings beside the one the reading is stored by",
                {"maximum": MAX_EXTRA_CODINGS},
            )
        return value


class CodedBloodPressureItem(BloodPressureItem, _Coded):
    pass


class CodedHeartRateItem(HeartRateItem, _Coded):
    pass


class CodedStepsItem(StepsItem, _Coded):
    period_start: Instant | None = None

    @field_validator("period_start")
    @classmethod
    def period_before_end(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        end = info.data.get("measured_at")
        if value is None or end is None:
            return value
        if value >= end:
            raise PydanticCustomError("period_order", "must be before the end of the period")
        if end - value > MAX_STEP_PERIOD:
            raise PydanticCustomError(
                "period_length",
                "the period is longer than {hours} hours (steps are counted per day at most)",
                {"hours": int(MAX_STEP_PERIOD.total_seconds() // 3600)},
            )
        return value


CodedReadingItem = Annotated[
    CodedBloodPressureItem | CodedHeartRateItem | CodedStepsItem, Field(discriminator="type")
]
CODED_READING_ADAPTER: TypeAdapter[Any] = TypeAdapter(CodedReadingItem)


class IntakeItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: ClientId
    medication: Annotated[str, NoControlCharacters]
    dose_mg: Annotated[
        Decimal,
        Field(
            description="mg: more than 0 and at most the drug's labelled maximum; a JSON number "
            "or a string of ASCII digits, at most 2 decimals",
            json_schema_extra={
                "anyOf": [
                    {"type": "number", "exclusiveMinimum": 0},
                    {"type": "string", "pattern": PLAIN_DECIMAL.pattern},
                ]
            },
        ),
    ]
    taken_at: Instant

    @field_validator("medication")
    @classmethod
    def known_medication(cls, value: str) -> str:
        if value not in FORMULARY:
            raise ValueError(f"unknown medication; expected one of {', '.join(sorted(FORMULARY))}")
        return value

    @field_validator("dose_mg", mode="before")
    @classmethod
    def plain_dose(cls, value: object) -> Decimal:
        # "5 mg", "1_0", "١٠", "1e1" and booleans are refused: a dose is a JSON number or plain
        # ASCII digits, and the unit is fixed by the field's name.
        dose = parse_dose(value)
        if dose is None:
            raise PydanticCustomError("plain_decimal", DOSE_MESSAGE)
        return dose

    @field_validator("dose_mg")
    @classmethod
    def labelled_dose(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        drug = FORMULARY.get(info.data.get("medication", ""))
        if drug is not None and not (0 < value <= drug.max_dose_mg):
            raise PydanticCustomError(
                "dose_range",
                "must be more than 0 and at most {maximum} mg for {medication} (its labelled "
                "maximum)",
                {"maximum": str(drug.max_dose_mg), "medication": drug.name},
            )
        return value


INTAKE_ADAPTER: TypeAdapter[IntakeItem] = TypeAdapter(IntakeItem)


class LabItem(BaseModel):
    """One laboratory result: a LOINC code, a value in a UCUM unit the code takes, and when it
    was observed. Without ``client_id``, a digest of code, value, unit and instant is the key."""

    # The code, the unit for the code and the plausible range are judged after parsing
    # (``patients.labs.to_canonical``), each under its own field; the enums below only tell
    # clients the value sets.
    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: ClientId | None = None
    code: Annotated[
        str,
        StringConstraints(min_length=1, max_length=16),
        NoControlCharacters,
        Field(description="LOINC", json_schema_extra={"enum": list(LAB_CODES)}),
    ]
    value: Annotated[
        Decimal,
        Field(
            description="A JSON number or a string of ASCII digits, at most 3 decimals",
            json_schema_extra={
                "anyOf": [{"type": "number"}, {"type": "string", "pattern": PLAIN_VALUE.pattern}]
            },
        ),
    ]
    unit: Annotated[
        str,
        StringConstraints(min_length=1, max_length=32),
        NoControlCharacters,
        Field(
            description="UCUM, one the code takes",
            json_schema_extra={
                "enum": sorted({unit for code in LAB_CODES.values() for unit in code.units})
            },
        ),
    ]
    observed_at: Instant

    @field_validator("value", mode="before")
    @classmethod
    def plain_value(cls, value: object) -> Decimal:
        number = parse_value(value)
        if number is None:
            raise PydanticCustomError("plain_decimal", VALUE_MESSAGE)
        return number


LAB_ADAPTER: TypeAdapter[LabItem] = TypeAdapter(LabItem)


class ItemStatus(StrEnum):
    """What became of one item of a batch."""

    ACCEPTED = "accepted"  # stored by this batch
    DUPLICATE = "duplicate"  # the same item is already stored under its client_id: stored once
    CONFLICT = "conflict"  # its client_id names an item with other values: nothing stored
    REJECTED = "rejected"  # invalid or refused: nothing stored


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    index: int
    status: ItemStatus
    client_id: str | None = None  # the key the item is stored under, once it is valid
    field: str | None = None  # CONFLICT, REJECTED: the field at fault
    message: str | None = None  # CONFLICT, REJECTED: why, for the sender
    # CONFLICT inside the batch: the earlier item with this client_id; None: the one stored.
    earlier_index: int | None = None


@dataclass
class BatchResult:
    """The counts and ``rejected`` list the APIs answer with, and ``outcomes``, one per item
    (sorted by index when the batch is finished). Record an item's fate through ``accept``,
    ``duplicate``, ``conflict`` or ``reject`` so the counts and the outcomes agree: a conflict
    is counted as rejected, never as a duplicate."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, object]] = field(default_factory=list)
    outcomes: list[ItemOutcome] = field(default_factory=list)

    @property
    def conflicts(self) -> int:
        return sum(outcome.status == ItemStatus.CONFLICT for outcome in self.outcomes)

    def accept(self, index: int, client_id: str) -> None:
        self.accepted += 1
        self.outcomes.append(ItemOutcome(index, ItemStatus.ACCEPTED, client_id))

    def duplicate(self, index: int, client_id: str) -> None:
        self.duplicates += 1
        self.outcomes.append(ItemOutcome(index, ItemStatus.DUPLICATE, client_id))

    def conflict(
        self, index: int, client_id: str, message: str, *, earlier_index: int | None = None
    ) -> None:
        self.rejected.append(_rejection(index, "client_id", message))
        self.outcomes.append(
            ItemOutcome(index, ItemStatus.CONFLICT, client_id, "client_id", message, earlier_index)
        )

    def reject(self, rejection: dict[str, Any], *, client_id: str | None = None) -> None:
        self.rejected.append(rejection)
        self.outcomes.append(
            ItemOutcome(
                rejection["index"],
                ItemStatus.REJECTED,
                client_id,
                rejection["field"],
                rejection["message"],
            )
        )

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
    items: Iterable[object],
    adapter: TypeAdapter,
    time_field: str,
    now: datetime,
    result: BatchResult,
) -> list[tuple[int, Any]]:
    """The valid items with their indexes; every other item is rejected in ``result``."""
    valid = []
    for index, raw in enumerate(items):
        bad_number = _non_finite(raw)
        if bad_number:
            result.reject(_rejection(index, bad_number, "must be a finite number"))
            continue
        try:
            item = adapter.validate_python(raw)
        except ValidationError as error:
            result.reject(_first_error(index, error))
            continue
        problem = _check_time(index, getattr(item, time_field), now, time_field)
        if problem:
            result.reject(problem)
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
    announce: dict[str, object] | None = None,
) -> None:
    """The batch's one audit event (last in its transaction), and the announcement of new data
    once it commits (``announce``: what the signal carries beside the patient)."""
    result.rejected.sort(key=lambda rejection: cast(int, rejection["index"]))  # see _rejection
    result.outcomes.sort(key=lambda outcome: outcome.index)
    detail: dict[str, object] = {
        "items": len(items),
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": len(result.rejected),
        "conflicts": result.conflicts,  # among the rejected
    }
    if digest is not None:
        detail["digest"] = digest
    record_event(
        action=Action.CREATE,
        actor=actor,
        object_type=f"{kind}_batch",
        patient_id=patient.pk,
        outcome="success" if not result.rejected else "partial",
        detail=detail,
    )
    if result.accepted:
        patient_id = patient.pk
        extra = announce or {}
        transaction.on_commit(lambda: signal.send(sender=sender, patient_id=patient_id, **extra))


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


def record_readings(
    *,
    patient: Patient,
    items: list[object],
    actor: Any = READINGS_IMPORT,
    adapter: TypeAdapter = READING_ADAPTER,
) -> BatchResult:
    """Validate and store a batch of readings for ``patient``; see the module docstring. The
    patient submits their own (``patients.submit_readings``). Callers that store readings as the
    system pass ``READINGS_IMPORT``; it is the default only until the demo seed names it (a
    view always passes the signed-in user). ``adapter`` is the items' schema:
    ``CODED_READING_ADAPTER`` also takes extra codings and step periods (FHIR)."""
    authz.authorize(actor, "patients.submit_readings", patient)
    now = timezone.now()
    result = BatchResult()
    valid = _validate(items, adapter, "measured_at", now, result)

    with transaction.atomic():
        _lock_patient(patient)
        # Received once the patient's lock is held, not before waiting for it: a reading's
        # receipt time is its FHIR meta.lastUpdated, and an EHR polling by it must not find it
        # stamped long before it could be seen (docs/fhir.md, "Incremental sync").
        received_at = connection.ops.adapt_datetimefield_value(timezone.now())
        devices = _devices_for(patient, {item.device_id for _, item in valid}, now)
        unique, repeats = _unique_in_batch(valid, result, READING_VALUES)
        known = _stored_items(
            Reading.objects.filter(patient=patient), unique, READING_VALUES, result
        )
        rows: list[tuple] = []
        stored: list[dict[str, Any]] = []
        for index, item in unique:
            if index in known:
                continue
            device = devices.get(item.device_id)
            if device is None:
                result.reject(
                    _rejection(index, "device_id", "is registered to another patient"),
                    client_id=item.client_id,
                )
                continue
            rows.append(_reading_row(patient.pk, device.pk, item, received_at))
            # Without the defaults (no codings, no period): the digest the mobile API gives them.
            stored.append(item.model_dump(mode="json", exclude_defaults=True))
            result.accept(index, item.client_id)
        _as_their_first(repeats, result)
        _insert_readings(rows)
        if any(row[3] == ReadingType.BLOOD_PRESSURE for row in rows):
            _safety_check_due(patient.pk, received_at)
        _finish_batch(
            patient,
            items,
            result,
            actor=actor,
            kind="reading",
            digest=_digest(stored),
            signal=readings_recorded,
            sender=Reading,
            # Which kinds arrived: heart rate or steps alone lead to no evaluation (clinicians).
            announce={"reading_types": frozenset(row[3] for row in rows)},
        )
    return result


def _safety_check_due(patient_id: int, received_at) -> None:
    """The safety rules owe this patient a look, even if every worker is down: one outbox row
    per patient (the oldest unchecked upload's time), its generation bumped by each upload so
    that a check in flight does not clear an upload it has not seen. Upsert in SQL, the same on
    PostgreSQL and SQLite (>= 3.24)."""
    table = connection.ops.quote_name(SafetyCheckDue._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (patient_id, due_since, generation) VALUES (%s, %s, 1) "  # noqa: S608 - our table
            f"ON CONFLICT (patient_id) DO UPDATE SET generation = {table}.generation + 1",
            [patient_id, received_at],
        )


@dataclass(frozen=True)
class _Values:
    """What an item of one kind says beside its client_id (``of``), and the stored columns that
    hold the same, in the same order: the same client_id saying the same is a duplicate, saying
    anything else a conflict. Not compared: the offset an instant was written with (one instant,
    whatever the sender's time zone) and what follows from what is compared (a reading's unit
    from its type, a result's canonical value from the value and unit sent)."""

    noun: str
    columns: tuple[str, ...]
    of: Callable[[Any], tuple]


def _reading_values(item: Any) -> tuple:
    # The codings sent beside the code are not compared: the same measurement posted by the
    # phone (none) and by FHIR (with a SNOMED coding) is one reading. The period is: steps over
    # another span are another count.
    if isinstance(item, BloodPressureItem):
        return (
            item.type,
            item.systolic,
            item.diastolic,
            None,
            item.measured_at,
            item.device_id,
            None,
        )
    # isinstance, not getattr: a pydantic model raises (slowly) for a missing attribute.
    period_start = item.period_start if isinstance(item, CodedStepsItem) else None
    return (item.type, None, None, item.value, item.measured_at, item.device_id, period_start)


READING_VALUES = _Values(
    "reading",
    (
        "reading_type",
        "systolic_mmhg",
        "diastolic_mmhg",
        "value",
        "measured_at",
        "device__device_id",
        "period_start",
    ),
    _reading_values,
)
INTAKE_VALUES = _Values(
    "intake",
    ("medication", "dose_mg", "taken_at"),
    lambda item: (item.medication, item.dose_mg, item.taken_at),
)
LAB_VALUES = _Values(
    "laboratory result",
    ("code", "original_unit", "original_value", "observed_at"),
    lambda item: (item.code, item.unit, item.value, item.observed_at),
)


def _unique_in_batch(
    valid: list[tuple[int, Any]], result: BatchResult, values: _Values
) -> tuple[list[tuple[int, Any]], list[tuple[int, str, int]]]:
    """The first item of each client_id, and the identical repeats as (index, client_id, the
    first's index): their fate is the first's (``_as_their_first``). A repeat with other values
    is a conflict (the client reused an id), reported at the later index."""
    first_seen: dict[str, tuple[int, tuple]] = {}
    unique, repeats = [], []
    for index, item in valid:
        earlier = first_seen.get(item.client_id)
        if earlier is None:
            first_seen[item.client_id] = (index, values.of(item))
            unique.append((index, item))
        elif earlier[1] == values.of(item):
            repeats.append((index, item.client_id, earlier[0]))
        else:
            result.conflict(
                index,
                item.client_id,
                "repeats an earlier item of this batch with other values",
                earlier_index=earlier[0],
            )
    return unique, repeats


def _stored_items(
    rows: QuerySet, unique: list[tuple[int, Any]], values: _Values, result: BatchResult
) -> set[int]:
    """The indexes of ``unique`` whose client_id is stored already among ``rows`` (the
    patient's, read under the batch's lock), each a duplicate or a conflict in ``result``."""
    stored = {
        client_id: tuple(columns)
        for client_id, *columns in rows.filter(
            client_id__in=[item.client_id for _, item in unique]
        ).values_list("client_id", *values.columns)
    }
    known = set()
    for index, item in unique:
        columns = stored.get(item.client_id)
        if columns is None:
            continue
        known.add(index)
        if columns == values.of(item):
            result.duplicate(index, item.client_id)
        else:
            result.conflict(
                index,
                item.client_id,
                f"names another {values.noun} already stored with other values; "
                "the stored one is kept",
            )
    return known


def _as_their_first(repeats: list[tuple[int, str, int]], result: BatchResult) -> None:
    """An identical repeat inside the batch: a duplicate of a first item that is (or was
    already) stored; refused like a first item that was refused — never counted as a duplicate
    of values that were not stored."""
    fate = {outcome.index: outcome for outcome in result.outcomes}
    for index, client_id, first_index in repeats:
        first = fate[first_index]
        if first.status in (ItemStatus.ACCEPTED, ItemStatus.DUPLICATE):
            result.duplicate(index, client_id)
        elif first.status == ItemStatus.CONFLICT:
            result.conflict(index, client_id, str(first.message), earlier_index=first.earlier_index)
        else:
            result.reject(_rejection(index, first.field, str(first.message)), client_id=client_id)


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
            action=Action.CREATE,
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
    "codings",
    "period_start",
)


def _reading_row(patient_id: int, device_pk: int, item, received_at) -> tuple:
    """One row for :func:`_insert_readings`, in ``READING_COLUMNS`` order."""
    measured_at = item.measured_at
    offset = int(measured_at.utcoffset().total_seconds() // 60)
    if isinstance(item, BloodPressureItem):
        systolic, diastolic, value = item.systolic, item.diastolic, None
    else:
        systolic, diastolic, value = None, None, item.value
    codings = item.codings if isinstance(item, _Coded) else None
    period_start = item.period_start if isinstance(item, CodedStepsItem) else None
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
        # JSON text: the column's input on both databases (jsonb parses it under COPY).
        json.dumps([coding.model_dump(exclude_none=True) for coding in codings])
        if codings
        else None,
        connection.ops.adapt_datetimefield_value(period_start) if period_start else None,
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


def _uncovered_intake(index: int, item: IntakeItem, prescriptions: list[Prescription]):
    """The rejection of an intake no prescription of its drug covers (started at or before
    ``taken_at`` and not ended by then), or None when one does."""
    mine = [p for p in prescriptions if p.medication == item.medication]
    if any(
        p.started_at <= item.taken_at and (p.ended_at is None or item.taken_at < p.ended_at)
        for p in mine
    ):
        return None
    later = [p.started_at for p in mine if p.started_at > item.taken_at]
    if later:
        return _rejection(
            index,
            "taken_at",
            f"is before {item.medication} was prescribed (from {min(later).date().isoformat()})",
        )
    return _rejection(index, "medication", f"{item.medication} is not prescribed")


def record_intakes(*, patient: Patient, items: list[object], actor: Any) -> BatchResult:
    """Validate and store a batch of medication intakes (the adherence log), the patient's own
    (``patients.submit_readings``; the system: ``INTAKES_IMPORT``). An intake of a drug no
    prescription covers at ``taken_at`` is refused: it would count as adherence to a regimen the
    patient was never on."""
    authz.authorize(actor, "patients.submit_readings", patient)
    now = timezone.now()
    result = BatchResult()
    parsed = _validate(items, INTAKE_ADAPTER, "taken_at", now, result)

    with transaction.atomic():
        _lock_patient(patient)
        prescriptions = list(
            Prescription.objects.filter(
                patient=patient, medication__in={item.medication for _, item in parsed}
            )
        )
        valid = []
        for index, item in parsed:
            problem = _uncovered_intake(index, item, prescriptions)
            if problem:
                result.reject(problem, client_id=item.client_id)
            else:
                valid.append((index, item))
        unique, repeats = _unique_in_batch(valid, result, INTAKE_VALUES)
        known = _stored_items(
            MedicationIntake.objects.filter(patient=patient), unique, INTAKE_VALUES, result
        )
        rows = []
        for index, item in unique:
            if index in known:
                continue
            rows.append(
                MedicationIntake(
                    patient=patient,
                    client_id=item.client_id,
                    medication=item.medication,
                    dose_mg=item.dose_mg,
                    taken_at=item.taken_at,
                    received_at=now,
                )
            )
            result.accept(index, item.client_id)
        _as_their_first(repeats, result)
        MedicationIntake.objects.bulk_create(rows, batch_size=1000)
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


def lab_client_id(code: str, value: Decimal, unit: str, observed_at: datetime) -> str:
    """The de-duplication key of a result sent without one: a digest of what was observed —
    the number as a number (``1.10`` is ``1.1``), the instant whatever offset expresses it —
    so that a retry is stored once."""
    content = "|".join(
        (code, format(value.normalize(), "f"), unit, observed_at.astimezone(UTC).isoformat())
    )
    return "lab-" + hashlib.sha256(content.encode()).hexdigest()[:48]


def _with_client_id(item: LabItem) -> LabItem:
    if item.client_id is not None:
        return item
    client_id = lab_client_id(item.code, item.value, item.unit, item.observed_at)
    return item.model_copy(update={"client_id": client_id})


def record_labs(*, patient: Patient, items: list[object], actor: Any) -> BatchResult:
    """Validate and store a batch of laboratory results for ``patient`` (``patients.labs``:
    supported codes, units, plausible ranges), each in its canonical unit beside the value and
    unit as sent. ``actor`` is the clinician of the care team who entered them
    (``patients.record_labs``), or ``LABS_IMPORT`` for the system importing them.

    As for readings: valid items are stored even when others are rejected, a ``client_id``
    seen before is a duplicate (with other values, a conflict), one audit event (``lab_batch``)
    per batch, and ``labs_recorded`` once it commits."""
    authz.authorize(actor, "patients.record_labs", patient)
    now = timezone.now()
    result = BatchResult()
    valid: list[tuple[int, LabItem]] = []
    canonical: dict[int, Canonical] = {}
    for index, item in _validate(items, LAB_ADAPTER, "observed_at", now, result):
        judged = to_canonical(item.code, item.value, item.unit)
        if isinstance(judged, Canonical):
            canonical[index] = judged
            valid.append((index, _with_client_id(item)))
        else:
            result.reject(_rejection(index, judged.field, judged.message))
    recorded_by = None if isinstance(actor, System) else actor

    with transaction.atomic():
        _lock_patient(patient)
        unique, repeats = _unique_in_batch(valid, result, LAB_VALUES)
        known = _stored_items(LabResult.objects.filter(patient=patient), unique, LAB_VALUES, result)
        rows, stored = [], []
        for index, item in unique:
            if index in known:
                continue
            rows.append(
                LabResult(
                    patient=patient,
                    client_id=item.client_id,
                    code=item.code,
                    value=canonical[index].value,
                    unit=canonical[index].unit,
                    original_value=item.value,
                    original_unit=item.unit,
                    observed_at=item.observed_at,
                    received_at=now,
                    recorded_by=recorded_by,
                )
            )
            stored.append(item.model_dump(mode="json"))
            result.accept(index, item.client_id)
        _as_their_first(repeats, result)
        LabResult.objects.bulk_create(rows)
        _finish_batch(
            patient,
            items,
            result,
            actor=actor,
            kind="lab",
            digest=_digest(stored),
            signal=labs_recorded,
            sender=LabResult,
        )
    return result
