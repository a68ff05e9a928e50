"""Each role's reach over patient records, through the public API (API.md, DESIGN.md)."""

import pytest

from core.authz import can
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db


def _ids(response) -> set[int]:
    return {row["id"] for row in response.json()["results"]}


def test_clinician_lists_only_patients_of_their_care_teams(clinician_a, patient_a, patient_b):
    response = bearer_client(clinician_a).get("/api/v1/patients/")
    assert response.status_code == 200
    assert _ids(response) == {patient_a.pk}


def test_clinician_of_team_a_gets_404_for_team_b_patient(clinician_a, patient_a, patient_b):
    client = bearer_client(clinician_a)
    assert client.get(f"/api/v1/patients/{patient_a.pk}/").status_code == 200
    response = client.get(f"/api/v1/patients/{patient_b.pk}/")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"


def test_unknown_patient_and_forbidden_patient_answer_identically(clinician_a, patient_b):
    client = bearer_client(clinician_a)
    forbidden = client.get(f"/api/v1/patients/{patient_b.pk}/")
    missing = client.get("/api/v1/patients/999999/")
    assert forbidden.status_code == missing.status_code == 404
    assert forbidden.json() == missing.json()


def test_patient_sees_only_themselves(patient_a, patient_b):
    client = bearer_client(patient_a.user)
    assert _ids(client.get("/api/v1/patients/")) == {patient_a.pk}
    assert client.get(f"/api/v1/patients/{patient_b.pk}/").status_code == 404
    body = client.get(f"/api/v1/patients/{patient_a.pk}/").json()
    assert body["birth_year"] == patient_a.birth_year
    assert body["care_team"] == [{"id": patient_a.care_teams.get().pk, "name": "Team A"}]


def test_clinician_in_two_teams_sees_both_panels_once(clinician_a, team_b, patient_a, patient_b):
    from accounts.models import CareTeamMembership

    CareTeamMembership.objects.create(care_team=team_b, user=clinician_a)
    response = bearer_client(clinician_a).get("/api/v1/patients/")
    assert _ids(response) == {patient_a.pk, patient_b.pk}
    assert response.json()["count"] == 2


def test_auditor_and_admin_see_no_patients(auditor, admin_user, patient_a):
    for user in (auditor, admin_user):
        client = bearer_client(user)
        assert client.get("/api/v1/patients/").json()["results"] == []
        assert client.get(f"/api/v1/patients/{patient_a.pk}/").status_code == 404


def test_auditor_cannot_read_readings(auditor, patient_a):
    response = bearer_client(auditor).get(f"/api/v1/patients/{patient_a.pk}/readings/")
    assert response.status_code == 404


def test_care_team_clinician_and_the_patient_read_readings(clinician_a, clinician_b, patient_a):
    assert (
        bearer_client(clinician_a).get(f"/api/v1/patients/{patient_a.pk}/readings/").status_code
        == 200
    )
    assert (
        bearer_client(patient_a.user).get(f"/api/v1/patients/{patient_a.pk}/readings/").status_code
        == 200
    )
    assert (
        bearer_client(clinician_b).get(f"/api/v1/patients/{patient_a.pk}/readings/").status_code
        == 404
    )


def test_anonymous_caller_is_refused_with_401(api_client, patient_a):
    response = api_client.get("/api/v1/patients/")
    assert response.status_code == 401
    assert response.json()["errors"][0]["field"] is None


def test_named_actions_deny_what_no_rule_allows(clinician_a, patient_a, patient_b, auditor):
    assert can(clinician_a, "patients.change_care_plan", patient_a)
    assert not can(clinician_a, "patients.change_care_plan", patient_b)
    assert not can(patient_a.user, "patients.change_care_plan", patient_a)
    assert can(patient_a.user, "patients.submit_readings", patient_a)
    assert not can(clinician_a, "patients.submit_readings", patient_a)
    assert not can(auditor, "patients.view_readings", patient_a)
    assert can(auditor, "audit.view_trail")
    assert not can(clinician_a, "audit.view_trail")


def test_inactive_clinician_reaches_nobody(clinician_a, patient_a):
    from patients.selectors import patients_visible_to

    clinician_a.is_active = False
    clinician_a.save()
    assert not patients_visible_to(clinician_a).exists()
    assert not can(clinician_a, "patients.view_patient", patient_a)
