"""Laboratory results: ``POST|GET /api/v1/labs/`` (API.md), ``patients.ingestion.record_labs``
and ``patients.selectors.latest_labs`` — validation per item, canonical units, duplicates, the
batch audit event, the signal, who may record and read them, and what the course rules see."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.test import TestCase
from django.utils import timezone

from audit.models import AuditEvent
from patients.course import LabSnapshot, LabValue
from patients.ingestion import LABS_IMPORT, record_labs
from patients.models import LabResult
from patients.selectors import latest_labs
from patients.signals import labs_recorded
from tests.conftest import bearer_client
from tests.factories import LabResultFactory, PatientFactory

LABS = "/api/v1/labs/"
EGFR_UNIT = "mL/min/{1.73_m2}"


def lab(patient, code="2823-3", value=4.2, unit="mmol/L", hours_ago=2, **extra) -> dict:
    return {
        "patient": patient.pk,
        "code": code,
        "value": value,
        "unit": unit,
        "observed_at": (timezone.now() - timedelta(hours=hours_ago)).isoformat(),
        **extra,
    }


@pytest.fixture
def clinic(clinician_a):
    return bearer_client(clinician_a)


def post(client, items):
    return client.post(LABS, {"labs": items}, format="json")


# --- storing ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_single_result_is_stored_in_its_canonical_unit_with_what_was_sent(
    clinic, patient_a, clinician_a
):
    response = clinic.post(
        LABS, lab(patient_a, "2160-0", "88.42", "umol/L", client_id="lis-1"), format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    stored = LabResult.objects.get()
    assert (stored.patient, stored.client_id, stored.code) == (patient_a, "lis-1", "2160-0")
    assert (stored.value, stored.unit) == (Decimal("1.000"), "mg/dL")
    assert (stored.original_value, stored.original_unit) == (Decimal("88.420"), "umol/L")
    assert stored.recorded_by == clinician_a


@pytest.mark.django_db
def test_each_code_in_each_accepted_unit_is_stored(clinic, patient_a):
    items = [
        lab(patient_a, "2823-3", 4.1, "mmol/L"),
        lab(patient_a, "2823-3", 4.3, "meq/L"),
        lab(patient_a, "2160-0", 1.02, "mg/dL"),
        lab(patient_a, "2160-0", 90, "umol/L"),
        lab(patient_a, "33914-3", 61, EGFR_UNIT),
        lab(patient_a, "62238-1", "58.5", EGFR_UNIT),
        lab(patient_a, "98979-8", 57, EGFR_UNIT),
    ]
    assert post(clinic, items).json() == {"accepted": 7, "duplicates": 0, "rejected": []}
    units = set(LabResult.objects.values_list("code", "unit"))
    assert units == {
        ("2823-3", "mmol/L"),
        ("2160-0", "mg/dL"),
        ("33914-3", EGFR_UNIT),
        ("62238-1", EGFR_UNIT),
        ("98979-8", EGFR_UNIT),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"unit": "mg/dL"}, "unit", "mmol/L, meq/L"),
        ({"unit": "mEq/L"}, "unit", "mmol/L, meq/L"),
        ({"code": "62238-1", "value": 45, "unit": "mL/min/1.73m2"}, "unit", EGFR_UNIT),
        ({"value": 42}, "value", "1.5–10.0 mmol/L"),
        ({"value": 0}, "value", "1.5–10.0 mmol/L"),
        ({"code": "2160-0", "value": 3000, "unit": "umol/L"}, "value", "0.1–25 mg/dL"),
        ({"code": "62238-1", "value": 250, "unit": EGFR_UNIT}, "value", "1–200"),
        ({"code": "2951-2"}, "code", "2823-3 (potassium)"),
        ({"value": "1_0"}, "value", "plain decimal"),
        ({"value": "٤٫٢"}, "value", "plain decimal"),
        ({"value": "4e0"}, "value", "plain decimal"),
        ({"value": "NaN"}, "value", "plain decimal"),
        ({"value": "Infinity"}, "value", "plain decimal"),
        ({"value": "4.2 mmol/L"}, "value", "plain decimal"),
        ({"value": True}, "value", "plain decimal"),
        ({"value": 4.2345}, "value", "plain decimal"),
        ({"observed_at": "2026-01-10T08:00:00"}, "observed_at", "timezone"),
        ({"observed_at": "last week"}, "observed_at", ""),
        ({"client_id": ""}, "client_id", ""),
        ({"flag": "H"}, "flag", "unknown field"),
    ],
)
def test_a_bad_item_is_rejected_with_its_field_and_the_rest_is_stored(
    clinic, patient_a, change, field, words
):
    body = post(clinic, [lab(patient_a), {**lab(patient_a, hours_ago=3), **change}]).json()
    assert body["accepted"] == 1, body
    [rejection] = body["rejected"]
    assert (rejection["index"], rejection["field"]) == (1, field)
    assert words in rejection["message"]
    assert LabResult.objects.count() == 1


@pytest.mark.django_db
def test_a_missing_value_is_named(clinic, patient_a):
    item = lab(patient_a)
    del item["value"]
    [rejection] = post(clinic, [item]).json()["rejected"]
    assert rejection == {"index": 0, "field": "value", "message": "is required"}


@pytest.mark.django_db
def test_future_and_year_old_results_are_rejected_but_small_skew_is_allowed(clinic, patient_a):
    now = timezone.now()
    items = [
        lab(patient_a, observed_at=(now + timedelta(minutes=2)).isoformat()),
        lab(patient_a, observed_at=(now + timedelta(hours=2)).isoformat()),
        lab(patient_a, observed_at=(now - timedelta(days=400)).isoformat()),
    ]
    body = post(clinic, items).json()
    assert body["accepted"] == 1
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (1, "observed_at"),
        (2, "observed_at"),
    ]
    assert "future" in body["rejected"][0]["message"]
    assert "year" in body["rejected"][1]["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_rejected_per_item(clinic, patient_a, literal):
    good = json.dumps(lab(patient_a))
    bad = json.dumps(lab(patient_a, value=1.5, hours_ago=4)).replace(
        '"value": 1.5', f'"value": {literal}'
    )
    response = clinic.post(
        LABS, data=f'{{"labs": [{good}, {bad}]}}', content_type="application/json"
    )
    assert response.status_code == 201
    assert response.json()["rejected"] == [
        {"index": 1, "field": "value", "message": "must be a finite number"}
    ]


# --- duplicates ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_client_id_seen_before_is_a_duplicate(clinic, patient_a):
    item = lab(patient_a, client_id="lis-7")
    assert post(clinic, [item]).json()["accepted"] == 1
    assert post(clinic, [item, lab(patient_a, value=4.4)]).json() == {
        "accepted": 1,
        "duplicates": 1,
        "rejected": [],
    }
    assert LabResult.objects.count() == 2


@pytest.mark.django_db
def test_without_a_client_id_a_retry_is_stored_once(clinic, patient_a):
    item = lab(patient_a, "2160-0", 1.1, "mg/dL")
    first = post(clinic, [item]).json()
    # The same instant in another offset, and the same number written another way.
    moment = datetime.fromisoformat(item["observed_at"])
    shifted = moment.astimezone(timezone.get_fixed_timezone(-300)).isoformat()
    again = post(clinic, [item | {"observed_at": shifted, "value": "1.10"}]).json()
    other = post(clinic, [item | {"value": 1.2}]).json()
    assert (first["accepted"], again["duplicates"], other["accepted"]) == (1, 1, 1)
    assert LabResult.objects.count() == 2
    assert all(client_id for client_id in LabResult.objects.values_list("client_id", flat=True))


@pytest.mark.django_db
def test_a_client_id_repeated_in_a_batch_with_other_values_is_rejected(clinic, patient_a):
    body = post(
        clinic, [lab(patient_a, value=4.1, client_id="x"), lab(patient_a, value=4.9, client_id="x")]
    ).json()
    assert body["accepted"] == 1
    assert body["rejected"] == [
        {
            "index": 1,
            "field": "client_id",
            "message": "repeats an earlier item of this batch with other values",
        }
    ]


# --- journal and signal -------------------------------------------------------------------------


@pytest.mark.django_db
def test_each_patient_s_batch_writes_one_audit_event(clinic, patient_a, team_a, clinician_a):
    other = PatientFactory(care_team=team_a)
    before = AuditEvent.objects.count()
    body = post(
        clinic,
        [
            lab(patient_a),
            lab(other),
            lab(patient_a, value=40, hours_ago=5),
            lab(other, value=4.8, hours_ago=6),
        ],
    ).json()
    assert body["accepted"] == 3
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(2, "value")]
    events = AuditEvent.objects.order_by("sequence")[before:]
    batches = {e.patient_id: e for e in events if e.object_type == "lab_batch"}
    assert set(batches) == {patient_a.pk, other.pk}
    assert batches[patient_a.pk].detail["accepted"] == 1
    assert batches[patient_a.pk].detail["rejected"] == 1
    assert batches[patient_a.pk].outcome == "partial"
    assert batches[other.pk].detail["accepted"] == 2
    assert batches[other.pk].actor_id == clinician_a.pk


@pytest.mark.django_db
def test_labs_recorded_is_sent_on_commit_when_something_was_stored(clinic, patient_a):
    received = []

    def receiver(sender, patient_id, **kwargs):
        received.append(patient_id)

    labs_recorded.connect(receiver)
    try:
        with TestCase.captureOnCommitCallbacks(execute=True):
            post(clinic, [lab(patient_a, value=99)])
        assert received == []
        with TestCase.captureOnCommitCallbacks(execute=True) as callbacks:
            post(clinic, [lab(patient_a)])
            assert received == []  # not before the commit
        assert callbacks and received == [patient_a.pk]
    finally:
        labs_recorded.disconnect(receiver)


@pytest.mark.django_db
def test_a_system_import_is_stored_without_a_recorder_and_journalled_by_component(patient_a):
    item = {k: v for k, v in lab(patient_a).items() if k != "patient"}  # the caller chose
    with transaction.atomic():
        result = record_labs(patient=patient_a, items=[item], actor=LABS_IMPORT)
    assert result.accepted == 1
    assert LabResult.objects.get().recorded_by is None
    event = AuditEvent.objects.filter(object_type="lab_batch").get()
    assert event.actor_id is None
    assert event.component == "patients.record_labs"


# --- who may record -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_patient_may_not_record_their_own_labs(patient_a):
    response = post(bearer_client(patient_a.user), [lab(patient_a)])
    assert response.status_code == 403
    assert not LabResult.objects.exists()


@pytest.mark.django_db
def test_another_team_s_patient_is_404_and_nothing_of_the_batch_is_stored(
    clinic, patient_a, patient_b
):
    response = post(clinic, [lab(patient_a), lab(patient_b)])
    assert response.status_code == 404
    assert not LabResult.objects.exists()
    assert post(bearer_client(patient_a.user), [lab(patient_b)]).status_code == 404


@pytest.mark.django_db
def test_an_auditor_records_nothing(auditor, patient_a):
    assert post(bearer_client(auditor), [lab(patient_a)]).status_code in (403, 404)
    assert not LabResult.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ("[]", "labs"),
        ('{"labs": []}', "labs"),
        ('{"labs": {}}', "labs"),
        ('{"labs": [{"code": "2823-3", "value": 4, "unit": "mmol/L"}]}', "labs.0.patient"),
        ('{"labs": [{"patient": "1", "code": "2823-3"}]}', "labs.0.patient"),
        ('{"labs": [{"patient": true, "code": "2823-3"}]}', "labs.0.patient"),
        ('{"labs": ["x"]}', "labs.0"),
    ],
)
def test_a_body_that_is_not_the_shape_is_400(clinic, payload, field):
    response = clinic.post(LABS, data=payload, content_type="application/json")
    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
    assert not LabResult.objects.exists()


# --- reading them back --------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_clinician_reads_a_patient_s_labs_newest_first_as_numbers_journalled(
    clinic, patient_a, clinician_a
):
    post(
        clinic,
        [
            lab(patient_a, "2823-3", "4.25", "mmol/L", hours_ago=30, client_id="k"),
            lab(patient_a, "2160-0", 97, "umol/L", hours_ago=3, client_id="c"),
        ],
    )
    reads = AuditEvent.objects.filter(action="read", object_type="lab")
    before = reads.count()
    response = clinic.get(f"{LABS}?patient={patient_a.pk}")
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["client_id"] for row in rows] == ["c", "k"]
    creatinine, potassium = rows
    assert creatinine["value"] == 1.097 and creatinine["unit"] == "mg/dL"
    assert creatinine["original_value"] == 97 and creatinine["original_unit"] == "umol/L"
    assert potassium["value"] == 4.25 and potassium["patient"] == patient_a.pk
    assert potassium["recorded_by"] == clinician_a.pk
    assert reads.count() == before + 1
    assert reads.order_by("sequence").last().patient_ids == [patient_a.pk]
    only = clinic.get(f"{LABS}?patient={patient_a.pk}&code=2823-3").json()["results"]
    assert [row["client_id"] for row in only] == ["k"]


@pytest.mark.django_db
def test_reading_labs_needs_a_visible_patient(clinic, patient_b, patient_a):
    assert clinic.get(f"{LABS}?patient={patient_b.pk}").status_code == 404
    missing = clinic.get(LABS)
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "patient"
    assert clinic.get(f"{LABS}?patient=abc").status_code == 400


@pytest.mark.django_db
def test_the_openapi_document_describes_labs(api_client):
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    operations = response.json()["paths"][LABS]
    assert {"get", "post"} <= set(operations)
    body = operations["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "oneOf" in body


# --- the database has the last word -------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [
        {"code": "2951-2"},
        {"value": Decimal("0")},
        {"value": Decimal("-1")},
        {"unit": "umol/L", "code": "2160-0"},
    ],
)
def test_constraints_refuse_what_validation_refuses(patient_a, fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        LabResultFactory(patient=patient_a, **fields)


@pytest.mark.django_db
def test_a_client_id_is_stored_once_per_patient(patient_a, patient_b):
    LabResultFactory(patient=patient_a, client_id="same")
    LabResultFactory(patient=patient_b, client_id="same")
    with pytest.raises(IntegrityError), transaction.atomic():
        LabResultFactory(patient=patient_a, client_id="same")


# --- latest_labs --------------------------------------------------------------------------------


def _at(days_ago: float) -> datetime:
    return timezone.now() - timedelta(days=days_ago)


@pytest.mark.django_db
def test_latest_labs_is_empty_without_results(patient_a):
    assert latest_labs(patient_a, timezone.now()) == LabSnapshot()


@pytest.mark.django_db
def test_latest_potassium_is_the_newest_observed_at_or_before_now(patient_a):
    LabResultFactory(patient=patient_a, value=Decimal("4.1"), observed_at=_at(20))
    LabResultFactory(patient=patient_a, value=Decimal("5.6"), observed_at=_at(2))
    LabResultFactory(patient=patient_a, value=Decimal("3.2"), observed_at=_at(-1))  # not yet
    now = timezone.now()
    snapshot = latest_labs(patient_a, now)
    assert snapshot.potassium_mmol_l.value == Decimal("5.6")
    assert snapshot.egfr_ml_min is None
    earlier = latest_labs(patient_a, _at(10))
    assert earlier.potassium_mmol_l.value == Decimal("4.1")


@pytest.mark.django_db
def test_egfr_is_the_reported_one_when_it_is_newer_than_the_creatinine(patient_a):
    LabResultFactory(
        patient=patient_a, code="2160-0", value=Decimal("1.0"), unit="mg/dL", observed_at=_at(30)
    )
    reported = LabResultFactory(
        patient=patient_a, code="98979-8", value=Decimal("44"), unit=EGFR_UNIT, observed_at=_at(5)
    )
    snapshot = latest_labs(patient_a, timezone.now())
    assert snapshot.egfr_ml_min == LabValue(Decimal("44.000"), reported.observed_at)


@pytest.mark.django_db
def test_egfr_is_computed_from_a_newer_creatinine_with_age_at_that_date_and_sex(team_a):
    observed = _at(3)
    woman = PatientFactory(care_team=team_a, sex="female", birth_year=observed.year - 50)
    LabResultFactory(
        patient=woman, code="62238-1", value=Decimal("90"), unit=EGFR_UNIT, observed_at=_at(40)
    )
    LabResultFactory(
        patient=woman, code="2160-0", value=Decimal("1.0"), unit="mg/dL", observed_at=observed
    )
    snapshot = latest_labs(woman, timezone.now())
    # 142 × (1.0/0.7)^-1.200 × 0.9938^50 × 1.012 = 68.63 (see tests/patients/test_labs.py)
    assert snapshot.egfr_ml_min == LabValue(Decimal("68.6"), observed)


@pytest.mark.django_db
def test_egfr_for_an_unknown_sex_fails_closed_to_the_lower_estimate(team_a):
    observed = _at(1)
    patient = PatientFactory(care_team=team_a, sex="unknown", birth_year=observed.year - 62)
    LabResultFactory(
        patient=patient, code="2160-0", value=Decimal("1.1"), unit="mg/dL", observed_at=observed
    )
    # female 56.81, male 75.90: the lower one.
    assert latest_labs(patient, timezone.now()).egfr_ml_min.value == Decimal("56.8")
