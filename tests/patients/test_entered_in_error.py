"""A reading marked *entered in error* (issue #14): by the care team, with a reason, once; it
leaves the features, the figures and the alert rules — an alert only it raised is resolved — and
stays in the record (API, FHIR, the chart's table) and in the journal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from clinicians.models import Alert, AlertStatus
from clinicians.safety_path import ENTERED_IN_ERROR_NOTE, check_safety
from models_ml.features import observe
from patients.models import Reading
from patients.readings import mark_entered_in_error
from tests.clinicians.test_portal import portal_client
from tests.conftest import bearer_client
from tests.factories import ReadingFactory

pytestmark = pytest.mark.django_db


def url(reading: Reading) -> str:
    return f"/api/v1/patients/{reading.patient_id}/readings/{reading.pk}/entered-in-error/"


def mark(client, reading: Reading, body: dict, capture):
    with capture(execute=True):
        return client.post(url(reading), body, format="json")


@pytest.fixture
def crisis(patient_a):
    """Two readings of 192/126 ten minutes apart: a confirmed crisis, and its open alert."""
    now = timezone.now()
    readings = [
        ReadingFactory(
            patient=patient_a,
            measured_at=now - timedelta(minutes=minutes),
            systolic_mmhg=192,
            diastolic_mmhg=126,
        )
        for minutes in (20, 10)
    ]
    ReadingFactory(patient=patient_a, measured_at=now - timedelta(hours=3))  # 124/76, normal
    [alert] = check_safety(patient_a.pk)
    assert alert.kind == "hypertensive_crisis"
    return readings, alert


# --- the API ------------------------------------------------------------------------------------


def test_a_clinician_of_the_team_marks_a_reading_and_it_stays_in_the_record(
    clinician_a, patient_a, django_capture_on_commit_callbacks
):
    reading = ReadingFactory(patient=patient_a)
    client = bearer_client(clinician_a)
    response = mark(
        client, reading, {"reason": "  Cuff on the wrong arm  "}, django_capture_on_commit_callbacks
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == reading.pk and body["entered_in_error_reason"] == "Cuff on the wrong arm"
    assert body["entered_in_error_at"] is not None
    reading.refresh_from_db()
    assert reading.entered_in_error_by == clinician_a
    # Still listed (with the mark) for the care team and for the patient.
    for reader in (client, bearer_client(patient_a.user)):
        listed = reader.get(f"/api/v1/patients/{patient_a.pk}/readings/").json()["results"]
        assert [(r["id"], r["entered_in_error_reason"]) for r in listed] == [
            (reading.pk, "Cuff on the wrong arm")
        ]
    # FHIR says it as FHIR does.
    observation = client.get(
        f"/fhir/Observation/{reading.pk}", HTTP_ACCEPT="application/fhir+json"
    ).json()
    assert observation["status"] == "entered-in-error"
    assert Reading.objects.in_use().filter(pk=reading.pk).count() == 0


def test_the_reason_is_required_and_the_400_names_it(
    clinician_a, patient_a, django_capture_on_commit_callbacks
):
    reading = ReadingFactory(patient=patient_a)
    client = bearer_client(clinician_a)
    for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 301}):
        response = mark(client, reading, body, django_capture_on_commit_callbacks)
        assert response.status_code == 400, (body, response.content)
        assert [e["field"] for e in response.json()["errors"]] == ["reason"], body
    unknown = mark(
        client, reading, {"reason": "ok", "resaon": "x"}, django_capture_on_commit_callbacks
    )
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["field"] == "resaon"
    reading.refresh_from_db()
    assert reading.entered_in_error_at is None


def test_outside_the_care_team_the_reading_does_not_exist(
    clinician_b, patient_a, patient_b, django_capture_on_commit_callbacks
):
    reading = ReadingFactory(patient=patient_a)
    other_team = bearer_client(clinician_b)
    response = mark(other_team, reading, {"reason": "wrong"}, django_capture_on_commit_callbacks)
    assert response.status_code == 404
    # Nor through a patient of their own team: the reading must be that patient's.
    foreign = f"/api/v1/patients/{patient_b.pk}/readings/{reading.pk}/entered-in-error/"
    assert other_team.post(foreign, {"reason": "wrong"}, format="json").status_code == 404
    # The patient reads their readings but does not mark them (403, the rule's words).
    own = mark(
        bearer_client(patient_a.user),
        reading,
        {"reason": "wrong"},
        django_capture_on_commit_callbacks,
    )
    assert own.status_code == 403
    assert "care team" in own.json()["errors"][0]["message"]
    reading.refresh_from_db()
    assert reading.entered_in_error_at is None


def test_marking_twice_is_refused_and_the_first_mark_stands(
    clinician_a, patient_a, team_a, django_capture_on_commit_callbacks
):
    from tests.factories import ClinicianFactory

    reading = ReadingFactory(patient=patient_a)
    first = mark(
        bearer_client(clinician_a),
        reading,
        {"reason": "Wrong arm"},
        django_capture_on_commit_callbacks,
    )
    assert first.status_code == 200
    colleague = ClinicianFactory(care_team=team_a)
    again = mark(
        bearer_client(colleague),
        reading,
        {"reason": "Other reason"},
        django_capture_on_commit_callbacks,
    )
    assert again.status_code == 409
    error = again.json()["errors"][0]
    assert error["code"] == "already_entered_in_error" and "Wrong arm" in error["message"]
    reading.refresh_from_db()
    assert (reading.entered_in_error_by, reading.entered_in_error_reason) == (
        clinician_a,
        "Wrong arm",
    )


# --- the journal, the features, the alerts ------------------------------------------------------


def test_the_mark_is_journalled_with_old_and_new_values(
    clinician_a, patient_a, django_capture_on_commit_callbacks
):
    reading = ReadingFactory(patient=patient_a, systolic_mmhg=192, diastolic_mmhg=126)
    with django_capture_on_commit_callbacks(execute=True):
        mark_entered_in_error(reading=reading, reason="Someone else's reading", actor=clinician_a)
    event = AuditEvent.objects.get(action="entered_in_error")
    assert (event.actor_id, event.object_type, event.object_id, event.patient_id) == (
        clinician_a.pk,
        "reading",
        str(reading.pk),
        patient_a.pk,
    )
    assert event.changes["entered_in_error_reason"] == {"old": "", "new": "Someone else's reading"}
    assert event.changes["entered_in_error_at"]["old"] is None
    assert event.payload["detail"]["systolic_mmhg"] == 192
    # A refusal is journalled too.
    with pytest.raises(Exception, match="already marked"):
        mark_entered_in_error(reading=reading, reason="again", actor=clinician_a)
    refused = AuditEvent.objects.filter(action="refused").latest("sequence")
    assert refused.payload["detail"]["attempted"] == "mark_entered_in_error"


def test_a_reading_entered_in_error_leaves_the_features(
    clinician_a, patient_a, django_capture_on_commit_callbacks
):
    now = timezone.now()
    for hours in (30, 20, 10):
        ReadingFactory(patient=patient_a, measured_at=now - timedelta(hours=hours))  # 124/76
    wrong = ReadingFactory(
        patient=patient_a,
        measured_at=now - timedelta(hours=1),
        systolic_mmhg=204,
        diastolic_mmhg=116,
    )
    before = observe(patient_a, now)
    assert before.bp_count_7d == 4 and before.features["mean_systolic_7d"] == 144.0
    with django_capture_on_commit_callbacks(execute=True):
        mark_entered_in_error(reading=wrong, reason="Cuff slipped", actor=clinician_a)
    after = observe(patient_a, now)
    assert after.bp_count_7d == 3 and after.features["mean_systolic_7d"] == 124.0
    assert after.features["sd_systolic_7d"] == 0.0
    assert after.last_bp_at == now - timedelta(hours=10)


def test_an_alert_raised_only_by_readings_entered_in_error_is_resolved(
    crisis, clinician_a, django_capture_on_commit_callbacks
):
    (first, second), alert = crisis
    with django_capture_on_commit_callbacks(execute=True):
        mark_entered_in_error(reading=first, reason="Cuff over a coat", actor=clinician_a)
    alert.refresh_from_db()
    # The other crisis reading still stands behind it: open, for a clinician.
    assert alert.status == AlertStatus.OPEN
    with django_capture_on_commit_callbacks(execute=True):
        mark_entered_in_error(reading=second, reason="Same cuff, repeated", actor=clinician_a)
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
    assert alert.resolution_note == ENTERED_IN_ERROR_NOTE
    # No new crisis from what is left (one normal reading), and the resolution is journalled.
    assert not Alert.objects.filter(patient=alert.patient).exclude(status="resolved").exists()
    resolved = AuditEvent.objects.filter(object_type="alert", object_id=str(alert.pk)).latest(
        "sequence"
    )
    assert resolved.changes["status"]["new"] == "resolved"
    # Both readings are still in the record.
    assert Reading.objects.filter(pk__in=[first.pk, second.pk]).count() == 2


def test_other_readings_that_still_show_a_crisis_raise_it_again_with_their_evidence(
    crisis, clinician_a, patient_a, django_capture_on_commit_callbacks
):
    (first, second), alert = crisis
    now = timezone.now()
    for minutes, systolic in ((5, 188), (2, 186)):
        ReadingFactory(
            patient=patient_a,
            measured_at=now - timedelta(minutes=minutes),
            systolic_mmhg=systolic,
            diastolic_mmhg=118,
        )
    with django_capture_on_commit_callbacks(execute=True):
        mark_entered_in_error(reading=first, reason="Wrong arm", actor=clinician_a)
        mark_entered_in_error(reading=second, reason="Wrong arm", actor=clinician_a)
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
    [again] = Alert.objects.filter(patient=patient_a, kind="hypertensive_crisis").exclude(
        status="resolved"
    )
    assert [r["systolic"] for r in again.evidence["readings"]] == [188, 186]


def test_a_re_upload_of_the_same_reading_is_still_a_duplicate(
    clinician_a, patient_a, django_capture_on_commit_callbacks
):
    item = {
        "client_id": "watch-1-000777",
        "type": "blood_pressure",
        "systolic": 150,
        "diastolic": 95,
        "unit": "mm[Hg]",
        "measured_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        "device_id": "watch-1",
    }
    phone = bearer_client(patient_a.user)
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            phone.post("/api/v1/readings/", {"readings": [item]}, format="json").status_code == 201
        )
    reading = Reading.objects.get(client_id="watch-1-000777")
    with django_capture_on_commit_callbacks(execute=True):
        mark_entered_in_error(reading=reading, reason="Not the patient's", actor=clinician_a)
        again = phone.post("/api/v1/readings/", {"readings": [item]}, format="json").json()
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    assert Reading.objects.filter(patient=patient_a).count() == 1


# --- the portal ---------------------------------------------------------------------------------


def test_portal_form_refuses_without_a_reason_beside_the_reading_and_marks_with_one(
    clinician_a, patient_a, django_capture_on_commit_callbacks
):
    reading = ReadingFactory(patient=patient_a, systolic_mmhg=171, diastolic_mmhg=99)
    client = portal_client(clinician_a)
    path = f"/portal/patients/{patient_a.pk}/readings/{reading.pk}/entered-in-error/?days=7"
    refused = client.post(path, {"reason": "  "})
    assert refused.status_code == 400
    page = refused.content.decode()
    row = page[page.index(f'id="reading-{reading.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "A reason is required" in row and 'aria-invalid="true"' in row and " open>" in row
    assert "last 7 days" in page
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(path, {"reason": "Measured through a sleeve"})
    assert done.status_code == 302
    assert done["Location"].endswith(
        f"/portal/patients/{patient_a.pk}/?days=7&type=blood_pressure#reading-{reading.pk}"
    )
    chart = client.get(done["Location"]).content.decode()
    assert "<del>171/99 mmHg</del>" in chart and "Measured through a sleeve" in chart
    assert "is marked entered in error" in chart
    # Twice: said as a message on the chart, the first mark stands.
    again = client.post(path, {"reason": "other"}, follow=True).content.decode()
    assert "already marked entered in error" in again


def test_portal_outside_the_care_team_is_404(clinician_b, patient_a):
    reading = ReadingFactory(patient=patient_a)
    response = portal_client(clinician_b).post(
        f"/portal/patients/{patient_a.pk}/readings/{reading.pk}/entered-in-error/",
        {"reason": "wrong"},
    )
    assert response.status_code == 404
    reading.refresh_from_db()
    assert reading.entered_in_error_at is None
