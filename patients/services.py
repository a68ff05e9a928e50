"""Writes on the patient record. Each runs in one transaction with its audit event."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.models import CareTeam, Role, User
from audit.models import Action
from audit.services import record_event
from core import authz
from core.authz import System
from core.errors import DomainError
from patients.course import labelled_dose_problem
from patients.formulary import FORMULARY
from patients.models import CareTeamAssignment, Patient, Prescription


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
    actor: User | System,
) -> Patient:
    authz.authorize(actor, "patients.enrol")
    if user is not None and user.role != Role.PATIENT:
        raise DomainError("Only a patient account can be linked to a patient record.", field="user")
    with transaction.atomic():
        patient = Patient(
            user=user,
            given_name=given_name,
            family_name=family_name,
            birth_year=birth_year,
            sex=sex,
            race=race,
            ethnicity=ethnicity,
        )
        patient.full_clean(exclude=["user"])
        patient.save()
        record_event(
            action=Action.CREATE,
            actor=actor,
            object_type="patient",
            object_id=patient.pk,
            patient_id=patient.pk,
        )
        if care_team is not None:
            assign_care_team(patient=patient, care_team=care_team, actor=actor)
    return patient


def assign_care_team(
    *, patient: Patient, care_team: CareTeam, actor: User | System
) -> CareTeamAssignment:
    authz.authorize(actor, "patients.enrol")
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


def current_regimen(patient: Patient) -> dict[str, Decimal]:
    return dict(
        Prescription.objects.filter(patient=patient, ended_at__isnull=True).values_list(
            "medication", "dose_mg"
        )
    )


def change_dose(
    *, patient: Patient, medication: str, dose_mg: Decimal, source: str, actor: User
) -> Prescription | None:
    """Close the open prescription of ``medication`` and open one at ``dose_mg`` (0 stops it).

    Called only by the moments a change takes effect (``clinicians.decisions``: acknowledgement,
    approval, order), each of which has authorized ``actor`` for that change first.

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
