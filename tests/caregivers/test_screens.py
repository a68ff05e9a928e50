"""The patient's screens (``/api/v1/patients/{id}/<screen>/``) open to a caregiver exactly as
far as the grant covers what each screen shows; each read journalled with the grant."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from tests.caregivers.conftest import grant_to
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db

SCREENS = ("today", "medications", "decisions", "goals-and-visits", "messages")


@pytest.mark.parametrize(
    ("scopes", "opened"),
    [
        (["readings"], set()),
        (["readings", "alerts"], {"today"}),
        (["medications"], {"medications", "decisions"}),
        (["goals"], {"goals-and-visits"}),
        (["messages"], {"messages"}),
    ],
)
def test_a_caregiver_opens_the_screens_the_grant_covers(patient_a, patient_b, scopes, opened):
    grant = grant_to(patient_a, email="screens@example.org", scopes=scopes)
    client = bearer_client(grant.caregiver)
    for screen in SCREENS:
        response = client.get(f"/api/v1/patients/{patient_a.pk}/{screen}/")
        assert response.status_code == (200 if screen in opened else 403), (
            screen,
            response.content,
        )
        # Another patient does not exist for them; "me" screens are a patient's own.
        assert client.get(f"/api/v1/patients/{patient_b.pk}/{screen}/").status_code == 404
        assert client.get(f"/api/v1/me/{screen}/").status_code == 403
    reads = AuditEvent.objects.filter(
        action="read", actor_id=grant.caregiver_id, object_type="patient_screen"
    )
    assert {event.detail["screen"] for event in reads} == {s.replace("-", "_") for s in opened}
    assert {event.detail["grant"] for event in reads} <= {grant.pk}
