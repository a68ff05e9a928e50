"""A posted ``Observation`` → one item for ``patients.ingestion.record_readings`` (a wearable
reading, posted by the patient) or ``record_labs`` (a laboratory result, posted by a clinician
of the care team), chosen by its LOINC code.

This layer checks only what is FHIR: the resource parses (fhir.resources, R4B models, which
are wire-compatible with R4 for Observation), its code is one we store, units are UCUM, the
subject is a patient the caller may submit for. Ranges, units of a laboratory code,
timestamps, devices and duplicates are the ingestion service's, so an observation is judged
exactly as ``POST /api/v1/readings/`` or ``/api/v1/labs/`` judges it; ``paths`` maps the
ingestion's field names back to FHIR elements for the error answer.

Elements this server cannot store (``note``, ``interpretation``, ``performer``, …) are refused
rather than dropped: a value silently lost is worse in clinical data than a 400. Plain
``extension``\\ s may be ignored (FHIR allows it); ``modifierExtension``\\ s may not.

A reading keeps the codings of ``code`` sent beside the one it is stored by (a LOINC 55284-4
beside 85354-9, a SNOMED CT code beside 8867-4; ``Reading.codings``), bounded and judged by the
ingestion (``patients.ingestion.Coding``). Steps may be counted over an ``effectivePeriod`` (a
daily total, LOINC 41950-7 or 55423-8); blood pressure and heart rate are measured at an
instant and refuse one.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fhir.resources.R4B.observation import Observation as FhirObservation
from pydantic import StringConstraints, TypeAdapter, ValidationError

from clinaiops.fhir.http import FhirError, Issue
from clinaiops.fhir.labs import LAB_CLIENT_ID_SYSTEM
from clinaiops.fhir.observations import (
    BP_UNIT,
    CLIENT_ID_SYSTEM,
    DAILY_STEPS,
    DIASTOLIC,
    RECOGNISED,
    SYSTOLIC,
    ReadingCode,
)
from clinaiops.fhir.resources import LOINC, UCUM, visible_subject
from core import authz
from core.errors import Forbidden
from core.moments import OUT_OF_RANGE_MESSAGE, in_utc
from core.text import CONTROL_CHARACTERS_MESSAGE, has_control_characters
from patients.ingestion import LAB_ADAPTER, MAX_EXTRA_CODINGS, lab_client_id
from patients.labs import LAB_CODES, LabCode
from patients.models import Patient, ReadingType

ROOT = "Observation"
_STORED = {
    "resourceType",
    "id",  # ignored on create (http.html#create)
    "meta",  # set by the server
    "text",
    "extension",
    "identifier",
    "status",
    "category",  # set by the server from the code
    "code",
    "subject",
    "effectiveDateTime",
    "effectiveInstant",
    "effectivePeriod",  # steps only (a count over a period)
    "issued",  # set by the server (time of receipt)
    "device",
    "valueQuantity",
    "component",
}
_DATETIME_WITH_ZONE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$"
)
MAX_CLIENT_ID = 64
# The ingestion strips surrounding whitespace from client_id and device_id (pydantic's
# strip_whitespace); the same stripping here, so the keys this layer compares and looks up are
# the ones stored.
_STRIPPED: TypeAdapter[str] = TypeAdapter(Annotated[str, StringConstraints(strip_whitespace=True)])


READING, LAB = "reading", "lab"
# Who may post each kind: the named action of the ingestion it goes through (as with
# POST /api/v1/readings/ and POST /api/v1/labs/); anyone else gets its refusal (403).
_SUBMITTERS = {READING: "patients.submit_readings", LAB: "patients.record_labs"}


# The elements of a sent Coding a reading keeps (``patients.ingestion.Coding``); ``id`` and
# plain ``extension``s are ignored as on the resource; any other is refused.
_CODING_KEPT = ("system", "version", "code", "display")
_CODING_IGNORED = {"id", "extension"}


@dataclass
class ParsedObservation:
    patient: Patient
    item: dict[str, Any]  # one item of record_readings or record_labs, by ``kind``
    paths: dict[str, str]  # ingestion field → FHIRPath of the element it came from
    kind: str = READING

    @property
    def client_id(self) -> str:
        return self.item["client_id"]


def _path(location: tuple) -> str:
    text = ROOT
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _structure_issues(raw: dict[str, Any]) -> list[Issue]:
    issues = []
    for name in raw:
        if name == "modifierExtension":
            issues.append(
                Issue(
                    "modifierExtension is not understood by this server and changes the "
                    "meaning of the resource: refused (FHIR extensibility rules)",
                    "not-supported",
                    f"{ROOT}.modifierExtension",
                )
            )
        elif name not in _STORED and not name.startswith("_"):
            issues.append(
                Issue(
                    f"{name} is not stored by this server; remove it or send the value another "
                    "way (it would otherwise be lost)",
                    "not-supported",
                    f"{ROOT}.{name}",
                )
            )
    try:
        FhirObservation.model_validate(raw)
    except ValidationError as error:
        for detail in error.errors(include_url=False):
            location = tuple(part for part in detail["loc"] if part != "__root__")
            message = "unknown element" if detail["type"] == "extra_forbidden" else detail["msg"]
            issues.append(Issue(message, "structure", _path(location)))
    return issues


def _whole_number(raw: Any, path: str, unit: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise FhirError.one(400, f"must be a number in {unit}", expression=path)
    if isinstance(raw, float):
        if not raw.is_integer():
            raise FhirError.one(
                400,
                f"must be a whole number of {unit} (the device reports integers)",
                expression=path,
            )
        raw = int(raw)
    return raw


def _quantity_value(quantity: Any, path: str, unit: str) -> int:
    if not isinstance(quantity, dict):
        raise FhirError.one(400, f"a valueQuantity in {unit} is required", expression=path)
    if quantity.get("system") != UCUM:
        raise FhirError.one(
            400, f"the unit must be UCUM (system {UCUM}), code {unit}", expression=f"{path}.system"
        )
    if quantity.get("code") != unit:
        raise FhirError.one(
            400,
            f"unit code {quantity.get('code')!r} is not {unit!r} (UCUM)",
            expression=f"{path}.code",
        )
    if "value" not in quantity:
        raise FhirError.one(400, "value is required", expression=f"{path}.value")
    return _whole_number(quantity["value"], f"{path}.value", unit)


def _sent_codings(raw: dict[str, Any]) -> list[Any]:
    return (raw.get("code") or {}).get("coding") or []


def _code(raw: dict[str, Any]) -> ReadingCode | LabCode:
    """The code the observation is stored by: one reading or laboratory code, however many of
    its LOINC codes were sent (41950-7 and 55423-8 are both steps)."""
    found = {
        RECOGNISED[code].loinc if code in RECOGNISED else code
        for coding in _sent_codings(raw)
        if coding.get("system") == LOINC
        and ((code := coding.get("code")) in RECOGNISED or code in LAB_CODES)
    }
    if len(found) != 1:
        supported = ", ".join(
            [f"{code} ({c.text.lower()})" for code, c in RECOGNISED.items()]
            + [f"{code} ({c.name})" for code, c in LAB_CODES.items()]
        )
        problem = "names more than one supported code" if found else "is not supported"
        raise FhirError.one(
            400,
            f"the code {problem}; expected exactly one LOINC ({LOINC}) coding of: {supported}",
            expression=f"{ROOT}.code",
            code="code-invalid",
        )
    code = found.pop()
    return RECOGNISED.get(code) or LAB_CODES[code]


# A Bundle's entries judged so far: (subject reference as sent, kind) → the patient the
# caller may post that kind for. One per Bundle, never kept beyond it (``parse_observation``).
Subjects = dict[tuple[Any, str], Patient]


def _patient(
    raw: dict[str, Any], user, base: str, submitting: str, subjects: Subjects | None = None
) -> Patient:
    key = ((raw.get("subject") or {}).get("reference"), submitting)
    if subjects is not None and isinstance(key[0], str) and key in subjects:
        return subjects[key]
    patient = visible_subject(raw, user, base, ROOT)
    try:
        authz.authorize(user, _SUBMITTERS[submitting], patient)
    except Forbidden as refusal:
        raise FhirError.one(
            403, refusal.message, expression=f"{ROOT}.subject", code="forbidden"
        ) from None
    if subjects is not None and isinstance(key[0], str):
        subjects[key] = patient
    return patient


def _extra_codings(raw: dict[str, Any], code: ReadingCode) -> list[tuple[int, dict[str, Any]]]:
    """The codings sent beside the one the reading is stored by, each with its index in
    ``code.coding``, as the ingestion's ``Coding`` items (it judges them)."""
    extra = []
    for index, coding in enumerate(_sent_codings(raw)):
        if coding.get("system") == LOINC and coding.get("code") == code.loinc:
            continue  # ours: served with our display
        for name in coding:
            if (
                name not in _CODING_KEPT
                and name not in _CODING_IGNORED
                and not name.startswith("_")
            ):
                raise FhirError.one(
                    400,
                    f"{name} of a coding is not stored by this server; remove it (it would "
                    "otherwise be lost)",
                    expression=f"{ROOT}.code.coding[{index}].{name}",
                    code="not-supported",
                )
        extra.append((index, {name: coding[name] for name in _CODING_KEPT if name in coding}))
    return extra


def _coding_paths(extra: list[tuple[int, dict[str, Any]]]) -> dict[str, str]:
    """The ingestion's field names of the extra codings → their elements in ``code.coding``;
    too many is answered at the first coding beyond the limit."""
    beyond = extra[MAX_EXTRA_CODINGS][0] if len(extra) > MAX_EXTRA_CODINGS else None
    paths = {"codings": f"{ROOT}.code.coding" + (f"[{beyond}]" if beyond is not None else "")}
    for position, (index, _) in enumerate(extra):
        path = f"{ROOT}.code.coding[{index}]"
        paths[f"codings.{position}"] = path
        paths |= {f"codings.{position}.{name}": f"{path}.{name}" for name in _CODING_KEPT}
    return paths


def _instant(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _DATETIME_WITH_ZONE.match(value):
        raise FhirError.one(
            400,
            "must be a dateTime with time and timezone (e.g. 2026-11-20T07:31:00+01:00)",
            expression=path,
        )
    moment = _moment(value)
    if moment is not None and in_utc(moment) is None:
        raise FhirError.one(400, OUT_OF_RANGE_MESSAGE, expression=path)
    return value


@dataclass(frozen=True)
class _Effective:
    end: str  # the instant measured, or the end of the period counted: ``measured_at``
    end_path: str
    start: str | None = None  # the start of the period (steps)
    start_path: str | None = None


def _effective(raw: dict[str, Any], code: ReadingCode | LabCode) -> _Effective:
    is_steps = isinstance(code, ReadingCode) and code.reading_type == ReadingType.STEPS
    if "effectivePeriod" in raw:
        path = f"{ROOT}.effectivePeriod"
        if not is_steps:
            what = code.text if isinstance(code, ReadingCode) else f"A {code.name} result"
            raise FhirError.one(
                400,
                f"{what} is measured at an instant: send effectiveDateTime (effectivePeriod is "
                "taken for step counts only)",
                expression=path,
                code="not-supported",
            )
        period = raw["effectivePeriod"] or {}
        for name in ("start", "end"):
            if name not in period:
                raise FhirError.one(
                    400,
                    f"the period's {name} is required (steps are stored with the span they "
                    "were counted over)",
                    expression=f"{path}.{name}",
                    code="required",
                )
        return _Effective(
            _instant(period["end"], f"{path}.end"),
            f"{path}.end",
            _instant(period["start"], f"{path}.start"),
            f"{path}.start",
        )
    if is_steps and any(
        coding.get("system") == LOINC and coding.get("code") == DAILY_STEPS
        for coding in _sent_codings(raw)
    ):
        raise FhirError.one(
            400,
            f"a 24-hour step total ({DAILY_STEPS}) needs effectivePeriod with start and end: an "
            "instant does not say which 24 hours it counts",
            expression=f"{ROOT}.effectivePeriod",
            code="required",
        )
    for name in ("effectiveDateTime", "effectiveInstant"):
        if name in raw:
            return _Effective(_instant(raw[name], f"{ROOT}.{name}"), f"{ROOT}.{name}")
    raise FhirError.one(
        400, "effectiveDateTime is required", expression=f"{ROOT}.effective[x]", code="required"
    )


def _values(raw: dict[str, Any], code: ReadingCode) -> tuple[dict[str, Any], dict[str, str]]:
    if code.unit is not None:
        if raw.get("component"):
            raise FhirError.one(
                400, f"{code.text.lower()} carries no components", expression=f"{ROOT}.component[0]"
            )
        path = f"{ROOT}.valueQuantity"
        value = _quantity_value(raw.get("valueQuantity"), path, code.unit)
        return {"value": value, "unit": code.unit}, {
            "value": f"{path}.value",
            "unit": f"{path}.code",
        }
    if "valueQuantity" in raw:
        raise FhirError.one(
            400,
            "a blood-pressure panel carries its values in component (8480-6, 8462-4)",
            expression=f"{ROOT}.valueQuantity",
        )
    values: dict[str, Any] = {"unit": BP_UNIT}
    paths = {"unit": f"{ROOT}.component", "": f"{ROOT}.component"}
    wanted = {SYSTOLIC[0]: "systolic", DIASTOLIC[0]: "diastolic"}
    for index, component in enumerate(raw.get("component") or []):
        path = f"{ROOT}.component[{index}]"
        codes = {
            coding.get("code")
            for coding in (component.get("code") or {}).get("coding") or []
            if coding.get("system") == LOINC
        } & set(wanted)
        if len(codes) != 1 or wanted[next(iter(codes))] in values:
            raise FhirError.one(
                400,
                "each component must be one of LOINC 8480-6 (systolic) and 8462-4 (diastolic), "
                "each once",
                expression=f"{path}.code",
                code="code-invalid",
            )
        name = wanted[codes.pop()]
        values[name] = _quantity_value(
            component.get("valueQuantity"), f"{path}.valueQuantity", BP_UNIT
        )
        paths[name] = f"{path}.valueQuantity.value"
    missing = [name for name in ("systolic", "diastolic") if name not in values]
    if missing:
        raise FhirError.one(
            400,
            f"the {' and '.join(missing)} component is required (LOINC 8480-6 / 8462-4)",
            expression=f"{ROOT}.component",
            code="required",
        )
    return values, paths


def _lab_values(raw: dict[str, Any], code: LabCode) -> tuple[dict[str, Any], dict[str, str]]:
    """The value and unit as sent: which units a code takes, the plausible range and the
    plain-decimal rule are the ingestion's (``patients.labs``), so their messages are too."""
    for name in ("component", "device"):
        if raw.get(name):
            raise FhirError.one(
                400,
                f"a laboratory result ({code.loinc}) carries no {name}; send its value in "
                "valueQuantity",
                expression=f"{ROOT}.{name}",
                code="not-supported",
            )
    path = f"{ROOT}.valueQuantity"
    quantity = raw.get("valueQuantity")
    if not isinstance(quantity, dict):
        raise FhirError.one(
            400, f"a valueQuantity in {', '.join(code.units)} is required", expression=path
        )
    if quantity.get("system") != UCUM:
        raise FhirError.one(
            400,
            f"the unit must be UCUM (system {UCUM}), code one of {', '.join(code.units)}",
            expression=f"{path}.system",
        )
    if "value" not in quantity:
        raise FhirError.one(400, "value is required", expression=f"{path}.value")
    value = quantity["value"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FhirError.one(400, "must be a number", expression=f"{path}.value")
    return {"code": code.loinc, "value": value, "unit": quantity.get("code")}, {
        "code": f"{ROOT}.code",
        "value": f"{path}.value",
        "unit": f"{path}.code",
    }


def _moment(effective: str) -> datetime | None:
    """The datetime ``effective`` (already of the right shape) names; None when it names no
    calendar date (2026-02-30: refused later by the ingestion, with its message)."""
    try:
        return datetime.fromisoformat(effective)
    except ValueError:
        return None


def _utc(effective: str) -> str:
    """The instant, whatever offset expresses it, for the content digest (``_effective`` has
    refused instants that do not exist in UTC)."""
    moment = _moment(effective)
    return moment.astimezone(UTC).isoformat() if moment is not None else effective


def _stripped(value: str, path: str, what: str) -> str:
    """``value`` as the ingestion stores it (surrounding whitespace removed); 400 naming the
    element when nothing is left, or when it holds a control character (``core.text``: it is
    looked up before the ingestion judges it, and PostgreSQL refuses a NUL in any query)."""
    stripped = _STRIPPED.validate_python(value)
    if not stripped:
        raise FhirError.one(400, f"the {what} is blank", expression=path, code="value")
    if has_control_characters(stripped):
        raise FhirError.one(
            400, f"the {what} {CONTROL_CHARACTERS_MESSAGE}", expression=path, code="value"
        )
    return stripped


def _device_id(raw: dict[str, Any], patient: Patient) -> tuple[str, str]:
    """The wearable's id: ``device.identifier.value``, else the id of a ``Device/<id>``
    reference; without either, one pseudo-device per patient for observations entered
    without one (the reading table requires a device)."""
    device = raw.get("device") or {}
    value = (device.get("identifier") or {}).get("value")
    if value:
        path = f"{ROOT}.device.identifier.value"
        return _stripped(value, path, "device identifier value"), path
    reference = device.get("reference") or ""
    if reference.startswith("Device/") and len(reference) > len("Device/"):
        path = f"{ROOT}.device.reference"
        return _stripped(reference.removeprefix("Device/"), path, "Device id"), path
    return f"fhir-patient-{patient.pk}", f"{ROOT}.device"


def _digest_id(content: dict[str, Any]) -> str:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return "fhir-" + hashlib.sha256(text.encode()).hexdigest()[:48]


def _derived_lab_id(item: dict[str, Any]) -> str:
    """The key ``record_labs`` derives for a result sent without one (so a FHIR post and an
    ``/api/v1/labs/`` post of the same result are one); a digest of the raw item when it is
    invalid (the ingestion then rejects it with its own message)."""
    try:
        lab = LAB_ADAPTER.validate_python(item)
    except ValidationError:
        return _digest_id(item)
    return lab_client_id(lab.code, lab.value, lab.unit, lab.observed_at)


def _client_id(raw: dict[str, Any], system: str, derived) -> tuple[str, str]:
    """The de-duplication key: the identifier in our ``system``, else the first identifier
    value; without one, ``derived()`` — from what was observed, so re-posting the same
    observation is a duplicate as well."""
    identifiers = [i for i in raw.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
    chosen = next(
        (i for i in identifiers if i.get("system") == system),
        identifiers[0] if identifiers else None,
    )
    if chosen is None:
        return derived(), ROOT
    index = raw["identifier"].index(chosen)
    path = f"{ROOT}.identifier[{index}].value"
    value = _stripped(chosen["value"], path, "identifier value")
    if len(value) > MAX_CLIENT_ID:
        raise FhirError.one(
            400, f"the identifier value is longer than {MAX_CLIENT_ID} characters", expression=path
        )
    return value, path


def parse_observation(
    raw: Any, user, base: str, *, subjects: Subjects | None = None
) -> ParsedObservation:
    """Raises FhirError with every structural issue at once, else with the first semantic one.

    ``subjects``: the entries of one Bundle share it, so a subject is looked up and the
    caller's right to post for it checked once per Bundle, not once per entry (the check is a
    query of the caller's reach: 1,000 readings of one patient cost 1,000 of them, most of a
    transaction's time). What a caller may do does not change within one request."""
    if not isinstance(raw, dict) or raw.get("resourceType") != ROOT:
        raise FhirError.one(
            400,
            "the body must be an Observation resource",
            expression=f"{ROOT}.resourceType",
            code="structure",
        )
    issues = _structure_issues(raw)
    if issues:
        raise FhirError(400, issues)
    if raw.get("status") != "final":
        raise FhirError.one(
            400,
            "only final observations are stored (status must be final)",
            expression=f"{ROOT}.status",
            code="value",
        )
    code = _code(raw)
    effective = _effective(raw, code)
    if isinstance(code, LabCode):
        return _parsed_lab(raw, user, base, code, effective.end, effective.end_path, subjects)
    values, paths = _values(raw, code)
    extra = _extra_codings(raw, code)
    patient = _patient(raw, user, base, READING, subjects)
    device_id, device_path = _device_id(raw, patient)
    content = {"code": code.loinc, "at": _utc(effective.end), "device_id": device_id, **values}
    if effective.start is not None:  # a point reading's digest stays what it always was
        content["from"] = _utc(effective.start)
    client_id, client_id_path = _client_id(raw, CLIENT_ID_SYSTEM, lambda: _digest_id(content))
    item = {
        "client_id": client_id,
        "type": code.reading_type,
        **values,
        "measured_at": effective.end,
        "device_id": device_id,
    }
    if extra:
        item["codings"] = [coding for _, coding in extra]
        paths |= _coding_paths(extra)
    if effective.start is not None:
        item["period_start"] = effective.start
        paths["period_start"] = str(effective.start_path)
    paths |= {
        "measured_at": effective.end_path,
        "device_id": device_path,
        "client_id": client_id_path,
    }
    return ParsedObservation(patient=patient, item=item, paths=paths)


def _parsed_lab(
    raw: dict[str, Any],
    user,
    base: str,
    code: LabCode,
    effective: str,
    effective_path: str,
    subjects: Subjects | None = None,
) -> ParsedObservation:
    values, paths = _lab_values(raw, code)
    patient = _patient(raw, user, base, LAB, subjects)
    item = {**values, "observed_at": effective}
    client_id, client_id_path = _client_id(raw, LAB_CLIENT_ID_SYSTEM, lambda: _derived_lab_id(item))
    paths |= {"observed_at": effective_path, "client_id": client_id_path}
    return ParsedObservation(
        patient=patient, item={"client_id": client_id, **item}, paths=paths, kind=LAB
    )
