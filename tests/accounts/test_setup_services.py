"""Setting up a clinic — accounts, care teams, enrolment — is an administrator's act (or the
system's, named), decided by the authorization controller inside the services themselves."""

from __future__ import annotations

import pytest

from accounts.models import CareTeam, User
from accounts.services import add_team_member, create_care_team, create_clinician, create_user
from audit.models import AuditEvent
from core.authz import System
from core.errors import Forbidden
from patients.models import Patient
from patients.services import assign_care_team, register_patient
from tests.factories import CareTeamFactory, UserFactory

pytestmark = pytest.mark.django_db

PATIENT = {
    "given_name": "Ada",
    "family_name": "Synthetic",
    "birth_year": 1961,
    "sex": "female",
    "race": "white",
    "ethnicity": "not_hispanic_or_latino",
}


@pytest.mark.parametrize("role", ["clinician", "patient", "auditor"])
def test_only_an_administrator_creates_accounts_teams_and_enrolments(role):
    someone = UserFactory(role=role)
    team = CareTeamFactory()
    clinician = UserFactory(role="clinician")
    attempts = [
        lambda: create_user(username="new-user", password="x" * 16, role="patient", actor=someone),
        lambda: create_clinician(
            username="new-clin", password="x" * 16, display_name="Dr New", actor=someone
        ),
        lambda: create_care_team(name="Rogue team", actor=someone),
        lambda: add_team_member(care_team=team, user=clinician, actor=someone),
        lambda: register_patient(**PATIENT, actor=someone),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden):
            attempt()
    assert not User.objects.filter(username__in=["new-user", "new-clin"]).exists()
    assert not CareTeam.objects.filter(name="Rogue team").exists()
    assert not Patient.objects.exists()
    assert not team.memberships.exists()


def test_nobody_is_not_the_system():
    with pytest.raises(Forbidden):
        create_care_team(name="Anonymous team", actor=None)
    assert not CareTeam.objects.filter(name="Anonymous team").exists()


def test_an_administrator_sets_up_a_team_and_enrols_a_patient_journalled_as_themself():
    admin = UserFactory(role="admin")
    team = create_care_team(name="East clinic", actor=admin)
    clinician = create_clinician(
        username="dr-east", password="x" * 16, display_name="Dr East", actor=admin
    )
    add_team_member(care_team=team, user=clinician, actor=admin)
    patient = register_patient(**PATIENT, actor=admin)
    assign_care_team(patient=patient, care_team=team, actor=admin)
    assert team.memberships.filter(user=clinician).exists()
    assert patient.assignments.filter(care_team=team).exists()
    by_admin = AuditEvent.objects.filter(actor_id=admin.pk, action="create")
    assert set(by_admin.values_list("object_type", flat=True)) >= {
        "care_team",
        "user",
        "care_team_membership",
        "patient",
        "care_team_assignment",
    }


def test_the_system_acts_under_its_own_name():
    team = create_care_team(name="Seeded clinic", actor=System("seed_demo"))
    event = AuditEvent.objects.get(object_type="care_team", object_id=str(team.pk))
    assert (event.actor_id, event.component) == (None, "seed_demo")
