"""Laboratory Observations (potassium, creatinine, eGFR): created by a clinician of the care
team through the same ``record_labs`` as ``POST /api/v1/labs/``, read and searched beside the
wearable readings with ids of their own (``lab-<id>``) and category ``laboratory``."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from urllib.parse import quote

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from patients.models import LabResult, Reading
from tests.conftest import bearer_client
from tests.fhir.conftest import (
    LOINC,
    FhirClient,
    bp,
    bp_item,
    expressions,
    lab,
    moment,
    quantity,
    store_readings,
    transaction_of,
)

pytestmark = pytest.mark.django_db

EGFR_UNIT = "mL/min/{1.73_m2}"


def test_a_clinician_creates_a_lab_observation_read_and_searched_with_its_own_id(
    patient_a, clinician_a
):
    client = FhirClient(clinician_a)
    response = client.post("/fhir/Observation", lab(patient_a, "2160-0", 97, "umol/L"))
    assert response.status_code == 201, response.json()
    body = response.json()
    stored = LabResult.objects.get()
    assert body["id"] == f"lab-{stored.pk}"
    assert response["Location"].startswith(f"http://testserver/fhir/Observation/lab-{stored.pk}/")
    assert body["category"][0]["coding"][0]["code"] == "laboratory"
    assert body["code"]["coding"][0] == {
        "system": LOINC,
        "code": "2160-0",
        "display": "Creatinine [Mass/volume] in Serum or Plasma",
    }
    # Served in the canonical unit; the value as sent is kept in the record.
    assert body["valueQuantity"] == {
        "value": 1.097,
        "unit": "mg/dL",
        "system": "http://unitsofmeasure.org",
        "code": "mg/dL",
    }
    assert (stored.original_value, stored.original_unit) == (Decimal("97.000"), "umol/L")
    assert stored.recorded_by == clinician_a
    assert body["identifier"] == [{"system": "urn:clinaiops:lab-client-id", "value": "lis-1"}]

    read = client.get(f"/fhir/Observation/{body['id']}")
    assert read.status_code == 200 and read.json() == body
    found = client.get(f"/fhir/Observation?patient=Patient/{patient_a.pk}&code=2160-0").json()
    assert [entry["resource"]["id"] for entry in found["entry"]] == [body["id"]]
    assert client.get("/fhir/Observation?code=85354-9").json()["total"] == 0


def test_readings_and_labs_are_searched_together_newest_first(patient_a, clinician_a):
    store_readings(
        patient_a,
        [bp_item("old", moment(hours_ago=30)), bp_item("new", moment(hours_ago=1))],
    )
    client = FhirClient(clinician_a)
    client.post("/fhir/Observation", lab(patient_a, when=moment(hours_ago=10)))
    bundle = client.get(f"/fhir/Observation?patient={patient_a.pk}").json()
    assert bundle["total"] == 3
    kinds = [entry["resource"]["category"][0]["coding"][0]["code"] for entry in bundle["entry"]]
    assert kinds == ["vital-signs", "laboratory", "vital-signs"]
    page = client.get(f"/fhir/Observation?patient={patient_a.pk}&_count=1&_offset=1").json()
    assert [entry["resource"]["id"] for entry in page["entry"]] == [
        f"lab-{LabResult.objects.get().pk}"
    ]
    labs_only = client.get("/fhir/Observation?code=http://loinc.org|2823-3,2160-0").json()
    assert labs_only["total"] == 1
    by_id = client.get(f"/fhir/Observation?_id=lab-{LabResult.objects.get().pk}").json()
    assert by_id["total"] == 1
    by_identifier = client.get(
        "/fhir/Observation?identifier=urn:clinaiops:lab-client-id|lis-1"
    ).json()
    assert by_identifier["total"] == 1
    since, until = (quote(moment(hours_ago=h)) for h in (12, 8))
    in_window = client.get(f"/fhir/Observation?date=ge{since}&date=le{until}").json()
    assert in_window["total"] == 1


def test_a_lab_id_that_looks_like_a_reading_id_is_not_a_reading(patient_a, clinician_a):
    store_readings(patient_a, [bp_item("r", moment())])
    client = FhirClient(clinician_a)
    client.post("/fhir/Observation", lab(patient_a))
    reading = Reading.objects.get()
    lab_result = LabResult.objects.get()
    assert (
        client.get(f"/fhir/Observation/{reading.pk}").json()["category"][0]["coding"][0]["code"]
        == "vital-signs"
    )
    assert client.get(f"/fhir/Observation/lab-{lab_result.pk}").status_code == 200
    assert client.get("/fhir/Observation/lab-999999").status_code == 404
    assert client.get("/fhir/Observation/lab-x").status_code == 404


def test_the_patient_reads_their_own_labs_and_another_team_reads_none(
    patient_a, clinician_a, clinician_b
):
    FhirClient(clinician_a).post("/fhir/Observation", lab(patient_a))
    lab_id = f"lab-{LabResult.objects.get().pk}"
    assert FhirClient(patient_a.user).get(f"/fhir/Observation/{lab_id}").status_code == 200
    assert FhirClient(clinician_b).get(f"/fhir/Observation/{lab_id}").status_code == 404
    assert FhirClient(clinician_b).get("/fhir/Observation").json()["total"] == 0


def test_a_patient_posting_a_lab_is_403_and_another_team_s_patient_422(
    patient_a, patient_b, clinician_a
):
    own = FhirClient(patient_a.user).post("/fhir/Observation", lab(patient_a))
    assert own.status_code == 403
    assert own.json()["issue"][0]["code"] == "forbidden"
    other = FhirClient(clinician_a).post("/fhir/Observation", lab(patient_b))
    assert other.status_code == 422
    assert other.json()["issue"][0]["code"] == "not-found"
    # And a clinician still does not post wearable readings.
    assert FhirClient(clinician_a).post("/fhir/Observation", bp(patient_a)).status_code == 403
    assert not LabResult.objects.exists()


@pytest.mark.parametrize(
    ("change", "expression", "words"),
    [
        (
            lambda r: r["valueQuantity"].update(code="mg/dL"),
            "Observation.valueQuantity.code",
            "mmol/L, meq/L",
        ),
        (
            lambda r: r["valueQuantity"].update(system="http://example.org"),
            "Observation.valueQuantity.system",
            "UCUM",
        ),
        (
            lambda r: r["valueQuantity"].update(value=42),
            "Observation.valueQuantity.value",
            "1.5–10.0",
        ),
        (
            lambda r: r["valueQuantity"].update(value=4.2345),
            "Observation.valueQuantity.value",
            "plain decimal",
        ),
        (lambda r: r["valueQuantity"].update(value="4.2"), "Observation.valueQuantity.value", ""),
        (lambda r: r["valueQuantity"].pop("value"), "Observation.valueQuantity.value", "required"),
        (lambda r: r.pop("valueQuantity"), "Observation.valueQuantity", "valueQuantity"),
        (
            lambda r: r.update(effectiveDateTime=moment(hours_ago=-3)),
            "Observation.effectiveDateTime",
            "future",
        ),
        (
            lambda r: r.update(effectiveDateTime=moment(hours_ago=24 * 400)),
            "Observation.effectiveDateTime",
            "year",
        ),
        (lambda r: r.update(effectiveDateTime="2026-03-01"), "Observation.effectiveDateTime", ""),
        (
            lambda r: r.update(device={"identifier": {"value": "analyser"}}),
            "Observation.device",
            "laboratory",
        ),
        (
            lambda r: r.update(
                component=[
                    {
                        "code": {"coding": [{"system": LOINC, "code": "2823-3"}]},
                        "valueQuantity": quantity(4, "mmol/L"),
                    }
                ]
            ),
            "Observation.component",
            "laboratory",
        ),
    ],
)
def test_an_invalid_lab_is_400_naming_the_element_and_stores_nothing(
    patient_a, clinician_a, change, expression, words
):
    resource = lab(patient_a)
    change(resource)
    client = FhirClient(clinician_a)
    events = AuditEvent.objects.count()
    response = client.post("/fhir/Observation", resource)
    assert response.status_code == 400, response.json()
    assert expression in expressions(response)
    assert words in " ".join(issue["diagnostics"] for issue in response.json()["issue"])
    assert not LabResult.objects.exists()
    # Nothing but the refusal is journalled.
    [refusal] = AuditEvent.objects.order_by("sequence")[events:]
    assert refusal.action == "refused" and refusal.detail["attempted"] == "fhir create Observation"


def test_reposting_is_idempotent_and_an_identifier_reused_for_another_value_is_409(
    patient_a, clinician_a
):
    client = FhirClient(clinician_a)
    first = client.post("/fhir/Observation", lab(patient_a, value=4.6))
    again = client.post("/fhir/Observation", lab(patient_a, value=4.6))
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    clash = client.post("/fhir/Observation", lab(patient_a, value=5.9))
    assert clash.status_code == 409
    assert expressions(clash) == ["Observation.identifier[0].value"]
    assert list(LabResult.objects.values_list("value", flat=True)) == [Decimal("4.600")]


def test_without_identifier_a_lab_is_the_same_as_one_posted_to_api_v1_without_client_id(
    patient_a, clinician_a
):
    when = moment(hours_ago=6)
    posted = bearer_client(clinician_a).post(
        "/api/v1/labs/",
        {
            "patient": patient_a.pk,
            "code": "2823-3",
            "value": 4.6,
            "unit": "mmol/L",
            "observed_at": when,
        },
        format="json",
    )
    assert posted.json()["accepted"] == 1
    response = FhirClient(clinician_a).post(
        "/fhir/Observation", lab(patient_a, value=4.6, when=when, identifier=None)
    )
    assert response.status_code == 200, response.json()
    assert LabResult.objects.count() == 1


def test_create_writes_the_lab_batch_audit_event(patient_a, clinician_a):
    FhirClient(clinician_a).post("/fhir/Observation", lab(patient_a))
    event = AuditEvent.objects.filter(object_type="lab_batch").get()
    assert (event.actor_id, event.patient_id, event.detail["accepted"]) == (
        clinician_a.pk,
        patient_a.pk,
        1,
    )


def test_a_transaction_of_labs_is_all_or_nothing(patient_a, clinician_a, team_a):
    from tests.factories import PatientFactory

    other = PatientFactory(care_team=team_a)
    client = FhirClient(clinician_a)
    bad = client.post(
        "/fhir/",
        transaction_of(
            lab(patient_a, identifier="k"),
            lab(other, "98979-8", 250, EGFR_UNIT, identifier="e"),
        ),
    )
    assert bad.status_code == 400
    assert expressions(bad) == ["Bundle.entry[1].resource.valueQuantity.value"]
    assert not LabResult.objects.exists()
    good = client.post(
        "/fhir/",
        transaction_of(
            lab(patient_a, identifier="k"),
            lab(other, "98979-8", 48, EGFR_UNIT, identifier="e"),
        ),
    )
    assert good.status_code == 200, good.json()
    statuses = [entry["response"]["status"] for entry in good.json()["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    assert good.json()["entry"][1]["response"]["location"].startswith("Observation/lab-")
    assert LabResult.objects.count() == 2


def test_a_batch_keeps_the_valid_labs(patient_a, clinician_a):
    response = FhirClient(clinician_a).post(
        "/fhir/",
        transaction_of(
            lab(patient_a, identifier="ok"),
            lab(patient_a, value=4.6, unit="mEq/L", identifier="bad"),
            kind="batch",
        ),
    )
    assert response.status_code == 200
    first, second = response.json()["entry"]
    assert first["response"]["status"] == "201 Created"
    assert second["response"]["status"] == "400 Bad Request"
    [issue] = second["response"]["outcome"]["issue"]
    assert issue["expression"] == ["Observation.valueQuantity.code"]
    assert list(LabResult.objects.values_list("client_id", flat=True)) == ["ok"]


def test_the_capability_statement_names_the_lab_codes(api_client):
    statement = api_client.get("/fhir/metadata").json()
    [observation] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Observation"]
    for code in ("2823-3", "2160-0", "33914-3", "62238-1", "98979-8"):
        assert code in observation["documentation"]
    [code_param] = [p for p in observation["searchParam"] if p["name"] == "code"]
    assert "2823-3" in code_param["documentation"]


def test_an_old_lab_is_observed_at_its_time_not_received(patient_a, clinician_a):
    when = (timezone.now() - timedelta(days=40)).replace(microsecond=0)
    body = (
        FhirClient(clinician_a)
        .post("/fhir/Observation", lab(patient_a, when=when.isoformat()))
        .json()
    )
    assert body["effectiveDateTime"] == when.isoformat().replace("+00:00", "Z")
    assert body["issued"] != body["effectiveDateTime"]
