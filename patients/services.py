"""Writes on the patient record. Each runs in one transaction with its audit event."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import CareTeam, Role, User
from audit.models import Action
from audit.services import record_event, refusals_journalled
from core import authz
from core.authz import System
from core.errors import DomainError
from core.text import CONTROL_CHARACTERS_MESSAGE, has_control_characters
from patients.course import labelled_dose_problem
from patients.formulary import FORMULARY
from patients.models import CareTeamAssignment, Patient, PhoneActivation, Prescription

PHONE_PATTERN = re.compile(r"^\+?[0-9][0-9 ()\-]{5,30}$")


def valid_time_zone(value: str) -> str:
    """An IANA zone name that exists (``Europe/Berlin``), or a ``DomainError`` on ``time_zone``."""
    value = (value or "").strip()
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise DomainError(
            f"{value!r} is not a time zone; use an IANA name such as Europe/London.",
            field="time_zone",
        ) from None
    return value


def valid_mrn(value: str | None, *, excluding: Patient | None = None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > 64 or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise DomainError("An MRN is 1 to 64 visible characters, without spaces.", field="mrn")
    taken = Patient.objects.filter(mrn=value)
    if excluding is not None:
        taken = taken.exclude(pk=excluding.pk)
    if taken.exists():
        raise DomainError("Another patient already has this MRN.", field="mrn")
    return value


def valid_phone(value: str) -> str:
    value = (value or "").strip()
    if value and not PHONE_PATTERN.match(value):
        raise DomainError(
            "A contact phone is digits, spaces, brackets and dashes, optionally starting with +.",
            field="contact_phone",
        )
    return value


def register_patient(
    *,
    given_name: str,
    family_name: str,
    birth_year: int,
    sex: str,
    race: str,
    ethnicity: str,
    care_team: CareTeam | None = None,
    user: User | None = None,
    mrn: str | None = None,
    time_zone: str = "UTC",
    contact_phone: str = "",
    actor: User | System,
) -> Patient:
    authz.authorize(actor, "patients.enrol")
    if user is not None and user.role != Role.PATIENT:
        raise DomainError("Only a patient account can be linked to a patient record.", field="user")
    for name, value in (("given_name", given_name), ("family_name", family_name)):
        if not value.strip():
            raise DomainError("This value is required.", field=name)
        if has_control_characters(value):
            raise DomainError(f"The name {CONTROL_CHARACTERS_MESSAGE}.", field=name)
    with transaction.atomic():
        patient = Patient(
            user=user,
            given_name=given_name.strip(),
            family_name=family_name.strip(),
            birth_year=birth_year,
            sex=sex,
            race=race,
            ethnicity=ethnicity,
            mrn=valid_mrn(mrn),
            time_zone=valid_time_zone(time_zone),
            contact_phone=valid_phone(contact_phone),
        )
        try:
            patient.full_clean(exclude=["user"])
        except ValidationError as error:
            field, messages = next(iter(error.message_dict.items()))
            raise DomainError(" ".join(messages), field=field) from None
        try:
            with transaction.atomic():
                patient.save()
        except IntegrityError:  # another enrolment took the MRN since the check
            raise DomainError("Another patient already has this MRN.", field="mrn") from None
        record_event(
            action=Action.CREATE,
            actor=actor,
            object_type="patient",
            object_id=patient.pk,
            patient_id=patient.pk,
            changes={
                "mrn": {"old": None, "new": patient.mrn},
                "time_zone": {"old": None, "new": patient.time_zone},
            },
        )
        if care_team is not None:
            assign_care_team(patient=patient, care_team=care_team, actor=actor)
    return patient


def assign_care_team(
    *, patient: Patient, care_team: CareTeam, actor: User | System
) -> CareTeamAssignment:
    authz.authorize(actor, "patients.enrol")
    if not care_team.is_active:
        raise DomainError("That care team is deactivated.", field="care_team")
    with transaction.atomic():
        assignment = CareTeamAssignment.objects.create(patient=patient, care_team=care_team)
        record_event(
            action=Action.CREATE,
            actor=actor,
            object_type="care_team_assignment",
            object_id=assignment.pk,
            patient_id=patient.pk,
            detail={"care_team": care_team.pk},
        )
    return assignment


@refusals_journalled("transfer_patient", object_type="patient", target="patient")
def transfer_patient(
    *, patient: Patient, care_team: CareTeam, reason: str, actor: User | System
) -> Patient:
    """Move a patient to another care team: the old team's clinicians no longer reach them, the
    new team's do, from this moment. Proposals waiting for review wait for the new team."""
    authz.authorize(actor, "patients.enrol")
    if patient.discharged_at is not None:
        raise DomainError("A discharged patient is not transferred.", field="patient")
    if not care_team.is_active:
        raise DomainError("That care team is deactivated.", field="care_team")
    if not reason.strip():
        raise DomainError("Say why the patient is transferred.", field="reason")
    with transaction.atomic():
        Patient.objects.select_for_update().filter(pk=patient.pk).first()
        old = sorted(patient.assignments.values_list("care_team_id", flat=True))
        if old == [care_team.pk]:
            raise DomainError("The patient is already in this care team.", field="care_team")
        patient.assignments.all().delete()
        CareTeamAssignment.objects.create(patient=patient, care_team=care_team)
        record_event(
            action=Action.TRANSFER,
            actor=actor,
            object_type="patient",
            object_id=patient.pk,
            patient_id=patient.pk,
            changes={"care_teams": {"old": old, "new": [care_team.pk]}},
            detail={"reason": reason.strip()},
        )
    return patient


def discharge_patient(*, patient: Patient, reason: str, actor: User | System) -> Patient:
    """End monitoring: the record is kept and stays readable by the care team; nothing new is
    processed, and the phone's account is deactivated, which revokes its tokens
    (``accounts.signals``). The open proposals are withdrawn by the caller's layer
    (``clinicians.enrolment.discharge``)."""
    authz.authorize(actor, "patients.enrol")
    if not reason.strip():
        raise DomainError("Say why the patient is discharged.", field="reason")
    with transaction.atomic():
        row = Patient.objects.select_for_update().get(pk=patient.pk)
        if row.discharged_at is not None:
            raise DomainError("The patient is already discharged.", field="patient")
        row.discharged_at = timezone.now()
        row.save(update_fields=["discharged_at"])
        if row.user is not None and row.user.is_active:
            row.user.is_active = False
            row.user.save(update_fields=["is_active"])
        PhoneActivation.objects.filter(patient=row, revoked_at__isnull=True).update(
            revoked_at=row.discharged_at
        )
        record_event(
            action=Action.DISCHARGE,
            actor=actor,
            object_type="patient",
            object_id=row.pk,
            patient_id=row.pk,
            changes={"discharged_at": {"old": None, "new": row.discharged_at.isoformat()}},
            detail={"reason": reason.strip()},
        )
    patient.discharged_at = row.discharged_at
    return patient


def start_regimen(
    *,
    patient: Patient,
    regimen: dict[str, Decimal],
    actor: User | System,
    since: date | None = None,
) -> list[Prescription]:
    """Record the antihypertensive regimen a patient arrives with (what their clinician
    prescribed, entered at enrolment): one open prescription per drug, each a dose inside the
    drug's label. Only for a patient without one (later changes go through the moments a change
    takes effect, ``clinicians.decisions``).

    ``since``: the day the patient has been on this regimen since, as the prescriber says. The
    course rules count the minimum interval between changes from it; unknown, they count from
    now — the first titration then waits the full interval (fails towards caution)."""
    authz.authorize(actor, "patients.enrol")
    if since is not None and since > timezone.localdate():
        raise DomainError("The regimen cannot start in the future.", field="regimen_since")
    for medication, dose_mg in regimen.items():
        if medication not in FORMULARY:
            known = ", ".join(sorted(FORMULARY))
            raise DomainError(
                f"Unknown medication {medication!r}; expected one of {known}.", field="regimen"
            )
        problem = labelled_dose_problem(medication, dose_mg)
        if problem is not None or dose_mg <= 0:
            raise DomainError(
                f"{medication}: dose_mg {problem or 'must be above 0'}.", field="regimen"
            )
    now = timezone.now()
    started_at = (
        now
        if since is None
        else datetime.combine(since, time(12), tzinfo=ZoneInfo(patient.time_zone or "UTC"))
    )
    with transaction.atomic():
        if Prescription.objects.filter(patient=patient, ended_at__isnull=True).exists():
            raise DomainError("The patient already has a regimen.", field="regimen")
        rows = [
            Prescription.objects.create(
                patient=patient,
                medication=medication,
                dose_mg=dose_mg,
                started_at=started_at,
                source="enrolment",
            )
            for medication, dose_mg in sorted(regimen.items())
        ]
        for row in rows:
            record_event(
                action=Action.CREATE,
                actor=actor,
                object_type="prescription",
                object_id=row.pk,
                patient_id=patient.pk,
                changes={"dose_mg": {"old": None, "new": row.dose_mg}},
                detail={
                    "medication": row.medication,
                    "source": "enrolment",
                    "since": since.isoformat() if since else None,
                },
            )
    return rows


def current_regimen(patient: Patient) -> dict[str, Decimal]:
    return dict(
        Prescription.objects.filter(patient=patient, ended_at__isnull=True).values_list(
            "medication", "dose_mg"
        )
    )


def change_dose(
    *,
    patient: Patient,
    medication: str,
    dose_mg: Decimal,
    source: str,
    actor: User,
    prescribed_by: User | None = None,
) -> Prescription | None:
    """Close the open prescription of ``medication`` and open one at ``dose_mg`` (0 stops it).

    Called only by the moments a change takes effect (``clinicians.decisions``: acknowledgement,
    approval, order), each of which has authorized ``actor`` for that change first.
    ``prescribed_by``: the clinician who decided it (FHIR ``requester``); None for a patient's
    acknowledgement inside the clinician's bounds.

    The one write to a prescription, so the final check of every path to one lives here too:
    0 or a dose inside the drug's labelled range (``patients.course.labelled_dose_problem``)."""
    if medication not in FORMULARY:
        raise DomainError(f"Unknown medication {medication!r}.", field="medication")
    problem = labelled_dose_problem(medication, dose_mg)
    if problem is not None:
        raise DomainError(f"dose_mg {problem}.", field="dose_mg", code="bounds_violation")
    now = timezone.now()
    with transaction.atomic():
        current = (
            Prescription.objects.select_for_update()
            .filter(patient=patient, medication=medication, ended_at__isnull=True)
            .first()
        )
        old = current.dose_mg if current else None
        if current is not None:
            current.ended_at = now
            current.save(update_fields=["ended_at"])
        new = None
        if dose_mg > 0:
            new = Prescription.objects.create(
                patient=patient,
                medication=medication,
                dose_mg=dose_mg,
                started_at=now,
                source=source,
                prescribed_by=prescribed_by,
            )
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="prescription",
            object_id=new.pk if new else (current.pk if current else ""),
            patient_id=patient.pk,
            changes={"dose_mg": {"old": old, "new": dose_mg if dose_mg > 0 else None}},
            detail={"medication": medication, "source": source},
        )
    return new
