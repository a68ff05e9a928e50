"""Two gaps the authorization controller closed (issue 12): the portal's alert handling obeys the
``clinicians.handle_alert`` rule as the API does, and reading a patient's alert thresholds is
journalled like every other read of patient data."""

from __future__ import annotations

import pytest
import rules
from django.utils import timezone

from audit.models import AuditEvent
from clinicians.models import Alert, AlertStatus
from tests.clinicians.test_portal import portal_client
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def handle_alert_refused():
    """A clinician of the care team for whom the rule says no (as emergency access or a
    read-only role will be): the named rule is replaced for the test, then restored."""
    name = "clinicians.handle_alert"
    before = rules.permissions.permissions[name]
    rules.set_perm(name, rules.always_deny)
    yield
    rules.set_perm(name, before)


def _open_alert(patient) -> Alert:
    return Alert.objects.create(
        patient=patient, kind="hypotension", message="low", opened_at=timezone.now()
    )


def test_portal_alert_acknowledge_obeys_the_handle_alert_rule(
    clinician_a, patient_a, handle_alert_refused
):
    alert = _open_alert(patient_a)
    assert (
        bearer_client(clinician_a).post(f"/api/v1/alerts/{alert.pk}/acknowledge/").status_code
        == 403
    )
    portal = portal_client(clinician_a)
    page = portal.post(
        f"/portal/alerts/{alert.pk}/acknowledge/", {"next": "/portal/"}, follow=True
    ).content.decode()
    resolved = portal.post(f"/portal/alerts/{alert.pk}/acknowledge/", {"resolve": "1"})
    alert.refresh_from_db()
    assert resolved.status_code == 302
    assert alert.status == AlertStatus.OPEN and alert.acknowledged_by is None
    assert "handles its alerts" in page  # the rule's refusal, as the API words it
    assert not AuditEvent.objects.filter(object_type="alert", action="update").exists()


def test_reading_alert_thresholds_is_journalled(clinician_a, patient_a):
    url = f"/api/v1/patients/{patient_a.pk}/alert-thresholds/"
    assert bearer_client(clinician_a).get(url).status_code == 200
    event = AuditEvent.objects.filter(action="read", object_type="alert_thresholds").last()
    assert event is not None and event.actor_id == clinician_a.pk
    assert event.patient_ids == [patient_a.pk]


def test_patient_reading_their_own_alert_thresholds_is_not_journalled(patient_a):
    url = f"/api/v1/patients/{patient_a.pk}/alert-thresholds/"
    assert bearer_client(patient_a.user).get(url).status_code == 200
    assert not AuditEvent.objects.filter(action="read").exists()
