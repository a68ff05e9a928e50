"""Codings of ``Observation.code`` sent beside the one a reading is stored by (issue #15): kept,
served back after ours, searchable, and bounded — a bad one is a 400 at its element."""

from __future__ import annotations

import pytest

from patients.models import Reading
from tests.conftest import bearer_client
from tests.fhir.conftest import (
    LOINC,
    FhirClient,
    bp,
    expressions,
    heart_rate,
    moment,
    transaction_of,
)

pytestmark = pytest.mark.django_db

SNOMED = "http://snomed.info/sct"
BP_PANEL_55284 = {
    "system": LOINC,
    "code": "55284-4",
    "display": "Blood pressure systolic and diastolic",
}
HR_SNOMED = {"system": SNOMED, "code": "364075005", "display": "Heart rate"}


def _with_codings(resource, *codings):
    resource["code"]["coding"] = [*resource["code"]["coding"], *codings]
    return resource


def test_an_extra_loinc_coding_is_kept_and_served_after_ours(patient_a, clinician_a):
    response = FhirClient(patient_a.user).post(
        "/fhir/Observation", _with_codings(bp(patient_a), BP_PANEL_55284)
    )

    assert response.status_code == 201, response.json()
    codings = response.json()["code"]["coding"]
    assert [(c["system"], c["code"]) for c in codings] == [
        (LOINC, "85354-9"),
        (LOINC, "55284-4"),
    ]
    assert codings[1] == BP_PANEL_55284
    reading = Reading.objects.get(pk=response.json()["id"])
    assert reading.codings == [BP_PANEL_55284]
    read = FhirClient(clinician_a).get(f"/fhir/Observation/{reading.pk}")
    assert read.json()["code"]["coding"] == codings


def test_ours_comes_first_whatever_the_order_sent(patient_a):
    resource = heart_rate(patient_a)
    resource["code"]["coding"] = [HR_SNOMED, {"system": LOINC, "code": "8867-4"}]

    response = FhirClient(patient_a.user).post("/fhir/Observation", resource)

    assert response.status_code == 201, response.json()
    assert [c["code"] for c in response.json()["code"]["coding"]] == ["8867-4", "364075005"]
    assert response.json()["code"]["coding"][0]["display"] == "Heart rate"


def test_version_is_kept_and_id_and_extension_of_a_coding_are_ignored(patient_a):
    coding = HR_SNOMED | {
        "version": "http://snomed.info/sct/900000000000207008/version/20240101",
        "id": "c1",
        "extension": [{"url": "http://example.org/x", "valueString": "y"}],
    }
    response = FhirClient(patient_a.user).post(
        "/fhir/Observation", _with_codings(heart_rate(patient_a), coding)
    )

    assert response.status_code == 201, response.json()
    assert response.json()["code"]["coding"][1] == {
        "system": SNOMED,
        "version": "http://snomed.info/sct/900000000000207008/version/20240101",
        "code": "364075005",
        "display": "Heart rate",
    }


def test_a_reading_without_extra_codings_stores_none(patient_a):
    response = FhirClient(patient_a.user).post("/fhir/Observation", heart_rate(patient_a))

    assert response.status_code == 201
    assert Reading.objects.get(pk=response.json()["id"]).codings is None
    assert len(response.json()["code"]["coding"]) == 1


def test_a_repost_with_other_codings_is_the_same_reading_and_keeps_the_first(patient_a):
    client = FhirClient(patient_a.user)
    first = client.post("/fhir/Observation", _with_codings(heart_rate(patient_a), HR_SNOMED))
    again = client.post("/fhir/Observation", heart_rate(patient_a))

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["code"]["coding"] == first.json()["code"]["coding"]
    assert Reading.objects.filter(patient=patient_a).count() == 1


@pytest.mark.parametrize(
    ("coding", "element", "words"),
    [
        ({"code": "364075005"}, "system", "required"),
        ({"system": "snomed", "code": "364075005"}, "system", "absolute URI"),
        ({"system": "http://snomed .info/sct", "code": "1"}, "system", "absolute URI"),
        ({"system": "http://x.org/" + "a" * 300, "code": "1"}, "system", "at most 255"),
        ({"system": SNOMED}, "code", "required"),
        ({"system": SNOMED, "code": "1" * 101}, "code", "at most 100"),
        ({"system": SNOMED, "code": " 1"}, "code", "pattern"),  # FHIR code datatype
        ({"system": SNOMED, "code": "1", "display": "d" * 256}, "display", "at most 255"),
        ({"system": SNOMED, "code": "1", "version": "v\x07"}, "version", "control"),
        ({"system": SNOMED, "code": "1", "userSelected": True}, "userSelected", "not stored"),
    ],
)
def test_a_bad_coding_is_refused_at_its_element_and_nothing_is_stored(
    patient_a, coding, element, words
):
    resource = _with_codings(heart_rate(patient_a), HR_SNOMED, coding)

    response = FhirClient(patient_a.user).post("/fhir/Observation", resource)

    assert response.status_code == 400, response.json()
    assert expressions(response) == [f"Observation.code.coding[2].{element}"]
    assert words in response.json()["issue"][0]["diagnostics"]
    assert not Reading.objects.filter(patient=patient_a).exists()


def test_more_than_five_extra_codings_are_refused_at_the_sixth(patient_a):
    extra = [{"system": SNOMED, "code": str(100 + i)} for i in range(6)]
    resource = _with_codings(heart_rate(patient_a), *extra)

    response = FhirClient(patient_a.user).post("/fhir/Observation", resource)

    assert response.status_code == 400
    assert expressions(response) == ["Observation.code.coding[6]"]
    assert "at most 5 codings" in response.json()["issue"][0]["diagnostics"]

    five = _with_codings(heart_rate(patient_a), *extra[:5])
    assert FhirClient(patient_a.user).post("/fhir/Observation", five).status_code == 201


def test_a_bad_coding_in_a_transaction_is_named_in_its_entry(patient_a):
    good = _with_codings(bp(patient_a), BP_PANEL_55284)
    bad = _with_codings(heart_rate(patient_a), {"system": "not a uri", "code": "1"})

    response = FhirClient(patient_a.user).post("/fhir/", transaction_of(good, bad))

    assert response.status_code == 400
    assert expressions(response) == ["Bundle.entry[1].resource.code.coding[1].system"]
    assert not Reading.objects.filter(patient=patient_a).exists()


def test_a_batch_keeps_each_entrys_codings(patient_a):
    first = _with_codings(bp(patient_a, identifier="bp-a"), BP_PANEL_55284)
    second = _with_codings(heart_rate(patient_a, identifier="hr-a"), HR_SNOMED)
    plain = heart_rate(patient_a, identifier="hr-b", when=moment(hours_ago=2))

    response = FhirClient(patient_a.user).post(
        "/fhir/", transaction_of(first, second, plain, kind="batch")
    )

    assert [e["response"]["status"] for e in response.json()["entry"]] == ["201 Created"] * 3
    stored = dict(Reading.objects.filter(patient=patient_a).values_list("client_id", "codings"))
    assert stored == {"bp-a": [BP_PANEL_55284], "hr-a": [HR_SNOMED], "hr-b": None}


def test_a_code_search_finds_a_coding_the_client_sent(patient_a, clinician_a):
    client = FhirClient(patient_a.user)
    with_bp = client.post("/fhir/Observation", _with_codings(bp(patient_a), BP_PANEL_55284))
    with_hr = client.post("/fhir/Observation", _with_codings(heart_rate(patient_a), HR_SNOMED))
    client.post("/fhir/Observation", heart_rate(patient_a, identifier="hr-2", value=80))
    base = f"/fhir/Observation?patient=Patient/{patient_a.pk}"
    clinician = FhirClient(clinician_a)

    def ids(query: str) -> list[str]:
        return [
            e["resource"]["id"] for e in clinician.get(f"{base}&{query}").json().get("entry", [])
        ]

    assert ids("code=55284-4") == [with_bp.json()["id"]]
    assert ids(f"code={LOINC}|55284-4") == [with_bp.json()["id"]]
    assert ids(f"code={SNOMED}|364075005") == [with_hr.json()["id"]]
    assert ids("code=364075005") == [with_hr.json()["id"]]
    assert ids(f"code={LOINC}|364075005") == []  # the code in another system
    assert ids("code=|364075005") == []  # "no system": every stored coding has one
    assert set(ids("code=364075005,55284-4")) == {with_bp.json()["id"], with_hr.json()["id"]}
    assert len(ids("code=8867-4")) == 2  # ours finds both heart rates, with or without


def test_the_mobile_api_takes_no_codings(patient_a):
    item = {
        "client_id": "hr-m",
        "type": "heart_rate",
        "value": 70,
        "unit": "/min",
        "measured_at": moment(),
        "device_id": "watch-1",
        "codings": [HR_SNOMED],
    }
    response = bearer_client(patient_a.user).post(
        "/api/v1/readings/", {"readings": [item]}, format="json"
    )

    assert response.json()["rejected"] == [
        {"index": 0, "field": "codings", "message": "unknown field"}
    ]
    assert not Reading.objects.filter(patient=patient_a).exists()
