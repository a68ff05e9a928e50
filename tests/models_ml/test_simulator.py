"""The simulator's readings: shape, plausibility, determinism, device errors, demographics.

Clinical behaviour (circadian rhythm, drugs, adherence, course under a policy) is tested in
test_simulator_clinical.py. Numbers come from the simulator's parameter modules, not restated.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models_ml.simulator import (
    DRUGS,
    DeviceErrorModel,
    InvalidRegimen,
    ReadingCadence,
    cohort_readings,
    generate_cohort,
    make_patient,
    patient_readings,
    simulate_trace,
    validate_regimen,
)
from models_ml.simulator import parameters as p

START = date(2025, 3, 3)  # a Monday
BP_KEYS = {"client_id", "type", "systolic", "diastolic", "unit", "measured_at", "device_id"}
SCALAR_KEYS = {"client_id", "type", "value", "unit", "measured_at", "device_id"}
UNITS = {"blood_pressure": "mm[Hg]", "heart_rate": "/min", "steps": "{steps}"}


def assert_ingestion_shape_and_plausible(reading: dict) -> None:
    assert isinstance(reading["client_id"], str) and reading["client_id"]
    assert isinstance(reading["device_id"], str) and reading["device_id"]
    assert reading["unit"] == UNITS[reading["type"]]
    measured_at = reading["measured_at"]
    assert isinstance(measured_at, datetime) and measured_at.utcoffset() is not None
    if reading["type"] == "blood_pressure":
        assert set(reading) == BP_KEYS
        systolic, diastolic = reading["systolic"], reading["diastolic"]
        assert type(systolic) is int and type(diastolic) is int
        assert p.PLAUSIBLE_SYSTOLIC_MMHG[0] <= systolic <= p.PLAUSIBLE_SYSTOLIC_MMHG[1]
        assert p.PLAUSIBLE_DIASTOLIC_MMHG[0] <= diastolic <= p.PLAUSIBLE_DIASTOLIC_MMHG[1]
        assert systolic > diastolic
    else:
        assert set(reading) == SCALAR_KEYS
        assert type(reading["value"]) is int
        if reading["type"] == "heart_rate":
            low, high = p.PLAUSIBLE_HEART_RATE_BPM
            assert low <= reading["value"] <= high
        else:
            assert reading["value"] >= 0


@pytest.fixture(scope="module")
def cohort_60():
    return generate_cohort(60, seed=11)


def test_week_of_readings_for_60_patients_is_fast_shaped_and_plausible(cohort_60):
    started = time.perf_counter()
    readings = list(cohort_readings(cohort_60, start_date=START, days=7, seed=5))
    elapsed = time.perf_counter() - started

    assert elapsed < 2.0
    kinds = Counter(reading["type"] for reading in readings)
    assert set(kinds) == {"blood_pressure", "heart_rate", "steps"}
    # hourly heart rate and steps, a few BP readings a day
    assert kinds["heart_rate"] > 0.8 * 60 * 7 * 24
    assert 0.8 * 60 * 7 * ReadingCadence().bp_per_day < kinds["blood_pressure"]
    for reading in readings:
        assert_ingestion_shape_and_plausible(reading)


def test_same_seed_gives_identical_output_and_another_seed_differs(cohort_60):
    first = list(cohort_readings(cohort_60[:5], start_date=START, days=3, seed=1))
    again = list(cohort_readings(cohort_60[:5], start_date=START, days=3, seed=1))
    other = list(cohort_readings(cohort_60[:5], start_date=START, days=3, seed=2))

    assert first == again
    assert first != other
    assert generate_cohort(20, seed=3) == generate_cohort(20, seed=3)
    assert generate_cohort(20, seed=3) != generate_cohort(20, seed=4)


def test_client_ids_are_unique_except_duplicate_uploads_which_repeat_the_reading(cohort_60):
    device = dataclasses.replace(DeviceErrorModel(), duplicate_upload_probability=0.2)
    readings = list(
        cohort_readings(cohort_60[:10], start_date=START, days=3, seed=8, device=device)
    )

    by_id: dict[str, list[dict]] = {}
    for reading in readings:
        by_id.setdefault(reading["client_id"], []).append(reading)
    repeated = [group for group in by_id.values() if len(group) > 1]
    assert repeated, "duplicate uploads should occur at probability 0.2"
    assert all(len(group) == 2 and group[0] == group[1] for group in repeated)
    share = len(repeated) / len(by_id)
    assert share == pytest.approx(0.2, abs=0.03)

    no_duplicates = dataclasses.replace(device, duplicate_upload_probability=0.0)
    clean = list(
        cohort_readings(cohort_60[:10], start_date=START, days=3, seed=8, device=no_duplicates)
    )
    assert len({reading["client_id"] for reading in clean}) == len(clean)


def test_perfect_device_records_every_reading_on_time_and_gaps_remove_some():
    patient = make_patient("p1", utc_offset_hours=-5)
    cadence = ReadingCadence(bp_awake_per_day=5, bp_asleep_per_day=1)
    trace = simulate_trace(
        [patient],
        start_date=START,
        days=4,
        seed=3,
        device=DeviceErrorModel.perfect(),
        cadence=cadence,
    )
    readings = list(trace.readings())
    assert len(readings) == 4 * (cadence.bp_per_day + 24 + 24)
    bp_hours = trace.stacked("bp_hour")[0, 0]
    day_one = [r for r in readings if r["type"] == "blood_pressure"][: cadence.bp_per_day]
    local_hours = sorted(r["measured_at"].hour + r["measured_at"].minute / 60 for r in day_one)
    assert np.allclose(local_hours, np.sort(bp_hours), atol=1 / 60 + 1e-9)
    assert all(r["measured_at"].utcoffset().total_seconds() == -5 * 3600 for r in readings)

    gappy = dataclasses.replace(DeviceErrorModel.perfect(), gap_probability_per_day=1.0)
    with_gaps = list(
        simulate_trace([patient], start_date=START, days=4, seed=3, device=gappy).readings()
    )
    missing = dataclasses.replace(DeviceErrorModel.perfect(), missing_day_probability=1.0)
    none_at_all = list(
        simulate_trace([patient], start_date=START, days=4, seed=3, device=missing).readings()
    )
    assert len(with_gaps) < 4 * (ReadingCadence().bp_per_day + 48)
    assert none_at_all == []


def test_clock_skew_shifts_measured_at_by_a_constant_per_device():
    patients = [make_patient(f"p{i}") for i in range(3)]
    skewed = dataclasses.replace(DeviceErrorModel.perfect(), clock_offset_sd_seconds=600.0)
    exact = list(
        cohort_readings(
            patients, start_date=START, days=1, seed=4, device=DeviceErrorModel.perfect()
        )
    )
    shifted = list(cohort_readings(patients, start_date=START, days=1, seed=4, device=skewed))

    exact_times = {r["client_id"]: r["measured_at"] for r in exact}
    shift_by_device: dict[str, set[float]] = {}
    for reading in shifted:
        delta = (reading["measured_at"] - exact_times[reading["client_id"]]).total_seconds()
        shift_by_device.setdefault(reading["device_id"], set()).add(delta)
    assert all(len(deltas) <= 2 for deltas in shift_by_device.values())  # rounding to 1 s
    assert any(abs(min(deltas)) > 1 for deltas in shift_by_device.values())


def test_device_noise_spread_matches_documented_sd():
    patients = generate_cohort(200, seed=21)
    device = dataclasses.replace(DeviceErrorModel(), motion_artefact_probability=0.0)
    trace = simulate_trace(patients, start_date=START, days=10, seed=2, device=device)

    error = trace.stacked("bp_measured_systolic_mmhg") - trace.stacked("bp_true_systolic_mmhg")
    inside = (trace.stacked("bp_measured_systolic_mmhg") > p.PLAUSIBLE_SYSTOLIC_MMHG[0]) & (
        trace.stacked("bp_measured_systolic_mmhg") < p.PLAUSIBLE_SYSTOLIC_MMHG[1]
    )
    assert inside.all()
    per_device_bias = error.mean(axis=(1, 2))
    residual = error - per_device_bias[:, None, None]
    rounding_var = 1 / 12
    noise_sd = np.sqrt(residual.var() - rounding_var)
    assert noise_sd == pytest.approx(p.DEVICE_NOISE_SD_SYSTOLIC_MMHG, rel=0.05)
    assert per_device_bias.std() == pytest.approx(p.DEVICE_BIAS_SD_SYSTOLIC_MMHG, rel=0.2)

    diastolic_error = trace.stacked("bp_measured_diastolic_mmhg") - trace.stacked(
        "bp_true_diastolic_mmhg"
    )
    diastolic_residual = diastolic_error - diastolic_error.mean(axis=(1, 2))[:, None, None]
    assert np.sqrt(diastolic_residual.var() - rounding_var) == pytest.approx(
        p.DEVICE_NOISE_SD_DIASTOLIC_MMHG, rel=0.1
    )


def test_motion_artefacts_are_implausible_only_in_flagged_mode():
    patients = generate_cohort(30, seed=9)
    loud = dataclasses.replace(DeviceErrorModel(), motion_artefact_probability=0.3)
    plausible = list(cohort_readings(patients, start_date=START, days=3, seed=1, device=loud))
    for reading in plausible:
        assert_ingestion_shape_and_plausible(reading)

    flagged = dataclasses.replace(loud, artefacts_may_be_implausible=True)
    trace = simulate_trace(patients, start_date=START, days=3, seed=1, device=flagged)
    invalid = []
    for reading in trace.readings():
        try:
            assert_ingestion_shape_and_plausible(reading)
        except AssertionError:
            invalid.append(reading)
    assert invalid
    artefacts = trace.stacked("bp_is_artefact") & trace.stacked("bp_is_recorded")
    artefacts_hr = trace.stacked("heart_rate_is_artefact") & trace.stacked("heart_rate_is_recorded")
    duplicated = trace.stacked("bp_is_duplicated") & artefacts
    duplicated_hr = trace.stacked("heart_rate_is_duplicated") & artefacts_hr
    expected = artefacts.sum() + artefacts_hr.sum() + duplicated.sum() + duplicated_hr.sum()
    assert len(invalid) == expected


def test_medication_intakes_have_the_ingestion_shape():
    patient = make_patient(
        "p-intake",
        adherence_rate=0.7,
        initial_regimen={"amlodipine": Decimal("5"), "lisinopril": Decimal("10")},
    )
    trace = simulate_trace([patient], start_date=START, days=28, seed=6)
    intakes = list(trace.intakes())

    taken_days = int(trace.stacked("intake_taken").sum())
    assert len(intakes) == 2 * taken_days
    assert len({intake["client_id"] for intake in intakes}) == len(intakes)
    for intake in intakes:
        assert set(intake) == {"client_id", "medication", "dose_mg", "taken_at"}
        assert intake["medication"] in DRUGS
        assert isinstance(intake["dose_mg"], Decimal)
        assert intake["dose_mg"] == patient.initial_regimen[intake["medication"]]
        assert intake["taken_at"].utcoffset() is not None


def test_regimen_validation_refuses_unknown_drugs_floats_and_out_of_range_doses():
    assert validate_regimen({"amlodipine": Decimal("5"), "lisinopril": 0}) == {
        "amlodipine": Decimal("5")
    }
    spec = DRUGS["hydrochlorothiazide"]
    for bad in (
        {"atenolol": Decimal("50")},
        {"amlodipine": 5.0},
        {"amlodipine": Decimal("NaN")},
        {"hydrochlorothiazide": spec.max_dose_mg + 1},
        {"hydrochlorothiazide": spec.min_dose_mg / 2},
        {"lisinopril": Decimal("-10")},
    ):
        with pytest.raises(InvalidRegimen):
            validate_regimen(bad)


def test_cohort_demographics_follow_documented_proportions():
    patients = generate_cohort(4000, seed=31)
    n = len(patients)
    races = Counter(patient.demographics.race for patient in patients)
    ethnicities = Counter(patient.demographics.ethnicity for patient in patients)
    for race, share in p.RACE_PROPORTIONS.items():
        assert races[race] / n == pytest.approx(share, abs=0.02)
    for ethnicity, share in p.ETHNICITY_PROPORTIONS.items():
        assert ethnicities[ethnicity] / n == pytest.approx(share, abs=0.02)
    males = sum(patient.demographics.sex == "male" for patient in patients)
    assert males / n == pytest.approx(p.MALE_PROPORTION, abs=0.02)
    ages = np.array([patient.demographics.age_years for patient in patients])
    assert ages.min() >= p.AGE_RANGE_YEARS[0] and ages.max() <= p.AGE_RANGE_YEARS[1]
    assert ages.mean() == pytest.approx(p.AGE_MEAN_YEARS, abs=1.0)

    systolic = np.array([patient.baseline_systolic_mmhg for patient in patients])
    diastolic = np.array([patient.baseline_diastolic_mmhg for patient in patients])
    stage_1_or_2 = (systolic >= 130) | (diastolic >= 80)  # ACC/AHA 2017
    assert stage_1_or_2.mean() > 0.9
    assert (systolic - diastolic >= p.MIN_PULSE_PRESSURE_MMHG - 1e-9).all()
    black = np.array(
        [patient.demographics.race == "black_or_african_american" for patient in patients]
    )
    assert systolic[black].mean() > systolic[~black].mean()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    amlodipine=st.sampled_from((Decimal(0), *DRUGS["amlodipine"].titration_steps_mg)),
    lisinopril=st.sampled_from((Decimal(0), *DRUGS["lisinopril"].titration_steps_mg)),
    thiazide=st.sampled_from((Decimal(0), *DRUGS["hydrochlorothiazide"].titration_steps_mg)),
    artefact_probability=st.floats(min_value=0.0, max_value=1.0),
    dehydrated=st.booleans(),
)
def test_any_seed_and_regimen_gives_plausible_readings(
    seed, amlodipine, lisinopril, thiazide, artefact_probability, dehydrated
):
    patients = generate_cohort(3, seed=seed)
    patients.append(
        make_patient(
            "extreme",
            baseline_systolic_mmhg=240.0,
            baseline_diastolic_mmhg=140.0,
            drug_sensitivity={"amlodipine": 4.0, "lisinopril": 4.0, "hydrochlorothiazide": 4.0},
            dehydrated_first_days=2 if dehydrated else 0,
        )
    )
    regimen = {"amlodipine": amlodipine, "lisinopril": lisinopril, "hydrochlorothiazide": thiazide}
    device = dataclasses.replace(
        DeviceErrorModel(), motion_artefact_probability=artefact_probability
    )
    readings = list(
        cohort_readings(
            patients, start_date=START, days=2, seed=seed, regimens=[regimen] * 4, device=device
        )
    )
    assert readings
    for reading in readings:
        assert_ingestion_shape_and_plausible(reading)
    single = list(patient_readings(patients[0], start_date=START, days=1, seed=seed, device=device))
    assert all(reading["device_id"] == patients[0].device_id for reading in single)
