"""``PUT /fhir/Patient/{id}`` (FHIR update) of the patient's **EHR identifiers only**.

The body must be the Patient as served, with ``identifier`` the only element that may differ
(``meta`` and ``text`` are the server's and are ignored); any other difference is a 422 naming
the first element that differs. In ``identifier``:

- our own (``urn:clinaiops:patient|<id>``) and the clinic's MRN (``FHIR_MRN_SYSTEM``, typed
  ``MR``) must be sent back as served: the first is the record's logical id; the MRN is the
  clinic's record number, entered at enrolment by an administrator, which the clinic's EHR and
  its CDS Hooks calls are matched by — changing it here would silently re-point every match,
  so it is corrected in the clinic's set-up, not by an integration (422);
- every other entry is an EHR identifier: ``system`` (absolute URI, ``urn:oid:`` or
  ``urn:uuid:``) and ``value`` (1–128 characters), nothing else (elements this server cannot
  keep are refused, 400, never dropped); one per system. The list replaces the EHR identifiers
  the patient has (``patients.identifiers.replace_identifiers``, journalled with the old and
  new ones). A (system, value) that already names another patient is a 409.

``If-Match: W/"<versionId>"`` is honoured (412 when the patient has changed since). Who may: an
administrator, a clinician of the patient's care team, an EHR back-end service registered for
one of its care teams (``patients.set_identifiers``), with a token scope allowing update of
Patient (``Patient.u`` / ``Patient.write``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from clinaiops.fhir.http import FhirError, not_found
from clinaiops.fhir.patients import to_fhir
from clinaiops.fhir.resources import PATIENT_ID_SYSTEM
from core import authz
from core.errors import DomainError, Forbidden, NotFound
from core.ids import parse_id
from patients.identifiers import (
    SET_IDENTIFIERS,
    Identifier,
    IdentifierTaken,
    check_system,
    check_value,
    replace_identifiers,
)
from patients.models import Patient

ROOT = "Patient"
_SERVER_ELEMENTS = ("meta", "text")  # set by the server; ignored in what is sent
_EHR_IDENTIFIER_ELEMENTS = {"system", "value"}
MRN_WHY = (
    "The MRN under {system} is the clinic's own record number, entered at enrolment by an "
    "administrator; the clinic's EHR and its CDS Hooks calls are matched by it, so it is not "
    "changed by FHIR update (correct it in the clinic's set-up). Send it back as served."
)


def _first_difference(served: Any, sent: Any, path: str) -> str | None:
    """The FHIRPath of the first element where ``sent`` differs from ``served``."""
    if isinstance(served, dict) and isinstance(sent, dict):
        for key in [*served, *(k for k in sent if k not in served)]:
            if key not in served or key not in sent:
                return f"{path}.{key}"
            found = _first_difference(served[key], sent[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(served, list) and isinstance(sent, list):
        for index in range(max(len(served), len(sent))):
            if index >= len(served) or index >= len(sent):
                return f"{path}[{index}]"
            found = _first_difference(served[index], sent[index], f"{path}[{index}]")
            if found:
                return found
        return None
    return None if served == sent and type(served) is type(sent) else path


def _only_identifier_differs(served: dict[str, Any], sent: dict[str, Any]) -> None:
    ignored = ("identifier", *_SERVER_ELEMENTS)
    mine = {k: v for k, v in served.items() if k not in ignored}
    theirs = {k: v for k, v in sent.items() if k not in ignored}
    where = _first_difference(mine, theirs, ROOT)
    if where:
        raise FhirError.one(
            422,
            f"{where} differs from the Patient as served: only Patient.identifier may be "
            "changed by update (read the Patient, change its identifier, send it back)",
            code="business-rule",
            expression=where,
        )


def _server_entry(served_entry: dict[str, Any], sent: dict[str, Any], path: str) -> None:
    """An identifier of the server's own, sent back: every element sent must be as served."""
    for key, value in sent.items():
        if served_entry.get(key) != value:
            why = (
                MRN_WHY.format(system=settings.FHIR_MRN_SYSTEM)
                if served_entry.get("system") == settings.FHIR_MRN_SYSTEM
                else f"{PATIENT_ID_SYSTEM} is this server's logical id of the record"
            )
            raise FhirError.one(422, why, code="business-rule", expression=f"{path}.{key}")


def ehr_identifiers(served: dict[str, Any], sent: Any) -> list[Identifier]:
    """The EHR identifiers ``sent`` asks for, checked; the server's own entries compared with
    what is served."""
    if not isinstance(sent, list):
        raise FhirError.one(
            400, "identifier must be an array", code="structure", expression=f"{ROOT}.identifier"
        )
    own = {entry["system"]: entry for entry in served["identifier"][:2]}
    own = {s: e for s, e in own.items() if s in (PATIENT_ID_SYSTEM, settings.FHIR_MRN_SYSTEM)}
    seen_own: set[str] = set()
    wanted: list[Identifier] = []
    for index, entry in enumerate(sent):
        path = f"{ROOT}.identifier[{index}]"
        if not isinstance(entry, dict):
            raise FhirError.one(
                400, "an identifier is an object", code="structure", expression=path
            )
        system = entry.get("system")
        if system in own:
            _server_entry(own[system], entry, path)
            seen_own.add(str(system))
            continue
        if system == settings.FHIR_MRN_SYSTEM:  # the patient has no MRN: none is set here
            raise FhirError.one(
                422,
                MRN_WHY.format(system=system),
                code="business-rule",
                expression=f"{path}.system",
            )
        extra = sorted(set(entry) - _EHR_IDENTIFIER_ELEMENTS)
        if extra:
            raise FhirError.one(
                400,
                f"{extra[0]} of an EHR identifier cannot be kept by this server (it keeps "
                "system and value); send the identifier without it",
                code="not-supported",
                expression=f"{path}.{extra[0]}",
            )
        try:
            identifier = Identifier(
                check_system(system, "system"), check_value(entry.get("value"), "value")
            )
        except DomainError as error:
            raise FhirError.one(400, error.message, expression=f"{path}.{error.field}") from None
        if any(other.system == identifier.system for other in wanted):
            raise FhirError.one(
                400,
                f"a second identifier in the system {identifier.system}: a patient has one "
                "value per system",
                code="duplicate",
                expression=f"{path}.system",
            )
        wanted.append(identifier)
    missing = sorted(set(own) - seen_own)
    if missing:
        why = (
            MRN_WHY.format(system=settings.FHIR_MRN_SYSTEM)
            if missing[0] == settings.FHIR_MRN_SYSTEM
            else f"{PATIENT_ID_SYSTEM}|<id> is this server's logical id of the record and "
            "cannot be removed"
        )
        raise FhirError.one(422, why, code="business-rule", expression=f"{ROOT}.identifier")
    return wanted


def _check_structure(resource_id: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("resourceType") != "Patient":
        raise FhirError.one(
            400,
            "The body must be a Patient resource",
            code="structure",
            expression=f"{ROOT}.resourceType",
        )
    if body.get("id") != resource_id:
        raise FhirError.one(
            400,
            f"Patient.id must be {resource_id}, the id in the URL (http.html#update)",
            code="invalid",
            expression=f"{ROOT}.id",
        )
    return body


def _visible_patient(user, resource_id: str) -> Patient:
    """The patient, if the caller may set its identifiers: 404 when they may not know it, 403
    when they may see it but not change it (emergency access, the patient, a service outside
    its teams)."""
    number = parse_id(resource_id)
    patient = Patient.objects.filter(pk=number).first() if number is not None else None
    if patient is None:
        raise not_found("Patient", resource_id)
    try:
        authz.authorize(user, SET_IDENTIFIERS, patient)
    except NotFound:
        raise not_found("Patient", resource_id) from None
    except Forbidden as error:
        raise FhirError.one(403, error.message, code="forbidden") from None
    return patient


def _matches(if_match: str, version_id: str) -> bool:
    tags = [tag.strip() for tag in if_match.split(",")]
    return any(tag.removeprefix("W/").strip('"') == version_id for tag in tags)


def update_patient(
    user, resource_id: str, body_of, if_match: str | None
) -> tuple[dict[str, Any], bool]:
    """The patient after the update, and whether anything changed. ``body_of()`` reads the
    body (415 for another media type): called once the caller is known to be allowed."""
    patient = _visible_patient(user, resource_id)
    sent = _check_structure(resource_id, body_of())
    with transaction.atomic():
        locked = Patient.objects.select_for_update().get(pk=patient.pk)
        served = to_fhir(locked)
        current = served["meta"]["versionId"]
        if if_match is not None and not _matches(if_match, current):
            raise FhirError.one(
                412,
                f"If-Match {if_match} is not the current version of Patient/{resource_id}: it "
                "changed since you read it; read it again and re-apply your change",
                code="conflict",
            )
        _only_identifier_differs(served, sent)
        wanted = ehr_identifiers(served, sent.get("identifier", []))
        try:
            changed = replace_identifiers(
                patient=locked, identifiers=wanted, actor=user, channel="fhir"
            )
        except IdentifierTaken as error:
            index = next(
                (
                    i
                    for i, entry in enumerate(sent.get("identifier") or [])
                    if isinstance(entry, dict)
                    and entry.get("system") == error.identifier.system
                    and isinstance(entry.get("value"), str)
                    and entry["value"].strip() == error.identifier.value
                ),
                None,
            )
            raise FhirError.one(
                409,
                error.message,
                code="duplicate",
                expression=f"{ROOT}.identifier[{index}]" if index is not None else None,
            ) from None
        if changed:
            locked.refresh_from_db()
            served = to_fhir(locked)
    return served, changed
