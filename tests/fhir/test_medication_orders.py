"""MedicationRequest create (intent order): an EHR's dose order, judged by
``clinicians.decisions.order_dose`` exactly as a clinician's decision, alone or in Bundles."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import OperationalError
from django.utils import timezone

from audit.models import AuditEvent
from clinicians.models import Alert, RecommendationStatus
from patients.models import LabResult, Prescription
from tests.clinicians.conftest import course_ready
from tests.fhir.conftest import (
    FhirClient,
    expressions,
    lab,
    order,
    order_entries,
    recommendation,
)

pytestmark = pytest.mark.django_db

DOSE_VALUE = "MedicationRequest.dosageInstruction[0].doseAndRate[0].doseQuantity.value"
COURSE_REASON = "urn:clinaiops:course-reason"


def _open_dose(patient, medication="amlodipine"):
    row = Prescription.objects.filter(patient=patient, medication=medication, ended_at=None).first()
    return row.dose_mg if row else None


def _order_events():
    return AuditEvent.objects.filter(object_type="prescription", action="decision")


def _reason_codes(response) -> list[str]:
    return [
        coding["code"]
        for issue in response.json()["issue"]
        for coding in issue.get("details", {}).get("coding", [])
        if coding["system"] == COURSE_REASON
    ]


@pytest.fixture
def on_amlodipine(patient_a, clinician_a):
    """On 2.5 mg for a month, a week of readings above target: a step up may be ordered."""
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    return patient_a


def test_an_order_changes_the_regimen_is_journalled_and_reads_back(on_amlodipine, clinician_a):
    pending = recommendation(on_amlodipine, "pending_review", current_dose_mg=Decimal("2.5"))
    resource = order(
        on_amlodipine,
        "amlodipine",
        5,
        reasonCode=[{"text": "Home BP above target at the visit"}],
        note=[{"text": "Discussed ankle swelling"}],
        authoredOn="2026-01-01T09:00:00Z",
    )
    client = FhirClient(clinician_a)

    response = client.post("/fhir/MedicationRequest", resource)

    assert response.status_code == 201, response.json()
    body = response.json()
    stored = Prescription.objects.get(patient=on_amlodipine, ended_at=None)
    assert (stored.dose_mg, stored.source) == (Decimal("5"), "fhir-order")
    assert body["id"] == f"rx-{stored.pk}"
    assert (body["status"], body["intent"]) == ("active", "order")
    assert body["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 5
    assert response["Location"] == (
        f"http://testserver/fhir/MedicationRequest/{body['id']}/_history/"
        f"{body['meta']['versionId']}"
    )
    assert "X-ClinAIOps-Course" not in response
    assert client.get(f"/fhir/MedicationRequest/{body['id']}").json() == body
    event = _order_events().get()
    assert event.actor_id == clinician_a.pk
    assert event.patient_id == on_amlodipine.pk
    assert event.object_id == str(stored.pk)
    assert event.detail["order"] is True
    assert event.detail["inside_min_interval"] is False
    assert event.detail["reason"] == "Home BP above target at the visit; Discussed ankle swelling"
    change = event.changes["dose_mg"]  # decimals as stored: "2.50" on PostgreSQL, "2.5" on SQLite
    assert (Decimal(change["old"]), Decimal(change["new"])) == (Decimal("2.5"), Decimal("5"))
    pending.refresh_from_db()
    assert pending.status == RecommendationStatus.SUPERSEDED


def test_an_order_inside_the_minimum_interval_is_taken_and_flagged(patient_a, clinician_a):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5", started_days_ago=3)
    client = FhirClient(clinician_a)

    response = client.post("/fhir/MedicationRequest", order(patient_a, "amlodipine", 5))

    assert response.status_code == 201, response.json()
    assert response["X-ClinAIOps-Course"] == "inside-min-interval"
    assert _open_dose(patient_a) == Decimal("5")
    assert _order_events().get().detail["inside_min_interval"] is True
    again = client.post(
        "/fhir/MedicationRequest",
        order(patient_a, "amlodipine", 10),
        HTTP_PREFER="return=OperationOutcome",
    )
    assert again.status_code == 201
    issues = again.json()["issue"]
    assert issues[0]["diagnostics"].startswith("MedicationRequest/rx-")
    assert issues[1]["severity"] == "information"
    assert _reason_codes(again) == ["min_interval"]


@pytest.mark.parametrize("dose", [999, 1, 2.555, -5, 1e-7])
def test_a_dose_the_label_does_not_allow_is_400_at_the_dose_value(on_amlodipine, clinician_a, dose):
    response = FhirClient(clinician_a).post(
        "/fhir/MedicationRequest", order(on_amlodipine, "amlodipine", dose)
    )
    assert response.status_code == 400, response.json()
    assert expressions(response) == [DOSE_VALUE]
    assert "dose_mg" in response.json()["issue"][0]["diagnostics"]
    assert _open_dose(on_amlodipine) == Decimal("2.5")
    assert not _order_events().exists()


def test_a_crisis_does_not_stop_an_order_but_a_low_reading_blocks_an_increase(
    on_amlodipine, clinician_a
):
    """The gate's state blocks (crisis, stale data, no bounds) keep changes from reaching the
    patient alone; a clinician's order is held only by the course rules."""
    from patients.models import Device, Reading

    Alert.objects.create(
        patient=on_amlodipine,
        kind="hypertensive_crisis",
        message="confirmed",
        opened_at=timezone.now(),
    )
    client = FhirClient(clinician_a)
    assert (
        client.post("/fhir/MedicationRequest", order(on_amlodipine, "amlodipine", 5)).status_code
        == 201
    )
    device = Device.objects.filter(patient=on_amlodipine).first()
    Reading.objects.create(
        patient=on_amlodipine,
        device=device,
        client_id="low-1",
        reading_type="blood_pressure",
        systolic_mmhg=84,
        diastolic_mmhg=50,
        measured_at=timezone.now() - timedelta(hours=1),
        received_at=timezone.now(),
    )
    response = client.post("/fhir/MedicationRequest", order(on_amlodipine, "amlodipine", 10))
    assert response.status_code == 409, response.json()
    assert _reason_codes(response) == ["recent_low_reading"]
    [issue] = response.json()["issue"]
    assert issue["code"] == "business-rule" and "no increase" in issue["diagnostics"]
    assert _open_dose(on_amlodipine) == Decimal("5")
    assert _order_events().count() == 1


def test_an_order_without_safety_bounds_is_a_clinicians_to_make(patient_a, clinician_a):
    from tests.clinicians.conftest import course_ready

    course_ready(patient_a, clinician_a, "lisinopril", dose="10")
    response = FhirClient(clinician_a).post(
        "/fhir/MedicationRequest", order(patient_a, "amlodipine", 5)
    )
    assert response.status_code == 201, response.json()
    assert _open_dose(patient_a) == Decimal("5")


@pytest.mark.parametrize("who", ["patient", "auditor", "admin"])
def test_only_a_clinician_places_orders(on_amlodipine, auditor, admin_user, who):
    user = {"patient": on_amlodipine.user, "auditor": auditor, "admin": admin_user}[who]
    response = FhirClient(user).post(
        "/fhir/MedicationRequest", order(on_amlodipine, "amlodipine", 5)
    )
    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"
    assert _open_dose(on_amlodipine) == Decimal("2.5")


def test_another_team_s_patient_is_not_known(on_amlodipine, clinician_b):
    response = FhirClient(clinician_b).post(
        "/fhir/MedicationRequest", order(on_amlodipine, "amlodipine", 5)
    )
    assert response.status_code == 422
    assert response.json()["issue"][0]["code"] == "not-found"
    assert expressions(response) == ["MedicationRequest.subject"]
    assert _open_dose(on_amlodipine) == Decimal("2.5")


@pytest.mark.parametrize(
    ("codings", "words"),
    [
        ([{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361"}], "no"),
        ([{"system": "http://snomed.info/sct", "code": "17767"}], "no"),
        (
            [
                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "17767"},
                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "29046"},
            ],
            "more than one",
        ),
    ],
)
def test_a_drug_outside_the_formulary_is_400(on_amlodipine, clinician_a, codings, words):
    resource = order(on_amlodipine)
    resource["medicationCodeableConcept"]["coding"] = codings
    response = FhirClient(clinician_a).post("/fhir/MedicationRequest", resource)
    assert response.status_code == 400
    [issue] = response.json()["issue"]
    assert issue["code"] == "code-invalid"
    assert issue["expression"] == ["MedicationRequest.medicationCodeableConcept"]
    assert words in issue["diagnostics"] and "17767 (amlodipine)" in issue["diagnostics"]


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        (lambda q: q.update(code="g", unit="g"), "doseQuantity.code"),
        (lambda q: q.update(code="mg", system="http://example.org/units"), "doseQuantity.system"),
        (lambda q: q.update(value="5"), "doseQuantity.value"),
        (lambda q: q.pop("value"), "doseQuantity.value"),
    ],
)
def test_a_dose_not_in_ucum_mg_is_400(on_amlodipine, clinician_a, change, expression):
    resource = order(on_amlodipine)
    change(resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"])
    response = FhirClient(clinician_a).post("/fhir/MedicationRequest", resource)
    assert response.status_code == 400
    assert expressions(response)[0].endswith(expression)
    assert _open_dose(on_amlodipine) == Decimal("2.5")


DOSAGE = "MedicationRequest.dosageInstruction[0]"


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        (lambda r: r.update(identifier=[{"value": "ehr-1"}]), "MedicationRequest.identifier"),
        (
            # Only the signed-in clinician's own Practitioner is honoured (test_chain_orders).
            lambda r: r.update(requester={"reference": "Practitioner/ehr-practitioner-1"}),
            "MedicationRequest.requester",
        ),
        (lambda r: r.update(priority="urgent"), "MedicationRequest.priority"),
        (
            lambda r: r.update(substitution={"allowedBoolean": True}),
            "MedicationRequest.substitution",
        ),
        (lambda r: r.update(foo="bar"), "MedicationRequest.foo"),
        (
            lambda r: r.update(modifierExtension=[{"url": "urn:x", "valueBoolean": True}]),
            "MedicationRequest.modifierExtension",
        ),
        (
            lambda r: r["dosageInstruction"][0].update(
                modifierExtension=[{"url": "urn:x", "valueBoolean": True}]
            ),
            f"{DOSAGE}.modifierExtension",
        ),
        (
            lambda r: r["dosageInstruction"][0].update(timing={"code": {"text": "BID"}}),
            f"{DOSAGE}.timing",
        ),
        (lambda r: r["dosageInstruction"][0].update(text="twice daily"), f"{DOSAGE}.text"),
        (
            lambda r: r["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"].update(
                comparator="<"
            ),
            f"{DOSAGE}.doseAndRate[0].doseQuantity.comparator",
        ),
        (
            lambda r: r.update(
                reasonCode=[{"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}]
            ),
            "MedicationRequest.reasonCode[0].coding",
        ),
        (
            lambda r: r.update(note=[{"text": "x", "authorString": "Dr A"}]),
            "MedicationRequest.note[0].authorString",
        ),
        (
            lambda r: r.update(
                medicationReference={"reference": "Medication/1"},
            ),
            "MedicationRequest.medicationReference",
        ),
    ],
)
def test_elements_that_cannot_be_honoured_are_refused_not_dropped(
    on_amlodipine, clinician_a, change, expression
):
    resource = order(on_amlodipine)
    change(resource)
    response = FhirClient(clinician_a).post("/fhir/MedicationRequest", resource)
    assert response.status_code == 400, response.json()
    assert expression in expressions(response)
    assert _open_dose(on_amlodipine) == Decimal("2.5")
    assert not _order_events().exists()


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        (lambda r: r.update(intent="proposal"), "MedicationRequest.intent"),
        (lambda r: r.update(status="draft"), "MedicationRequest.status"),
        (lambda r: r.pop("subject"), "MedicationRequest.subject"),
        (lambda r: r.update(subject={"reference": "Group/1"}), "MedicationRequest.subject"),
        (lambda r: r.pop("dosageInstruction"), "MedicationRequest.dosageInstruction"),
        (
            lambda r: r["dosageInstruction"].append(r["dosageInstruction"][0]),
            "MedicationRequest.dosageInstruction[1]",
        ),
        (
            lambda r: r.update(reasonCode=[{"text": "x" * 501}]),
            "MedicationRequest.reasonCode[0].text",
        ),
    ],
)
def test_an_order_must_be_one_active_dose_for_a_patient(
    on_amlodipine, clinician_a, change, expression
):
    resource = order(on_amlodipine)
    change(resource)
    response = FhirClient(clinician_a).post("/fhir/MedicationRequest", resource)
    assert response.status_code == 400, response.json()
    assert expressions(response) == [expression]


def test_a_stop_answers_200_with_the_order_it_stopped(on_amlodipine, clinician_a):
    before = Prescription.objects.get(patient=on_amlodipine, ended_at=None)
    client = FhirClient(clinician_a)

    response = client.post("/fhir/MedicationRequest", order(on_amlodipine, "amlodipine", 0))

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["id"] == f"rx-{before.pk}"
    assert body["status"] == "stopped"
    assert "end" in body["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]
    assert _open_dose(on_amlodipine) is None
    assert client.get(response["Location"].removeprefix("http://testserver")).json() == body
    assert _order_events().get().detail["order"] is True
    again = client.post("/fhir/MedicationRequest", order(on_amlodipine, "amlodipine", 0))
    assert again.status_code == 422
    assert again.json()["issue"][0]["code"] == "business-rule"
    assert _order_events().count() == 1


def test_the_capability_statement_offers_order_create(api_client):
    statement = api_client.get("/fhir/metadata").json()
    [resource] = [r for r in statement["rest"][0]["resource"] if r["type"] == "MedicationRequest"]
    assert {"code": "create"} in resource["interaction"]
    assert "inside-min-interval" in resource["documentation"]


# --- Bundles ------------------------------------------------------------------------------------


def test_a_transaction_stores_a_lab_and_an_order_together(on_amlodipine, clinician_a):
    bundle = order_entries(lab(on_amlodipine), order(on_amlodipine, "amlodipine", 5))
    response = FhirClient(clinician_a).post("/fhir/", bundle, HTTP_PREFER="return=representation")
    assert response.status_code == 200, response.json()
    first, second = response.json()["entry"]
    assert first["response"]["location"].startswith("Observation/lab-")
    stored = Prescription.objects.get(patient=on_amlodipine, ended_at=None)
    assert second["response"]["status"] == "201 Created"
    assert second["response"]["location"].startswith(f"MedicationRequest/rx-{stored.pk}/_history/")
    assert second["resource"]["id"] == f"rx-{stored.pk}"
    assert "outcome" not in second["response"]
    assert LabResult.objects.count() == 1


def test_a_failing_order_rolls_back_the_whole_transaction(on_amlodipine, clinician_a):
    pending = recommendation(on_amlodipine, "pending_review", current_dose_mg=Decimal("2.5"))
    bundle = order_entries(
        lab(on_amlodipine),
        order(on_amlodipine, "amlodipine", 5),
        order(on_amlodipine, "amlodipine", 999),
    )
    response = FhirClient(clinician_a).post("/fhir/", bundle)
    assert response.status_code == 400, response.json()
    assert response.json()["resourceType"] == "OperationOutcome"
    assert expressions(response) == [
        "Bundle.entry[2].resource.dosageInstruction[0].doseAndRate[0].doseQuantity.value"
    ]
    assert not LabResult.objects.exists()
    assert _open_dose(on_amlodipine) == Decimal("2.5")
    assert Prescription.objects.filter(patient=on_amlodipine).count() == 1
    assert not _order_events().exists()
    assert not AuditEvent.objects.filter(object_type__in=["lab_batch", "prescription"]).exists()
    pending.refresh_from_db()
    assert pending.status == RecommendationStatus.PENDING_REVIEW


def test_an_order_is_judged_with_the_lab_posted_beside_it(patient_a, clinician_a):
    """Observations are stored before orders: a potassium above range in the same transaction
    blocks an increase of lisinopril (and the whole transaction with it)."""
    course_ready(patient_a, clinician_a, "lisinopril", dose="10")
    bundle = order_entries(
        order(patient_a, "lisinopril", 20), lab(patient_a, "2823-3", 5.8, "mmol/L")
    )
    response = FhirClient(clinician_a).post("/fhir/", bundle)
    assert response.status_code == 409, response.json()
    assert "potassium_high" in _reason_codes(response)
    assert set(expressions(response)) == {"Bundle.entry[0].resource"}
    assert not LabResult.objects.exists()
    assert _open_dose(patient_a, "lisinopril") == Decimal("10")


def test_a_batch_takes_the_valid_orders_and_reports_the_others(patient_a, clinician_a):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5", started_days_ago=3)
    bundle = order_entries(
        order(patient_a, "amlodipine", 5),
        order(patient_a, "amlodipine", 999),
        order(patient_a, "17767x"),
        kind="batch",
    )
    response = FhirClient(clinician_a).post("/fhir/", bundle)
    assert response.status_code == 200, response.json()
    taken, too_much, unknown = response.json()["entry"]
    assert taken["response"]["status"] == "201 Created"
    [note] = taken["response"]["outcome"]["issue"]
    assert note["severity"] == "information"
    assert note["details"]["coding"][0]["code"] == "min_interval"
    assert too_much["response"]["status"] == "400 Bad Request"
    assert too_much["response"]["outcome"]["issue"][0]["expression"] == [DOSE_VALUE]
    assert unknown["response"]["status"] == "400 Bad Request"
    assert _open_dose(patient_a) == Decimal("5")


def test_a_patient_s_order_in_a_bundle_is_refused_for_that_entry(on_amlodipine):
    bundle = order_entries(order(on_amlodipine, "amlodipine", 5), kind="batch")
    response = FhirClient(on_amlodipine.user).post("/fhir/", bundle)
    assert response.status_code == 200
    [entry] = response.json()["entry"]
    assert entry["response"]["status"] == "403 Forbidden"
    assert _open_dose(on_amlodipine) == Decimal("2.5")


def test_too_many_orders_in_one_bundle_is_413(on_amlodipine, clinician_a, monkeypatch):
    monkeypatch.setattr("clinaiops.fhir.bundles.MAX_BUNDLE_ORDERS", 1)
    bundle = order_entries(order(on_amlodipine), order(on_amlodipine), lab(on_amlodipine))
    response = FhirClient(clinician_a).post("/fhir/", bundle)
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"
    assert _open_dose(on_amlodipine) == Decimal("2.5")


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [(RuntimeError("bug"), "500", "exception"), (OperationalError("gone"), "503", "transient")],
)
def test_a_fault_on_one_order_fails_that_entry_only_in_a_batch(
    on_amlodipine, clinician_a, monkeypatch, fault, status, code
):
    from clinicians import decisions

    real = decisions.order_dose

    def failing_on_ten(**kwargs):
        if kwargs["dose_mg"] == 10:
            raise fault
        return real(**kwargs)

    monkeypatch.setattr("clinaiops.fhir.orders.order_dose", failing_on_ten)
    bundle = order_entries(
        lab(on_amlodipine),
        order(on_amlodipine, "amlodipine", 10),
        order(on_amlodipine, "hydrochlorothiazide", 12.5),
        kind="batch",
    )
    response = FhirClient(clinician_a).post("/fhir/", bundle)
    assert response.status_code == 200
    stored, failed, other = response.json()["entry"]
    assert stored["response"]["status"] == "201 Created"
    assert failed["response"]["status"].startswith(status)
    assert failed["response"]["outcome"]["issue"][0]["code"] == code
    assert other["response"]["status"] == "201 Created"  # judged on its own: stored
    assert LabResult.objects.count() == 1
    assert _open_dose(on_amlodipine) == Decimal("2.5")


def test_a_fault_in_a_transaction_stores_nothing(on_amlodipine, clinician_a, monkeypatch):
    def failing(**kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr("clinaiops.fhir.orders.order_dose", failing)
    bundle = order_entries(lab(on_amlodipine), order(on_amlodipine, "amlodipine", 5))
    response = FhirClient(clinician_a).post("/fhir/", bundle)
    assert response.status_code == 500
    assert response.json()["issue"][0]["code"] == "exception"
    assert not LabResult.objects.exists()
