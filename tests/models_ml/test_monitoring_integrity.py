"""Monitoring an admin can act on (issue 11): reference and live windows under the same
selection, verdicts that know when there is too little data, an outcome monitor that sees a
systematic error of clinical size — and what an alert does to serving: escalations go to a
clinician, step-downs for low pressure still reach one, inputs outside the training ranges are
named."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.utils import timezone

from clinicians.evaluation import evaluate_patient
from clinicians.models import Recommendation, RecommendationStatus, Tier
from clinicians.tasks import monitor_models
from models_ml import alerts, dataset_store, monitoring, registry
from models_ml.candidate import input_ranges
from models_ml.dataset import TrainingSet, simulated_training_set
from models_ml.dose_model import MODEL_KIND, save_dose_model, train_dose_model
from models_ml.drift import MIN_WINDOW_ROWS, detection_power, drift_report
from models_ml.features import FEATURE_NAMES, STATE_FEATURES
from models_ml.models import DriftReport, ModelAlert, ModelVersion, Stage
from models_ml.monitoring import (
    PREDICTION,
    UNIT,
    assess,
    record_serving_reference,
    simulate_serving,
)
from models_ml.outcome_monitor import MIN_OUTCOMES, outcome_report
from patients.course import rules_record
from patients.models import Device, Reading
from tests.clinicians.conftest import course_ready
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

VERSION = "dose-gbr-901"
# Smaller than production's 1,000 patients (about 20 s): 600 patients give ~520 with proposals.
REFERENCE = {"n_patients": 600, "days": 182, "seed": 9090, "interval_days": 14}
COLUMNS = {"features": list(STATE_FEATURES), "predictions": [PREDICTION], "unit_column": UNIT}


@dataclass
class Trained:
    training: TrainingSet
    train_features: np.ndarray
    model: object
    path: Path
    sha256: str
    reference: pd.DataFrame  # the serving reference of REFERENCE
    fresh: pd.DataFrame  # other patients of the same population, served, with outcomes


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    training = simulated_training_set(n_patients=160, seed=5)
    train, _ = training.split_by_patient(0.2, 5)
    model = train_dose_model(train.features, train.targets, seed=5)
    path = tmp_path_factory.mktemp("models") / f"{VERSION}.skops"
    sha256 = save_dose_model(model, path)
    return Trained(
        training=training,
        train_features=train.features,
        model=model,
        path=path,
        sha256=sha256,
        reference=simulate_serving(model, VERSION, **REFERENCE),
        fresh=simulate_serving(model, VERSION, n_patients=400, seed=31, with_outcomes=True),
    )


@pytest.fixture
def production(trained, monkeypatch) -> ModelVersion:
    """The trained model registered and in production, its serving reference on record."""
    monkeypatch.setattr(monitoring, "REFERENCE_COHORT", REFERENCE)
    version = registry.register(
        version=VERSION,
        kind=MODEL_KIND,
        path=trained.path,
        sha256=trained.sha256,
        dataset=dataset_store.snapshot(trained.training, budget_epsilon=6.0),
        parameters={"seed": 5},
        metrics={"held_out_mae_systolic_mmhg": 4.5},
        reference={},
        privacy={},
        input_ranges=input_ranges(trained.train_features),
    )
    record_serving_reference(version, trained.reference)
    version.stage, version.course_rules = Stage.PRODUCTION, rules_record()
    version.save(update_fields=["stage", "course_rules"])
    return version


def one_row_per_patient(frame: pd.DataFrame, patients: int, seed: int) -> pd.DataFrame:
    """A window of ``patients`` distinct patients, one decision each (as a week of a clinic)."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(frame[UNIT].unique(), size=patients, replace=False)
    rows = frame[frame[UNIT].isin(chosen)]
    return rows.groupby(UNIT).sample(1, random_state=seed).reset_index(drop=True)


def shifted(frame: pd.DataFrame, mmhg: float) -> pd.DataFrame:
    return frame.assign(mean_systolic_7d=frame["mean_systolic_7d"] + mmhg)


def judge(production, window: pd.DataFrame, outcomes=(), window_name="weekly"):
    return assess(
        production,
        window=window_name,
        current=window,
        decided=0,
        overridden=0,
        outcomes=list(outcomes),
    )


# --- same selection ------------------------------------------------------------------------


def test_other_patients_of_the_same_population_raise_no_drift_alarm(production, trained):
    window = one_row_per_patient(trained.fresh, 300, seed=1)
    report = judge(production, window)
    assert report.verdicts["drift"] == "ok", report.drift["summary"]
    assert report.alerts == [] and not ModelAlert.objects.exists()
    stored = DriftReport.objects.get(model_version=production, monitor="drift")
    assert (stored.verdict, stored.live_rows) == ("ok", 300)
    assert stored.reference_rows == trained.reference[UNIT].nunique()
    # Every decision of those patients (several rows each): still the same population.
    assert drift_report(trained.reference, trained.fresh, **COLUMNS).verdict == "ok"


def test_the_exploration_reference_would_have_cried_wolf_on_the_same_population(trained):
    """The audit's finding, kept as a reminder of why the reference is simulated serving: the
    training rows (an exploration policy at every decision day) against the same patients'
    proposals alarm on mean systolic."""
    exploration = pd.DataFrame(trained.train_features, columns=list(FEATURE_NAMES))
    exploration[PREDICTION] = trained.model.predict(trained.train_features)[:, 0]
    window = one_row_per_patient(trained.fresh, 300, seed=1)
    report = drift_report(
        exploration, window, features=list(STATE_FEATURES), predictions=[PREDICTION]
    )
    assert report.verdict == "alarm" and "mean_systolic_7d" in report.drifted_columns


# --- sample size -----------------------------------------------------------------------------


def test_an_8_mmhg_systolic_shift_alarms_at_the_documented_minimum_window(production, trained):
    assert MIN_WINDOW_ROWS == 50
    window = one_row_per_patient(trained.fresh, MIN_WINDOW_ROWS, seed=7)
    assert judge(production, window).verdicts["drift"] == "ok"

    report = judge(production, shifted(window, 8.0))
    assert report.verdicts["drift"] == "alarm"
    assert "mean_systolic_7d" in report.drift["drifted_columns"]
    assert report.alerts == ["drift"]
    alert = ModelAlert.objects.get(model_version=production, kind="drift")
    assert "mean_systolic_7d" in alert.evidence["drifted"] and alert.status == "open"
    assert DriftReport.objects.filter(monitor="drift", verdict="alarm", live_rows=50).exists()


def test_detection_at_the_minimum_window_is_not_luck(trained):
    """40 windows of 50 other patients: the +8 mmHg shift is caught in at least 90 % of them
    (documented: 99 % with the 1,000-patient reference), the unshifted window almost never."""
    alarms, false_alarms = 0, 0
    for seed in range(40):
        window = one_row_per_patient(trained.fresh, MIN_WINDOW_ROWS, seed=100 + seed)
        false_alarms += drift_report(trained.reference, window, **COLUMNS).verdict == "alarm"
        alarms += (
            drift_report(trained.reference, shifted(window, 8.0), **COLUMNS).verdict == "alarm"
        )
    assert alarms >= 36 and false_alarms <= 1


def test_detection_power_recomputes_the_figure_for_a_reference(trained):
    figures = detection_power(
        trained.reference, rows=MIN_WINDOW_ROWS, replicates=30, seed=1, **COLUMNS
    )
    assert figures["power"] >= 0.9 and figures["false_alarm_rate"] <= 0.05


def test_a_device_reading_8_mmhg_high_end_to_end_alarms_from_100_patients(trained):
    """Every systolic reading 8 mmHg high before the model decides: the policy then also
    proposes to patients it would have held, which blurs the shift (documented: 97 % at 100)."""
    offset = simulate_serving(
        trained.model, VERSION, n_patients=300, seed=41, systolic_offset_mmhg=8.0
    )
    report = drift_report(trained.reference, one_row_per_patient(offset, 100, seed=2), **COLUMNS)
    assert report.verdict == "alarm" and "mean_systolic_7d" in report.drifted_columns


def test_a_window_below_the_minimum_is_insufficient_and_says_why(production, trained):
    window = shifted(one_row_per_patient(trained.fresh, MIN_WINDOW_ROWS - 1, seed=3), 20.0)
    report = judge(production, window)
    assert report.verdicts["drift"] == "insufficient"
    assert report.alerts == [] and not ModelAlert.objects.exists()
    stored = DriftReport.objects.get(monitor="drift")
    assert (stored.verdict, stored.live_rows) == ("insufficient", 49)
    assert stored.report["summary"] == (
        "Too little data to judge: the window holds 49 patients; at least 50 are needed."
    )
    # Nothing at all is a verdict too, not silence.
    empty = judge(production, monitoring.current_frame([]))
    assert empty.verdicts == {
        "drift": "insufficient",
        "outcome": "insufficient",
        "overrides": "insufficient",
    }
    assert DriftReport.objects.filter(monitor="drift", verdict="insufficient").count() == 2


def test_a_short_window_with_too_little_data_is_lengthened(production, trained):
    """The daily run of a small clinic: nothing yesterday, 60 patients over four weeks. The
    monitor looks back 1, 7, then 28 days and judges there."""
    now = timezone.now()
    rows = one_row_per_patient(trained.fresh, 60, seed=4)
    asked = []

    def gather(since, until):
        asked.append((until - since).days)
        if until - since < timedelta(days=28):
            return {"rows": [], "decided": 0, "overridden": 0, "outcomes": []}
        return {"rows": evidence_rows(rows), "decided": 0, "overridden": 0, "outcomes": []}

    report = monitoring.monitor(production, window="daily", gather=gather, now=now)
    assert asked == [1, 7, 28, 91]  # outcomes and overrides had too little everywhere
    assert report.verdicts["drift"] == "ok"
    drift = DriftReport.objects.get(monitor="drift")
    assert drift.window_start == now - timedelta(days=28) and drift.live_rows == 60
    outcome = DriftReport.objects.get(monitor="outcome")
    assert outcome.verdict == "insufficient" and outcome.window_start == now - timedelta(days=91)


def evidence_rows(frame: pd.DataFrame):
    """Simulated decisions in the shape recommendations store them (evidence, effect, patient)."""
    return [
        (
            {"features": {name: float(row[name]) for name in STATE_FEATURES}},
            {"systolic_mmhg": float(row[PREDICTION])},
            row[UNIT],
        )
        for _, row in frame.iterrows()
    ]


# --- outcomes ----------------------------------------------------------------------------------


def outcomes_of(frame: pd.DataFrame, n: int, seed: int, bias_on_falls: float = 0.0):
    """(expected, realised) pairs; a biased model expects ``bias_on_falls`` mmHg more (or
    less) on every predicted fall than the honest one did."""
    done = frame.dropna(subset=["realised"]).sample(n, random_state=seed)
    expected = done[PREDICTION].to_numpy()
    expected = np.where(expected < 0, expected + bias_on_falls, expected)
    return list(zip(expected.tolist(), done["realised"].tolist(), strict=True))


@pytest.mark.parametrize("bias", [-8.0, 8.0])
def test_a_model_biased_by_8_mmhg_on_every_predicted_fall_is_caught(production, trained, bias):
    honest = judge(production, monitoring.current_frame([]), outcomes_of(trained.fresh, 50, 1))
    assert honest.verdicts["outcome"] == "ok", honest.outcome["summary"]

    report = judge(
        production, monitoring.current_frame([]), outcomes_of(trained.fresh, 50, 1, bias)
    )
    assert report.verdicts["outcome"] == "alarm"
    assert report.outcome["biased_strata"] == ["all"]  # fewer than 50 falls: judged in the pool
    assert report.alerts == ["outcome_bias"]
    # The earlier monitor (mean absolute error above twice the held-out MAE) missed it.
    assert report.outcome["has_decay"] is False
    alert = ModelAlert.objects.get(kind="outcome_bias")
    assert alert.evidence["mean_error_mmhg"]["predicted_fall"] == pytest.approx(-bias, abs=3)
    assert "beyond the ±3 mmHg tolerated" in alert.message


def test_the_outcome_monitor_catches_bias_reliably_and_leaves_honest_models_alone(trained):
    caught = {0.0: 0, -8.0: 0, 8.0: 0}
    for seed in range(100):
        for bias in caught:
            report = outcome_report(outcomes_of(trained.fresh, MIN_OUTCOMES, seed, bias))
            caught[bias] += report.verdict == "alarm"
    assert caught[0.0] == 0
    assert caught[-8.0] >= 90 and caught[8.0] >= 90


def test_too_few_outcomes_are_insufficient(trained):
    report = outcome_report(outcomes_of(trained.fresh, MIN_OUTCOMES - 1, 1, 8.0))
    assert report.verdict == "insufficient"
    assert report.summary == (
        "Too little data to judge: 49 outcomes of applied changes; at least 50 are needed."
    )


def test_the_beat_task_judges_real_recommendations_and_their_outcomes(production, trained, team_a):
    """Through the database: 60 patients' model proposals ten days ago, applied twenty days
    ago, with home readings after. Honest: every monitor ok; one report per monitor."""
    seed_applied_proposals(production, trained, team_a, bias_on_falls=0.0)
    assert monitor_models("daily") == []
    latest = {r.monitor: r for r in DriftReport.objects.filter(model_version=production)}
    assert {m: r.verdict for m, r in latest.items()} == {
        "drift": "ok",
        "outcome": "ok",
        "overrides": "ok",
    }
    assert latest["drift"].live_rows == 60 and latest["outcome"].live_rows == 60


def test_the_beat_task_raises_an_outcome_alert_for_a_biased_model(production, trained, team_a):
    seed_applied_proposals(production, trained, team_a, bias_on_falls=-8.0)
    # Its predictions are 8 mmHg lower than the reference's too: the drift monitor sees that.
    assert monitor_models("weekly") == ["drift", "outcome_bias"]
    alert = ModelAlert.objects.get(kind="outcome_bias")
    assert alert.evidence["mean_error_mmhg"]["predicted_fall"] == pytest.approx(8, abs=3)
    assert "prediction" in ModelAlert.objects.get(kind="drift").evidence["drifted"]
    assert DriftReport.objects.get(monitor="outcome").verdict == "alarm"


def seed_applied_proposals(production, trained, team, *, bias_on_falls: float) -> None:
    now = timezone.now()
    rows = trained.fresh.dropna(subset=["realised"])
    rows = one_row_per_patient(rows, 60, seed=5)
    for i, row in rows.iterrows():
        patient = PatientFactory(care_team=team)
        device = Device.objects.create(patient=patient, device_id=f"cuff-{i}")
        before = float(row["mean_systolic_7d"])
        expected = float(row[PREDICTION])
        expected = expected + bias_on_falls if expected < 0 else expected
        decided = now - timedelta(days=20)
        Recommendation.objects.create(
            patient=patient,
            kind="titrate",
            medication="amlodipine",
            current_dose_mg=Decimal("5"),
            proposed_dose_mg=Decimal("10"),
            tier=Tier.PATIENT,
            status=RecommendationStatus.ACKNOWLEDGED,
            reason="test",
            expected_effect={"systolic_mmhg": expected},
            evidence={
                "mean_systolic_7d": before,
                "features": {name: float(row[name]) for name in STATE_FEATURES},
            },
            model_version=production.version,
            created_at=now - timedelta(days=10),
            decided_at=decided,
        )
        after = round(before + float(row["realised"]))
        Reading.objects.bulk_create(
            Reading(
                patient=patient,
                device=device,
                client_id=f"after-{i}-{day}",
                reading_type="blood_pressure",
                systolic_mmhg=after,
                diastolic_mmhg=80,
                measured_at=decided + timedelta(days=day),
                received_at=decided + timedelta(days=day),
            )
            for day in (8, 9, 10)
        )


# --- what an alert does to serving --------------------------------------------------------------


def reading(patient, systolic: int, diastolic: int, hours_ago: float = 0.5) -> None:
    device, _ = Device.objects.get_or_create(patient=patient, device_id="cuff-1")
    moment = timezone.now() - timedelta(hours=hours_ago)
    Reading.objects.create(
        patient=patient,
        device=device,
        client_id=f"new-{moment.timestamp()}",
        reading_type="blood_pressure",
        systolic_mmhg=systolic,
        diastolic_mmhg=diastolic,
        measured_at=moment,
        received_at=timezone.now(),
    )


def watch_week(patient, clinician, *, systolic: int, diastolic: int, dose: str) -> None:
    """A patient whose week looks like the training data: amlodipine at ``dose`` for a month,
    bounds, logged intakes, and a week of a watch's readings — five blood pressures a day
    with a day-to-day spread, heart rate with each, steps."""
    course_ready(patient, clinician, dose=dose, readings=0)
    device, _ = Device.objects.get_or_create(patient=patient, device_id="cuff-1")
    now = timezone.now()
    spread = (12, -9, 5, -14, 15, -4, -8, 3)  # mean 0, SD 10
    readings = []
    for day in range(7):
        for k in range(5):
            moment = now - timedelta(days=day, hours=5 * k + 1)
            noise = spread[(day * 5 + k) % len(spread)]
            readings += [
                Reading(
                    patient=patient,
                    device=device,
                    client_id=f"bp-{day}-{k}",
                    reading_type="blood_pressure",
                    systolic_mmhg=systolic + noise,
                    diastolic_mmhg=diastolic + noise // 2,
                    measured_at=moment,
                    received_at=now,
                ),
                Reading(
                    patient=patient,
                    device=device,
                    client_id=f"hr-{day}-{k}",
                    reading_type="heart_rate",
                    value=70 + noise // 3,
                    measured_at=moment,
                    received_at=now,
                ),
            ]
        readings.append(
            Reading(
                patient=patient,
                device=device,
                client_id=f"steps-{day}",
                reading_type="steps",
                value=6000,
                measured_at=now - timedelta(days=day, hours=2),
                received_at=now,
            )
        )
    Reading.objects.bulk_create(readings)


def latest_proposal(patient) -> Recommendation:
    return Recommendation.objects.filter(patient=patient).latest("created_at", "pk")


def codes(recommendation: Recommendation) -> list[str]:
    return [reason["code"] for reason in recommendation.reasons]


def open_drift_alert(production) -> ModelAlert:
    return alerts.raise_alert(
        production, kind="drift", message="weekly drift in mean_systolic_7d", evidence={}
    )


def test_an_open_drift_alert_does_not_stop_a_step_down_for_low_pressure(
    production, clinician_a, patient_a
):
    """The audit's finding: an open alert blocked every proposal, the model's step-downs for
    low pressure included. Now the step-down reaches the clinician, the alert named."""
    open_drift_alert(production)
    watch_week(patient_a, clinician_a, dose="10", systolic=102, diastolic=66)
    evaluate_patient(patient_a.pk)
    proposal = latest_proposal(patient_a)
    assert proposal.model_version == VERSION  # the model's own step-down
    assert proposal.kind == "titrate" and proposal.proposed_dose_mg < proposal.current_dose_mg
    assert proposal.tier == Tier.CLINICIAN and proposal.status == "pending_review"
    assert codes(proposal) == ["model_alert_open"]
    message = proposal.reasons[0]["message"]
    assert message.startswith(f"Model {VERSION} is under a monitoring alert — drift (open since")


def test_while_an_alert_is_in_force_escalations_go_to_the_clinician_until_it_is_closed(
    production, clinician_a, patient_a, model_owner
):
    watch_week(patient_a, clinician_a, dose="2.5", systolic=150, diastolic=92)
    evaluate_patient(patient_a.pk)
    delivered = latest_proposal(patient_a)
    assert delivered.model_version == VERSION and delivered.tier == Tier.PATIENT

    alert = open_drift_alert(production)
    reading(patient_a, 151, 92)
    evaluate_patient(patient_a.pk)
    delivered.refresh_from_db()
    assert delivered.status == RecommendationStatus.SUPERSEDED  # withdrawn from the phone
    held = latest_proposal(patient_a)
    assert held.tier == Tier.CLINICIAN and held.status == "pending_review"
    assert "model_alert_open" in codes(held)
    message = next(r["message"] for r in held.reasons if r["code"] == "model_alert_open")
    assert "weekly drift in mean_systolic_7d" in message and "model owner closes" in message

    alerts.acknowledge(alert, model_owner)  # looking is not fixing
    reading(patient_a, 152, 93)
    evaluate_patient(patient_a.pk)
    assert latest_proposal(patient_a).tier == Tier.CLINICIAN

    alerts.close(alert, model_owner, "reference rebuilt; the shift was the new cuff")
    reading(patient_a, 150, 92)
    evaluate_patient(patient_a.pk)
    again = latest_proposal(patient_a)
    assert again.tier == Tier.PATIENT and "model_alert_open" not in codes(again)


def test_an_input_outside_the_training_range_sends_the_proposal_to_the_clinician(
    production, clinician_a, patient_a
):
    ModelVersion.objects.filter(pk=production.pk).update(
        input_ranges={**production.input_ranges, "mean_systolic_7d": [120.0, 140.0]}
    )
    watch_week(patient_a, clinician_a, dose="2.5", systolic=150, diastolic=92)
    evaluate_patient(patient_a.pk)
    proposal = latest_proposal(patient_a)
    assert proposal.model_version == VERSION
    assert proposal.tier == Tier.CLINICIAN and proposal.status == "pending_review"
    assert codes(proposal) == ["input_out_of_range"]
    assert re.fullmatch(
        "Outside what the model saw in training: 7-day mean systolic 1[45][0-9] mmHg, range "
        "seen in training 120–140 mmHg. A clinician decides.",
        proposal.reasons[0]["message"],
    )


def test_a_week_unlike_the_training_data_is_named_input_by_input(
    production, clinician_a, patient_a
):
    """A cuff without a watch: 14 identical readings, no heart rate, no steps — the simulated
    training cohort never looked like that."""
    course_ready(patient_a, clinician_a, dose="2.5", systolic=150, diastolic=92)
    evaluate_patient(patient_a.pk)
    proposal = latest_proposal(patient_a)
    assert proposal.tier == Tier.CLINICIAN and codes(proposal) == ["input_out_of_range"]
    message = proposal.reasons[0]["message"]
    assert "readings in 7 days 14, range seen in training" in message
    assert "mean heart rate 0 /min" in message and "daily steps 0 steps" in message


def test_a_model_without_input_ranges_is_not_checked(production, clinician_a, patient_a):
    ModelVersion.objects.filter(pk=production.pk).update(input_ranges={})
    course_ready(patient_a, clinician_a, dose="2.5", systolic=150, diastolic=92)  # see above
    evaluate_patient(patient_a.pk)
    proposal = latest_proposal(patient_a)
    assert proposal.tier == Tier.PATIENT and "input_out_of_range" not in codes(proposal)
