"""The identifiers other systems give a patient (an EHR's MRN under that EHR's system URI): what
a valid one is, and the one way they are set — at enrolment, or replaced as a whole (FHIR
update of ``Patient.identifier``) — each journalled with the old and new identifiers.

``Patient.mrn`` is not one of them: it is the clinic's own MRN, served under
``settings.FHIR_MRN_SYSTEM`` and set at enrolment only. An identifier under that system is
refused here, so the two cannot disagree.

Rules kept by the database as well (``PatientIdentifier``'s constraints): one value per system
and patient; a (system, value) names one patient.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction

from audit.models import Action
from audit.services import record_event
from core import authz
from core.errors import Conflict, DomainError
from core.text import has_control_characters
from patients.models import Patient, PatientIdentifier

MAX_SYSTEM_LENGTH = 255  # PatientIdentifier.system
MAX_VALUE_LENGTH = 128  # PatientIdentifier.value
# Systems of this server's own identifiers: never an EHR's.
RESERVED_SYSTEM_PREFIX = "urn:clinaiops:"
_OID = re.compile(r"^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$")
# The journal's detail of the identifiers entered at enrolment: part of the record as created
# (the FHIR history folds them into the first version).
AT_ENROLMENT = "enrolment"
SET_IDENTIFIERS = "patients.set_identifiers"


@dataclass(frozen=True, order=True)
class Identifier:
    system: str
    value: str

    def as_dict(self) -> dict[str, str]:
        return {"system": self.system, "value": self.value}


def check_system(system: object, field: str = "system") -> str:
    """An identifier system: an absolute ``http(s)`` URL with a host, ``urn:oid:<OID>`` or
    ``urn:uuid:<UUID>`` (FHIR identifier.system is a URI; these are the forms that name a
    system unambiguously). Not this server's own (``urn:clinaiops:…``, the MRN's system)."""
    if not isinstance(system, str) or not system.strip():
        raise DomainError("The identifier's system is required.", field=field)
    text = system.strip()
    if len(text) > MAX_SYSTEM_LENGTH:
        raise DomainError(
            f"The identifier's system is at most {MAX_SYSTEM_LENGTH} characters.", field=field
        )
    if text == settings.FHIR_MRN_SYSTEM:
        raise DomainError(
            "This is the system of the clinic's MRN, which has its own field (set at "
            "enrolment): give the EHR's own identifier system.",
            field=field,
        )
    if text.startswith(RESERVED_SYSTEM_PREFIX):
        raise DomainError("urn:clinaiops: systems are this server's own.", field=field)
    if not _is_system_uri(text):
        raise DomainError(
            "The identifier's system must be an absolute URI: http(s)://host/…, "
            "urn:oid:1.2.3… or urn:uuid:….",
            field=field,
        )
    return text


def _is_system_uri(text: str) -> bool:
    if any(character.isspace() for character in text) or has_control_characters(text):
        return False
    lowered = text.lower()
    if lowered.startswith("urn:oid:"):
        return _OID.match(text) is not None
    if lowered.startswith("urn:uuid:"):
        try:
            return str(uuid.UUID(text[len("urn:uuid:") :])) == text[len("urn:uuid:") :].lower()
        except ValueError:
            return False
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.fragment


def check_value(value: object, field: str = "value") -> str:
    """1–128 characters once surrounding whitespace is removed, no control characters."""
    if not isinstance(value, str) or not value.strip():
        raise DomainError("The identifier's value is required.", field=field)
    text = value.strip()
    if len(text) > MAX_VALUE_LENGTH:
        raise DomainError(
            f"The identifier's value is at most {MAX_VALUE_LENGTH} characters.", field=field
        )
    if has_control_characters(text):
        raise DomainError("The identifier's value contains control characters.", field=field)
    return text


def check_identifiers(pairs: Iterable[tuple[object, object]], field: str) -> list[Identifier]:
    """Each pair checked; a second identifier in one system (or the same one twice) refused."""
    found: list[Identifier] = []
    for system, value in pairs:
        identifier = Identifier(check_system(system, field), check_value(value, field))
        if any(other.system == identifier.system for other in found):
            raise DomainError(
                f"Two identifiers in the system {identifier.system}: a patient has one value "
                "per system.",
                field=field,
            )
        found.append(identifier)
    return found


def parse_identifiers(text: str, field: str = "identifiers") -> list[Identifier]:
    """The CSV form: ``system|value`` joined by ``;`` (FHIR's token syntax)."""
    pairs = []
    for part in filter(None, (p.strip() for p in (text or "").split(";"))):
        system, sep, value = part.partition("|")
        if not sep:
            raise DomainError(f"{part[:40]!r}: write each identifier as system|value.", field=field)
        pairs.append((system, value))
    return check_identifiers(pairs, field)


def identifiers_of(patient: Patient) -> list[Identifier]:
    return sorted(Identifier(row.system, row.value) for row in patient.identifiers.all())


def _journalled(identifiers: Iterable[Identifier]) -> list[dict[str, str]]:
    return [identifier.as_dict() for identifier in sorted(identifiers)]


class IdentifierTaken(Conflict):
    """A (system, value) already names another patient. Which patient is not said."""

    def __init__(self, identifier: Identifier, field: str | None):
        super().__init__(
            f"The identifier {identifier.system}|{identifier.value} already names another patient.",
            field=field,
            code="duplicate",
        )
        self.identifier = identifier


def _check_free(patient: Patient, identifiers: Iterable[Identifier], field: str | None) -> None:
    for identifier in identifiers:
        taken = (
            PatientIdentifier.objects.filter(system=identifier.system, value=identifier.value)
            .exclude(patient=patient)
            .exists()
        )
        if taken:
            raise IdentifierTaken(identifier, field)


def assign_at_enrolment(
    *, patient: Patient, identifiers: list[Identifier], actor, field: str = "identifiers"
) -> None:
    """The identifiers entered with the enrolment, inside its transaction (the caller authorized
    ``patients.enrol``). Journalled as part of the record's creation."""
    if not identifiers:
        return
    with transaction.atomic():
        _check_free(patient, identifiers, field)
        try:
            with transaction.atomic():
                PatientIdentifier.objects.bulk_create(
                    [
                        PatientIdentifier(
                            patient=patient, system=i.system, value=i.value, assigned_by=actor
                        )
                        for i in identifiers
                    ]
                )
        except IntegrityError:  # another patient took it since the check
            raise IdentifierTaken(identifiers[0], field) from None
        patient.save(update_fields=["updated_at"])
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="patient",
            object_id=patient.pk,
            patient_id=patient.pk,
            changes={"identifiers": {"old": [], "new": _journalled(identifiers)}},
            detail={"at": AT_ENROLMENT},
        )


def replace_identifiers(
    *, patient: Patient, identifiers: list[Identifier], actor, channel: str
) -> bool:
    """Make ``identifiers`` the patient's EHR identifiers (added, changed, removed), authorized
    by ``patients.set_identifiers``; the caller holds the patient's row lock. Journalled with the
    old and new identifiers. False when nothing changed (nothing written)."""
    authz.authorize(actor, SET_IDENTIFIERS, patient)
    check_identifiers(((i.system, i.value) for i in identifiers), "identifier")
    old = identifiers_of(patient)
    wanted = sorted(identifiers)
    if old == wanted:
        return False
    with transaction.atomic():
        _check_free(patient, wanted, None)
        kept = set(old) & set(wanted)
        removed = [i for i in old if i not in kept]
        for identifier in removed:
            PatientIdentifier.objects.filter(
                patient=patient, system=identifier.system, value=identifier.value
            ).delete()
        added = [i for i in wanted if i not in kept]
        try:
            with transaction.atomic():
                for identifier in added:
                    PatientIdentifier.objects.create(
                        patient=patient,
                        system=identifier.system,
                        value=identifier.value,
                        assigned_by=actor,
                    )
        except IntegrityError:
            raise IdentifierTaken(added[0], None) from None
        last_changed = patient.updated_at
        patient.save(update_fields=["updated_at"])
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="patient",
            object_id=patient.pk,
            patient_id=patient.pk,
            changes={
                "identifiers": {"old": _journalled(old), "new": _journalled(wanted)},
                # The record's meta.lastUpdated before and after: the FHIR history gives each
                # version the time a read of it showed.
                "updated_at": {"old": last_changed, "new": patient.updated_at},
            },
            detail={"channel": channel},
        )
    return True
