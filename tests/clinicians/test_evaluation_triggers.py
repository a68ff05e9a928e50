"""Which uploads lead to an evaluation, and what an evaluation that cannot change anything costs
(issue 17: "no full evaluation for an upload that cannot change it").

Reproduced first, as the outside run found them: every upload — heart-rate-only ones included —
ran the inline safety check and a full evaluation; a change a clinician had just rejected was
proposed again by the next upload, and pushed to the care team again, upload after upload; and
every run explained its proposal (SHAP) even when the same proposal was already open."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import Action, AuditEvent
from clinicians import decisions
from clinicians.evaluation import OPEN_STATUSES, evaluate_patient
from clinicians.models import (
    Alert,
    AlertKind,
    EvaluationState,
    Recommendation,
    RecommendationStatus,
)
from tests.clinicians.conftest import course_ready
from tests.conftest import PASSWORD, bearer_client

pytestmark = pytest.mark.django_db


def _reading(kind: str, i: int, minutes_ago: float, **values) -> dict:
    moment = timezone.now() - timedelta(minutes=minutes_ago)
    return {
        "client_id": f"{kind}-{i}-{moment.timestamp()}",
        "type": kind,
        "measured_at": moment.isoformat(),
        "device_id": "watch-1",
        **values,
    }


def heart_rate(i: int, minutes_ago: float = 0.0, bpm: int = 72) -> dict:
    return _reading("heart_rate", i, minutes_ago, value=bpm, unit="/min")


def steps(i: int, minutes_ago: float = 0.0, count: int = 120) -> dict:
    return _reading("steps", i, minutes_ago, value=count, unit="{steps}")


def blood_pressure(i: int, minutes_ago: float = 0.0, systolic=152, diastolic=94) -> dict:
    return _reading(
        "blood_pressure", i, minutes_ago, systolic=systolic, diastolic=diastolic, unit="mm[Hg]"
    )


def upload(phone, readings: list[dict]):
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = phone.post("/api/v1/readings/", {"readings": readings}, format="json")
    assert response.status_code == 201, response.content
    return response


def evaluations(patient) -> int:
    return AuditEvent.objects.filter(action=Action.EVALUATE, patient_id=patient.pk).count()


def runs(patient) -> int:
    return EvaluationState.objects.get(patient=patient).runs


@pytest.mark.parametrize("make", [heart_rate, steps], ids=["heart-rate", "steps"])
def test_an_upload_without_blood_pressure_runs_neither_the_safety_check_nor_an_evaluation(
    clinician_a, patient_a, make
):
    """No safety rule reads heart rate or steps, and they alone do not move a dose decision:
    they wait for the next blood-pressure evaluation (below). Before: a full evaluation, and the
    safety rules with the whole week read, for each of them."""
    course_ready(patient_a, clinician_a)
    phone = bearer_client(patient_a.user)
    upload(phone, [blood_pressure(0, minutes_ago=30)])
    before_runs, before_events = runs(patient_a), evaluations(patient_a)
    with CaptureQueriesContext(connection) as queries:
        upload(phone, [make(i, minutes_ago=15 - i) for i in range(15)])
    assert runs(patient_a) == before_runs
    assert evaluations(patient_a) == before_events
    touched_alerts = [q["sql"] for q in queries.captured_queries if "clinicians_alert" in q["sql"]]
    assert touched_alerts == []


def test_heart_rate_enters_the_next_blood_pressure_evaluation(clinician_a, patient_a):
    course_ready(patient_a, clinician_a)
    phone = bearer_client(patient_a.user)
    upload(phone, [heart_rate(i, minutes_ago=20 - i, bpm=91) for i in range(10)])
    before = runs(patient_a) if EvaluationState.objects.filter(patient=patient_a) else 0
    upload(phone, [blood_pressure(1)])
    assert runs(patient_a) == before + 1
    rec = Recommendation.objects.filter(patient=patient_a).latest("pk")
    assert rec.evidence["features"]["mean_heart_rate_7d"] == pytest.approx(91.0)


def test_an_evaluation_without_new_blood_pressure_intake_or_lab_proposes_nothing_again(
    clinician_a, patient_a
):
    """The watermark is the newest blood-pressure reading, intake and laboratory result: an
    hourly sweep after heart-rate uploads runs the safety rules only."""
    course_ready(patient_a, clinician_a)
    evaluate_patient(patient_a.pk)
    phone = bearer_client(patient_a.user)
    upload(phone, [heart_rate(i, minutes_ago=10 - i) for i in range(10)])
    outcome = evaluate_patient(patient_a.pk)
    assert outcome.skipped and outcome.recommendation is None


def _open(patient) -> Recommendation:
    return Recommendation.objects.get(patient=patient, status__in=OPEN_STATUSES)


def _pending(patient) -> Recommendation:
    return Recommendation.objects.get(patient=patient, status=RecommendationStatus.PENDING_REVIEW)


def test_a_rejected_change_is_not_proposed_again_on_the_same_evidence(clinician_a, patient_a):
    """Reproduction: the clinician rejects amlodipine 2.5 → 5 mg; the next upload used to
    propose exactly that again (and push it to the team), and the next, and the next."""
    course_ready(patient_a, clinician_a, step="1")  # a 2.5 mg step needs a clinician
    evaluate_patient(patient_a.pk)
    first = _pending(patient_a)
    decisions.decide_recommendation(
        recommendation=first,
        actor=clinician_a,
        action="reject",
        reason="wants to see the effect of salt reduction first",
        password=PASSWORD,
    )
    phone = bearer_client(patient_a.user)
    for round_ in range(3):
        upload(phone, [blood_pressure(10 + round_, minutes_ago=5)])
    assert list(Recommendation.objects.filter(patient=patient_a)) == [first]
    state = EvaluationState.objects.get(patient=patient_a)
    held = {reason["code"]: reason["message"] for reason in state.hold_reasons}
    assert "rejected_recently" in held
    assert "rejected" in held["rejected_recently"]
    # The rejection stays with the team: the patient's screen does not say a change was rejected.
    screen = phone.get("/api/v1/me/medications/")
    assert screen.status_code == 200, screen.content
    assert "rejected_recently" not in {r["code"] for r in screen.json()["hold_reasons"]}
    assert "reject" not in screen.content.decode().lower()

    # A week on, on a new week of readings, the same change may be proposed again.
    with time_machine.travel(timezone.now() + timedelta(days=8), tick=False):
        phone = bearer_client(patient_a.user)
        intakes = [
            {
                "client_id": f"later-{day}",
                "medication": "amlodipine",
                "dose_mg": 2.5,
                "taken_at": (timezone.now() - timedelta(days=day, hours=1)).isoformat(),
            }
            for day in range(7)
        ]
        response = phone.post("/api/v1/medication-intakes/", {"intakes": intakes}, format="json")
        assert response.status_code == 201, response.content
        upload(phone, [blood_pressure(20 + i, minutes_ago=11 * 60 * i) for i in range(8)])
        again = _pending(patient_a)
    assert again.pk != first.pk
    assert (again.medication, again.proposed_dose_mg) == (first.medication, first.proposed_dose_mg)


def test_another_change_than_the_rejected_one_is_still_proposed(clinician_a, patient_a):
    """A rejected increase holds that increase only: low readings afterwards still lead to a
    step down, for a clinician."""
    course_ready(patient_a, clinician_a, step="1")
    evaluate_patient(patient_a.pk)
    first = _pending(patient_a)
    decisions.decide_recommendation(
        recommendation=first, actor=clinician_a, action="reject", reason="no", password=PASSWORD
    )
    phone = bearer_client(patient_a.user)
    low = [blood_pressure(30 + i, minutes_ago=i, systolic=86, diastolic=55) for i in range(30)]
    upload(phone, low)
    later = _pending(patient_a)
    assert (later.medication, later.current_dose_mg, later.proposed_dose_mg) == (
        "amlodipine",
        first.current_dose_mg,
        0,
    )


@pytest.fixture
def production_model(production_version):
    from models_ml import loaders
    from models_ml.models import Stage

    return loaders.loaded_in_stage(Stage.PRODUCTION)


def test_an_unchanged_proposal_is_not_explained_again(clinician_a, patient_a, production_model):
    """SHAP runs only for a proposal that is made: the same proposal already open costs the
    model's prediction, not its explanation."""
    course_ready(patient_a, clinician_a, step="1")
    calls = []
    model = production_model.model
    original = model.explain

    def counting(row):
        calls.append(1)
        return original(row)

    model.explain = counting
    try:
        evaluate_patient(patient_a.pk)
        assert len(calls) == 1
        made = _open(patient_a)
        phone = bearer_client(patient_a.user)
        upload(phone, [blood_pressure(40, minutes_ago=1)])
        assert _open(patient_a).pk == made.pk
        assert len(calls) == 1
    finally:
        model.explain = original


def test_the_hourly_sweep_evaluates_only_those_time_or_unseen_data_can_change(clinician_a, team_a):
    """It used to queue an evaluation for every patient every hour."""
    from clinicians.evaluation import patients_to_sweep
    from patients.models import Reading
    from tests.factories import PatientFactory

    def patient_with_readings(hours_ago: float):
        patient = PatientFactory(care_team=team_a)
        course_ready(patient, clinician_a, systolic=124, diastolic=76)  # at target: no alert
        Reading.objects.filter(patient=patient).update(
            measured_at=timezone.now() - timedelta(hours=hours_ago)
        )
        evaluate_patient(patient.pk)
        return patient

    settled = patient_with_readings(hours_ago=2)
    assert settled not in patients_to_sweep(timezone.now())

    going_quiet = patient_with_readings(hours_ago=2)  # in two days, with no reading, it is due
    with time_machine.travel(timezone.now() + timedelta(hours=49), tick=False):
        assert going_quiet in patients_to_sweep(timezone.now())
        evaluate_patient(going_quiet.pk)  # the stale-data alert opens
        assert going_quiet not in patients_to_sweep(timezone.now())

    unseen = patient_with_readings(hours_ago=2)
    phone = bearer_client(unseen.user)
    upload(phone, [heart_rate(i, minutes_ago=i) for i in range(5)])
    assert unseen not in patients_to_sweep(timezone.now())  # heart rate alone
    Reading.objects.create(
        patient=unseen,
        device=Reading.objects.filter(patient=unseen).first().device,
        client_id="queued-never",
        reading_type="blood_pressure",
        systolic_mmhg=150,
        diastolic_mmhg=90,
        measured_at=timezone.now(),
        received_at=timezone.now(),
    )  # stored, but its evaluation was never queued (the broker was down)
    assert unseen in patients_to_sweep(timezone.now())

    delivered = patient_with_readings(hours_ago=2)
    assert delivered not in patients_to_sweep(timezone.now())
    Recommendation.objects.create(
        patient=delivered,
        kind="titrate",
        medication="amlodipine",
        current_dose_mg=2.5,
        proposed_dose_mg=5,
        tier="patient",
        status=RecommendationStatus.DELIVERED,
        reason="test",
        model_version="protocol",
        created_at=timezone.now(),
    )
    assert delivered in patients_to_sweep(timezone.now())  # it expires

    # Above target, measuring, a proposal waiting for a clinician: nothing for the sweep (most
    # of a hypertension clinic looks like this).
    above = PatientFactory(care_team=team_a)
    course_ready(above, clinician_a, step="1")
    Reading.objects.filter(patient=above).update(measured_at=timezone.now() - timedelta(hours=2))
    evaluate_patient(above.pk)
    assert Alert.objects.filter(patient=above, kind=AlertKind.ABOVE_TARGET).exists()
    assert above not in patients_to_sweep(timezone.now())

    never = PatientFactory(care_team=team_a)
    assert never in patients_to_sweep(timezone.now())
    never.discharged_at = timezone.now()
    never.save(update_fields=["discharged_at"])
    assert never not in patients_to_sweep(timezone.now())


def test_a_repeat_evaluation_reads_the_course_once(clinician_a, patient_a):
    """What one evaluation costs the database when a new blood pressure repeats the open
    proposal: 31 statements before (the evaluation state read twice), 30 now. A budget, so
    that a read added to every run shows here first."""
    course_ready(patient_a, clinician_a)
    evaluate_patient(patient_a.pk)
    phone = bearer_client(patient_a.user)
    with TestCase.captureOnCommitCallbacks(execute=False):  # the upload's own run not started
        response = phone.post("/api/v1/readings/", {"readings": [blood_pressure(1)]}, format="json")
    assert response.status_code == 201
    with CaptureQueriesContext(connection) as queries:
        outcome = evaluate_patient(patient_a.pk)
    assert not outcome.skipped
    statements = [q["sql"] for q in queries.captured_queries]
    assert sum("clinicians_evaluationstate" in sql for sql in statements) == 2  # lock, save
    assert len(statements) <= 30, "\n".join(statements)
