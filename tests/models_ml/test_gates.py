"""The gates at their real sizes: a model trained on a representative simulated cohort is
promoted through every gate, no waiver; a deliberately biased candidate (trained only on
mild hypertension) is stopped — by the training-representativeness gate, which names the
baseline-severity band it lacks — and production is untouched. (Its fairness disparities were
"significant" only while a patient's ~12 rows counted as independent; clustered by patient
they are not, see tests/models_ml/test_gates_integrity.py.)"""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from models_ml import gate_evaluation, loaders, registry, training
from models_ml.models import ModelVersion, Stage
from models_ml.serving import serving_producer
from patients.course import rules_record

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gates-data")  # the evaluation cohort is built once


@pytest.fixture(autouse=True)
def _data_dir(settings, data_dir):
    settings.DATA_DIR = data_dir
    loaders._cache.clear()


def test_a_representative_model_passes_every_gate_and_a_biased_one_is_stopped(model_owner):
    good = training.train_model(n_patients=500, seed=7)
    report = gate_evaluation.evaluate(good.version)
    assert report.passed, [
        (r.name, r.detail.get("violations") or r.detail.get("failures")) for r in report.failed()
    ]
    registry.promote(good.version, actor=model_owner)
    good.refresh_from_db()
    assert good.stage == Stage.PRODUCTION and not good.waiver_reason
    # The record keeps the course rules the policy gate ran under; serving under weaker ones
    # (a shorter interval than validated) is refused, under the same or stricter is not.
    assert good.course_rules == rules_record(14)
    assert serving_producer(rules_record(14)).refusal == ""
    assert serving_producer(rules_record(28)).refusal == ""
    assert "weaker" in serving_producer(rules_record(7)).refusal
    _stored_explanations_add_up(model_owner)

    biased = training.train_model(n_patients=1500, seed=7, skew="mild-only")
    assert biased.dataset.source["skew"] == "mild-only"
    report = gate_evaluation.evaluate(biased.version)
    representativeness = next(
        result for result in report.results if result.name == "training_representativeness"
    )
    assert not representativeness.passed
    severity = representativeness.detail["subgroups"]["baseline_systolic_band=140-159"]
    assert severity["verdict"] == "under_represented" and severity["training_share"] < 0.1
    # Judged against the model now in production as well as the protocol, on the same patients.
    policy = next(result for result in report.results if result.name == "simulated_policy")
    assert policy.detail["references"]["production"] == good.version
    with pytest.raises(registry.PromotionRefused, match="training_representativeness"):
        registry.promote(biased.version, actor=model_owner)
    ModelVersion.objects.filter(pk=biased.pk).update(course_rules={})
    with pytest.raises(registry.PromotionRefused, match="course_rules"):
        registry.promote(biased.version, actor=model_owner, waiver_reason="reviewed by the board")
    biased.refresh_from_db()
    assert biased.stage == Stage.CANDIDATE
    assert ModelVersion.objects.get(stage=Stage.PRODUCTION) == good
    assert serving_producer().version == good.version
    assert AuditEvent.objects.filter(
        action="model_promotion_refused", object_id=str(biased.pk)
    ).exists()


def _stored_explanations_add_up(model_owner) -> None:
    """Serve the production model to simulated patients through the real evaluation path and
    check every stored explanation: base value + contributions = the stored prediction."""
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from clinicians.evaluation import evaluate_patient
    from clinicians.models import Recommendation, SafetyBounds
    from models_ml.simulator import generate_cohort, simulate_trace
    from patients.ingestion import record_readings
    from patients.models import Prescription
    from tests.factories import PatientFactory

    cohort = generate_cohort(12, seed=99)
    today = timezone.now().date()
    trace = simulate_trace(cohort, start_date=today - timedelta(days=6), days=7, seed=99)
    now = timezone.now()
    for index, virtual in enumerate(cohort):
        patient = PatientFactory(birth_year=today.year - virtual.demographics.age_years)
        for medication, dose in virtual.initial_regimen.items():
            Prescription.objects.create(
                patient=patient,
                medication=medication,
                dose_mg=dose,
                started_at=now - timedelta(days=30),
                source="import",
            )
        for medication in ("amlodipine", "lisinopril", "hydrochlorothiazide"):
            SafetyBounds.objects.create(
                patient=patient,
                medication=medication,
                min_dose_mg=Decimal("0"),
                max_dose_mg=Decimal("40")
                if medication == "lisinopril"
                else Decimal("10")
                if medication == "amlodipine"
                else Decimal("50"),
                max_auto_step_mg=Decimal("5"),
                target_systolic_mmhg=130,
                target_diastolic_mmhg=80,
                set_by=model_owner,
                confirmed_by=model_owner,
                confirmed_at=now,
            )
        record_readings(
            patient=patient, items=[r for r in trace.readings(index) if r["measured_at"] <= now]
        )
        evaluate_patient(patient.pk)
    stored = list(Recommendation.objects.filter(kind="titrate"))
    assert stored, "the production model proposed nothing for 12 simulated patients"
    for recommendation in stored:
        effect = recommendation.expected_effect
        total = effect["base_value_mmhg"] + sum(i["shap_mmhg"] for i in recommendation.explanation)
        assert abs(total - effect["systolic_mmhg"]) <= 0.051  # the prediction is stored to 0.1
        assert recommendation.model_version.startswith("dose-gbr")
