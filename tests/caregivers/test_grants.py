"""A patient grants, changes and revokes a caregiver's access through the API; the person
accepts with their one-time link; refusals are 400 naming the field, journalled, nothing
changed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import OneTimeLink, Role, User
from audit.models import AuditEvent
from patients import caregivers
from patients.models import CaregiverGrant
from tests.caregivers.conftest import grant_to
from tests.conftest import PASSWORD, bearer_client
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

INVITE = {
    "name": "Sam Carer",
    "email": "sam@example.org",
    "scopes": ["readings", "alerts"],
    "live_alerts": True,
}


def _token_of(link: str) -> str:
    return link.rstrip("/").rsplit("/", 1)[1]


def test_a_grant_creates_the_caregiver_account_and_a_link_shown_once(patient_a, client):
    response = bearer_client(patient_a.user).post("/api/v1/me/caregivers/", INVITE, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["scopes"] == ["readings", "alerts"] and body["live_alerts"] is True
    assert body["status"] == "pending" and body["accepted_at"] is None
    assert "/care/welcome/" in body["activation_link"]
    token = _token_of(body["activation_link"])
    caregiver = User.objects.get(email="sam@example.org")
    assert caregiver.role == Role.CAREGIVER and not caregiver.has_usable_password()
    link = OneTimeLink.objects.get(user=caregiver)
    assert token not in link.token_sha256  # only the digest is stored
    assert len(link.token_sha256) == 64
    # Listing shows the grant, never the link again.
    listed = bearer_client(patient_a.user).get("/api/v1/me/caregivers/").json()
    assert [g["id"] for g in listed] == [body["id"]] and "activation_link" not in listed[0]
    created = AuditEvent.objects.get(object_type="caregiver_grant", action="create")
    assert created.patient_id == patient_a.pk and created.actor_id == patient_a.user_id

    # The person opens the link, chooses a password, skips the authenticator.
    page = client.get(f"/care/welcome/{token}/")
    assert page.status_code == 200 and patient_a.display_name in page.content.decode()
    done = client.post(
        f"/care/welcome/{token}/", {"password": PASSWORD, "password_again": PASSWORD, "code": ""}
    )
    assert done.status_code == 302 and done["Location"] == "/care/login/"
    grant = CaregiverGrant.objects.get(pk=body["id"])
    assert grant.accepted_at is not None and caregivers.status_of(grant) == "active"
    # The link works once.
    assert client.get(f"/care/welcome/{token}/").status_code == 410


def test_the_same_person_follows_a_second_patient_from_one_account(full_grant, team_a):
    other = PatientFactory(care_team=team_a)
    invitation = caregivers.grant_caregiver_access(
        patient=other, actor=other.user, name="Sam", email="SAM@example.org", scopes=["goals"]
    )
    assert invitation.grant.caregiver_id == full_grant.caregiver_id
    # An existing account confirms with its own password; a wrong one changes nothing.
    with pytest.raises(Exception, match="did not work"):
        caregivers.accept_invitation(token=invitation.token, password="wrong-password-123")
    invitation.grant.refresh_from_db()
    assert invitation.grant.accepted_at is None
    caregivers.accept_invitation(token=invitation.token, password=PASSWORD)
    following = bearer_client(full_grant.caregiver).get("/api/v1/me/following/").json()
    assert sorted(row["patient"] for row in following) == sorted([full_grant.patient_id, other.pk])
    assert {row["patient"]: row["scopes"] for row in following}[other.pk] == ["goals"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "{own}"}, "email"),
        ({"email": "{clinician}"}, "email"),
        ({"ends_at": "{past}"}, "ends_at"),
        ({"scopes": ["readings", "diary"]}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ["readings"], "live_alerts": True}, "live_alerts"),
        ({"starts_at": "{future}", "ends_at": "{soon}"}, "ends_at"),
    ],
)
def test_a_refused_grant_names_the_field_is_journalled_and_changes_nothing(
    patient_a, clinician_a, change, field
):
    patient_a.user.email = "me@example.org"
    patient_a.user.save(update_fields=["email"])
    clinician_a.email = "dr@example.org"
    clinician_a.save(update_fields=["email"])
    now = timezone.now()
    values = {
        "{own}": "me@example.org",
        "{clinician}": "DR@example.org",
        "{past}": (now - timedelta(hours=1)).isoformat(),
        "{future}": (now + timedelta(days=2)).isoformat(),
        "{soon}": (now + timedelta(days=1)).isoformat(),
    }
    body = {
        **INVITE,
        **{k: values.get(v, v) if isinstance(v, str) else v for k, v in change.items()},
    }
    users_before = User.objects.count()
    response = bearer_client(patient_a.user).post("/api/v1/me/caregivers/", body, format="json")
    assert response.status_code == 400, response.content
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert not CaregiverGrant.objects.exists() and not OneTimeLink.objects.exists()
    assert User.objects.count() == users_before
    refusal = AuditEvent.objects.filter(action="refused").latest("sequence")
    assert refusal.detail["attempted"] == "grant_caregiver_access"
    assert refusal.detail["field"] == field and refusal.patient_id == patient_a.pk


def test_only_a_patient_grants_and_only_for_themselves(clinician_a, caregiver):
    for user in (clinician_a, caregiver):
        response = bearer_client(user).post("/api/v1/me/caregivers/", INVITE, format="json")
        assert response.status_code == 403
    assert CaregiverGrant.objects.count() == 1


def test_a_patient_changes_scopes_and_cannot_touch_another_patients_grant(full_grant, patient_b):
    url = f"/api/v1/me/caregivers/{full_grant.pk}/"
    assert (
        bearer_client(patient_b.user).patch(url, {"scopes": ["goals"]}, format="json").status_code
        == 404
    )
    response = bearer_client(full_grant.patient.user).patch(
        url, {"scopes": ["goals"]}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["scopes"] == ["goals"]
    assert response.json()["live_alerts"] is False  # alerts dropped, their live push with them
    event = AuditEvent.objects.filter(object_type="caregiver_grant", action="update").latest(
        "sequence"
    )
    assert event.changes["scopes"]["old"] == [
        "readings",
        "alerts",
        "medications",
        "goals",
        "messages",
    ]
    assert event.changes["scopes"]["new"] == ["goals"]


def test_revoking_ends_access_at_once_and_twice_is_a_conflict(full_grant):
    patient_client = bearer_client(full_grant.patient.user)
    caregiver_client = bearer_client(full_grant.caregiver)
    readings = f"/api/v1/patients/{full_grant.patient_id}/readings/"
    assert caregiver_client.get(readings).status_code == 200
    url = f"/api/v1/me/caregivers/{full_grant.pk}/revoke/"
    response = patient_client.post(url, {"reason": "moved away"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    assert caregiver_client.get(readings).status_code == 404
    assert patient_client.post(url, {}, format="json").status_code == 409
    # API.md's path is the same view.
    assert (
        patient_client.post(f"/api/v1/caregiver-grants/{full_grant.pk}/revoke/").status_code == 409
    )


def test_an_expired_or_not_yet_started_grant_reads_nothing(patient_a, patient_b):
    now = timezone.now()
    later = grant_to(
        patient_a, email="later@example.org", scopes=["readings"], starts_at=now + timedelta(days=1)
    )
    assert caregivers.status_of(later) == "scheduled"
    client = bearer_client(later.caregiver)
    assert client.get(f"/api/v1/patients/{patient_a.pk}/readings/").status_code == 404
    short = grant_to(
        patient_b, email="short@example.org", scopes=["readings"], ends_at=now + timedelta(hours=1)
    )
    CaregiverGrant.objects.filter(pk=short.pk).update(ends_at=now - timedelta(seconds=1))
    client = bearer_client(short.caregiver)
    assert client.get(f"/api/v1/patients/{patient_b.pk}/readings/").status_code == 404
    assert client.get("/api/v1/patients/").json()["results"] == []


def test_a_grant_not_yet_accepted_reads_nothing(patient_a):
    invitation = caregivers.grant_caregiver_access(
        patient=patient_a,
        actor=patient_a.user,
        name="Kim",
        email="kim@example.org",
        scopes=["readings"],
    )
    kim = invitation.grant.caregiver
    kim.set_password(PASSWORD)  # as if they had a password already, without the link
    kim.save()
    client = bearer_client(kim)
    assert client.get(f"/api/v1/patients/{patient_a.pk}/readings/").status_code == 404


def test_the_database_refuses_live_alerts_without_the_alerts_scope(full_grant):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        CaregiverGrant.objects.filter(pk=full_grant.pk).update(shares_alerts=False)
