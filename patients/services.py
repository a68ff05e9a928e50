"""Writes on the patient record. Each runs in one transaction with its audit event."""

from __future__ import annotations

from django.db import transaction

from accounts.models import CareTeam, Role, User
from audit.services import record_event
from core.errors import DomainError
from patients.models import CareTeamAssignment, Patient


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
    actor: User | None = None,
) -> Patient:
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
            action="create",
            actor=actor,
            object_type="patient",
            object_id=patient.pk,
            patient_id=patient.pk,
            component="" if actor else "patients.register_patient",
        )
        if care_team is not None:
            assign_care_team(patient=patient, care_team=care_team, actor=actor)
    return patient


def assign_care_team(
    *, patient: Patient, care_team: CareTeam, actor: User | None = None
) -> CareTeamAssignment:
    with transaction.atomic():
        assignment = CareTeamAssignment.objects.create(patient=patient, care_team=care_team)
        record_event(
            action="create",
            actor=actor,
            object_type="care_team_assignment",
            object_id=assignment.pk,
            patient_id=patient.pk,
            detail={"care_team": care_team.pk},
            component="" if actor else "patients.assign_care_team",
        )
    return assignment
