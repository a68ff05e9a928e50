"""``_history`` and ``vread`` of past versions for Patient and MedicationRequest (issue 15,
sync): every content a resource had, newest first, with the ETag a read gave it while it was
current; changes made by any path (a service, a queryset ``update()``) are in it; paging by
cursor is stable while versions arrive; reach and journal exactly as reads."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from clinicians import enrolment
from clinicians.decisions import decide_recommendation
from clinicians.models import Recommendation, RecommendationStatus, Tier
from patients.identifiers import Identifier
from patients.models import Prescription
from tests.clinicians.test_oversight_api import make_recommendation
from tests.conftest import PASSWORD
from tests.factories import PatientFactory
from tests.fhir.conftest import FHIR_JSON, FhirClient

pytestmark = pytest.mark.django_db
EPIC = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14"


def history(client: FhirClient, path: str, **params) -> dict:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = client.get(f"/fhir/{path}/_history" + (f"?{query}" if query else ""))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["type"] == "history"
    return body


def entries(bundle: dict) -> list[dict]:
    return bundle.get("entry", [])


def put_identifier(client: FhirClient, patient, value: str) -> dict:
    served = client.get(f"/fhir/Patient/{patient.pk}").json()
    own = [i for i in served["identifier"] if i["system"].startswith("urn:clinaiops:")]
    body = served | {"identifier": own + ([{"system": EPIC, "value": value}] if value else [])}
    response = client.client.put(
        f"/fhir/Patient/{patient.pk}", data=json.dumps(body), content_type=FHIR_JSON
    )
    assert response.status_code == 200, response.content
    return response.json()


# --- Patient -------------------------------------------------------------------------------------


def test_a_patients_history_has_each_content_newest_first_with_the_etags_reads_gave(
    clinician_a, patient_a
):
    client = FhirClient(clinician_a)
    first = client.get(f"/fhir/Patient/{patient_a.pk}").json()
    second = put_identifier(client, patient_a, "E1")
    third = put_identifier(client, patient_a, "E2")

    bundle = history(client, f"Patient/{patient_a.pk}")

    assert bundle["total"] == 3
    versions = [entry["resource"] for entry in entries(bundle)]
    assert versions == [third, second, first]
    assert [e["request"] for e in entries(bundle)] == [
        {"method": "PUT", "url": f"Patient/{patient_a.pk}"},
        {"method": "PUT", "url": f"Patient/{patient_a.pk}"},
        {"method": "POST", "url": "Patient"},
    ]
    assert entries(bundle)[2]["response"]["status"] == "201 Created"
    assert entries(bundle)[0]["response"]["etag"] == f'W/"{third["meta"]["versionId"]}"'
    old = client.get(f"/fhir/Patient/{patient_a.pk}/_history/{second['meta']['versionId']}")
    assert old.status_code == 200 and old.json() == second
    assert old["ETag"] == f'W/"{second["meta"]["versionId"]}"'


def test_identifiers_entered_at_enrolment_are_part_of_the_first_version(
    admin_user, team_a, clinician_a
):
    patient = enrolment.enrol_patient(
        enrolment.Enrolment(
            given_name="Ana",
            family_name="Lima",
            birth_date=timezone.localdate() - timedelta(days=365 * 60),
            sex="female",
            care_team=team_a,
            time_zone="UTC",
            mrn="M-1",
            identifiers=[Identifier(EPIC, "A1")],
        ),
        actor=admin_user,
    )
    client = FhirClient(clinician_a)

    bundle = history(client, f"Patient/{patient.pk}")

    [only] = entries(bundle)
    assert only["resource"] == client.get(f"/fhir/Patient/{patient.pk}").json()
    assert {"system": EPIC, "value": "A1"} in only["resource"]["identifier"]
    assert only["request"]["method"] == "POST"


def test_a_change_that_does_not_show_in_the_resource_is_not_a_version(
    admin_user, clinician_a, patient_a
):
    client = FhirClient(clinician_a)
    put_identifier(client, patient_a, "E1")
    enrolment.discharge(patient=patient_a, reason="moved away", actor=admin_user)
    current = client.get(f"/fhir/Patient/{patient_a.pk}").json()

    bundle = history(client, f"Patient/{patient_a.pk}")

    assert entries(bundle)[0]["resource"] == current
    assert len(entries(bundle)) == 2


def test_vread_of_a_version_the_patient_never_had_is_404_and_journals_nothing(
    clinician_a, patient_a
):
    client = FhirClient(clinician_a)
    before = AuditEvent.objects.filter(action="read").count()

    response = client.get(f"/fhir/Patient/{patient_a.pk}/_history/0123456789abcdef")

    assert response.status_code == 404
    assert AuditEvent.objects.filter(action="read").count() == before


def test_patient_type_history_pages_newest_first_and_honours_since(clinician_a, team_a, settings):
    settings.FHIR_SYNC_SETTLE_SECONDS = 0
    client = FhirClient(clinician_a)
    patients = [PatientFactory(care_team=team_a) for _ in range(3)]
    for patient in patients:
        put_identifier(client, patient, f"E{patient.pk}")

    seen: list[tuple[str, str]] = []
    url = "/fhir/Patient/_history?_count=2"
    while url:
        page = client.get(url).json()
        assert len(page.get("entry", [])) <= 2
        seen += [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in entries(page)]
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        url = following[0].removeprefix("http://testserver") if following else ""
    assert len(seen) == len(set(seen)) == 6  # each patient: as created, then identified
    stamps = [
        client.get(f"/fhir/Patient/{pid}/_history/{vid}").json()["meta"]["lastUpdated"]
        for pid, vid in seen
    ]
    assert stamps == sorted(stamps, reverse=True)
    since = stamps[2]
    recent = history(client, "Patient", _since=since.replace("+", "%2B"))
    assert [
        (e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in entries(recent)
    ] == seen[:3]


# --- MedicationRequest -------------------------------------------------------------------------


def test_a_decided_proposal_has_two_versions_and_the_first_is_vread(clinician_a, patient_a):
    rec = make_recommendation(patient_a, tier=Tier.CLINICIAN)
    client = FhirClient(clinician_a)
    as_created = client.get(f"/fhir/MedicationRequest/rec-{rec.pk}").json()
    decide_recommendation(
        recommendation=rec, actor=clinician_a, action="reject", reason="Not now", password=PASSWORD
    )
    decided = client.get(f"/fhir/MedicationRequest/rec-{rec.pk}").json()

    bundle = history(client, f"MedicationRequest/rec-{rec.pk}")

    assert [e["resource"] for e in entries(bundle)] == [decided, as_created]
    assert [e["resource"]["status"] for e in entries(bundle)] == ["cancelled", "draft"]
    old = client.get(
        f"/fhir/MedicationRequest/rec-{rec.pk}/_history/{as_created['meta']['versionId']}"
    )
    assert old.status_code == 200 and old.json() == as_created


def test_changes_made_by_a_queryset_update_are_in_the_history(clinician_a, patient_a):
    rec = make_recommendation(patient_a, tier=Tier.PATIENT)
    order = Prescription.objects.get(patient=patient_a, ended_at__isnull=True)
    client = FhirClient(clinician_a)
    rec_before = client.get(f"/fhir/MedicationRequest/rec-{rec.pk}").json()
    order_before = client.get(f"/fhir/MedicationRequest/rx-{order.pk}").json()
    now = timezone.now()
    Recommendation.objects.filter(pk=rec.pk).update(
        status=RecommendationStatus.SUPERSEDED, decided_at=now
    )
    Prescription.objects.filter(pk=order.pk).update(ended_at=now)

    rec_history = history(client, f"MedicationRequest/rec-{rec.pk}")
    order_history = history(client, f"MedicationRequest/rx-{order.pk}")

    assert [e["resource"]["status"] for e in entries(rec_history)] == ["cancelled", "active"]
    assert entries(rec_history)[1]["resource"] == rec_before
    assert [e["resource"]["status"] for e in entries(order_history)] == ["stopped", "active"]
    assert entries(order_history)[1]["resource"] == order_before


def test_medication_type_history_is_stable_while_versions_arrive(clinician_a, patient_a):
    client = FhirClient(clinician_a)
    rec = make_recommendation(patient_a, tier=Tier.CLINICIAN)  # and its order (the regimen)
    first = history(client, "MedicationRequest", _count=1)
    assert len(entries(first)) == 1
    decide_recommendation(
        recommendation=rec, actor=clinician_a, action="reject", reason="Not now", password=PASSWORD
    )
    following = [link["url"] for link in first["link"] if link["relation"] == "next"]
    second = client.get(following[0].removeprefix("http://testserver")).json()

    shown = [e["resource"]["id"] for e in entries(first) + entries(second)]
    assert sorted(shown) == sorted(
        ["rec-" + str(rec.pk), "rx-" + str(Prescription.objects.get(patient=patient_a).pk)]
    )
    assert all(e["resource"]["status"] != "cancelled" for e in entries(second))
    later = history(client, "MedicationRequest", _since=first["meta"]["lastUpdated"])
    assert [e["resource"]["status"] for e in entries(later)] == []  # within the settling time
    everything = history(client, "MedicationRequest")
    assert entries(everything)[0]["resource"]["id"] == f"rec-{rec.pk}"
    assert entries(everything)[0]["resource"]["status"] == "cancelled"


def test_a_cursor_of_a_history_is_refused_by_a_search(clinician_a, patient_a):
    client = FhirClient(clinician_a)
    make_recommendation(patient_a)
    page = history(client, "MedicationRequest", _count=1)
    cursor = parse_qs(
        urlsplit(next(link["url"] for link in page["link"] if link["relation"] == "next")).query
    )["_cursor"][0]

    response = client.get(f"/fhir/MedicationRequest?_cursor={cursor}")

    assert response.status_code == 400


# --- reach and journal -------------------------------------------------------------------------


def test_history_reaches_what_reads_reach_and_is_journalled_as_a_read(
    clinician_a, clinician_b, auditor, patient_a
):
    rec = make_recommendation(patient_a)

    assert FhirClient(clinician_b).get(f"/fhir/Patient/{patient_a.pk}/_history").status_code == 404
    assert (
        FhirClient(clinician_b).get(f"/fhir/MedicationRequest/rec-{rec.pk}/_history").status_code
        == 404
    )
    assert not entries(history(FhirClient(clinician_b), "Patient"))
    assert not entries(history(FhirClient(auditor), "MedicationRequest"))
    own = history(FhirClient(patient_a.user), f"Patient/{patient_a.pk}")
    assert len(entries(own)) == 1

    history(FhirClient(clinician_a), f"Patient/{patient_a.pk}")

    event = AuditEvent.objects.filter(action="read", actor_id=clinician_a.pk).latest("sequence")
    assert event.detail["interaction"] == "history-instance"
    assert event.patient_ids == [patient_a.pk]


def test_history_of_a_type_without_one_is_405(clinician_a):
    response = FhirClient(clinician_a).get("/fhir/Observation/_history")

    assert response.status_code == 405


def test_a_bad_since_is_400_at_the_parameter(clinician_a):
    response = FhirClient(clinician_a).get("/fhir/Patient/_history?_since=yesterday")

    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["http._since"]


@pytest.mark.parametrize("method", ["put", "post", "delete", "patch"])
def test_writes_to_a_version_are_405_with_allow_not_a_crash(clinician_a, patient_a, method):
    """A version is read only: a write to ``…/_history/{vid}`` is refused, not a 500."""
    client = FhirClient(clinician_a)
    version = client.get(f"/fhir/Patient/{patient_a.pk}").json()["meta"]["versionId"]
    response = getattr(client.client, method)(
        f"/fhir/Patient/{patient_a.pk}/_history/{version}",
        data="{}",
        content_type=FHIR_JSON,
    )
    assert response.status_code == 405, response.content
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "PUT" not in response["Allow"]
