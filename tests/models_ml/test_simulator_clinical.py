"""The simulator's clinical behaviour against its documented parameters.

Circadian rhythm, activity, variability, Emax dose-response and onset, subgroup differences,
adherence, intercurrent events, scenarios, and the course under a policy. Statistics are
compared with the constants in models_ml.simulator.parameters / .drugs, never restated.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import date
from decimal import Decimal

import numpy as np
import pytest

from models_ml.simulator import (
    DRUG_NAMES,
    DRUGS,
    DeviceErrorModel,
    IntercurrentEventRates,
    InvalidRegimen,
    ObservedState,
    ReadingCadence,
    controlled_patient,
    crisis_patient,
    generate_cohort,
    hold_policy,
    hypotensive_patient,
    make_patient,
    run_policy,
    simulate_trace,
)
from models_ml.simulator import drugs as d
from models_ml.simulator import parameters as p

START = date(2025, 3, 3)  # a Monday
NO_EVENTS = IntercurrentEventRates.none()
PERFECT = DeviceErrorModel.perfect()


def untreated(patients, **changes):
    return [dataclasses.replace(patient, initial_regimen={}, **changes) for patient in patients]


def quiet_trace(patients, days, seed=1, **kwargs):
    kwargs.setdefault("device", PERFECT)
    kwargs.setdefault("events", NO_EVENTS)
    return simulate_trace(patients, start_date=START, days=days, seed=seed, **kwargs)


def test_nocturnal_dip_is_within_documented_range_on_average():
    patients = generate_cohort(300, seed=2)
    trace = quiet_trace(patients, 14, cadence=ReadingCadence(12, 6))
    systolic = trace.stacked("bp_true_systolic_mmhg")
    asleep = trace.stacked("bp_is_asleep")
    night = (systolic * asleep).sum(axis=(1, 2)) / asleep.sum(axis=(1, 2))
    day = (systolic * ~asleep).sum(axis=(1, 2)) / (~asleep).sum(axis=(1, 2))
    dip = 1 - night / day

    low, high = p.DIPPER_DIP_RANGE
    assert low <= dip.mean() <= high
    assert dip.mean() == pytest.approx(p.EXPECTED_MEAN_DIP_FRACTION, abs=0.03)
    is_non_dipper = np.array([x.nocturnal_dip_fraction < low for x in patients])
    assert is_non_dipper.mean() == pytest.approx(p.NON_DIPPER_PROPORTION, abs=0.07)
    assert dip[is_non_dipper].mean() < low <= dip[~is_non_dipper].mean()


def test_morning_surge_raises_bp_in_the_hours_after_waking():
    patients = untreated(generate_cohort(200, seed=3), median_daily_steps=0.0)
    trace = quiet_trace(patients, 7, cadence=ReadingCadence(24, 0))
    wake = np.array([x.wake_hour for x in patients])[:, None, None]
    since_wake = (trace.stacked("bp_hour") - wake) % 24
    systolic = trace.stacked("bp_true_systolic_mmhg")
    early, later = since_wake < 2, since_wake >= 4
    surge = systolic[early].mean() - systolic[later].mean()

    decay = p.MORNING_SURGE_DECAY_HOURS
    expected = p.MORNING_SURGE_SYSTOLIC_MEAN_MMHG * decay / 2 * (1 - np.exp(-2 / decay))
    assert surge == pytest.approx(expected, rel=0.25)
    diastolic = trace.stacked("bp_true_diastolic_mmhg")
    assert diastolic[early].mean() > diastolic[later].mean()


def test_walking_raises_blood_pressure_and_heart_rate_by_documented_slopes():
    patients = untreated(generate_cohort(100, seed=4), morning_surge_systolic_mmhg=0.0)
    trace = quiet_trace(patients, 7)
    awake = ~trace.stacked("hourly_is_asleep")

    def within_day(values):
        """Awake values minus their patient-day mean (removes levels and day offsets)."""
        mean = (values * awake).sum(axis=2, keepdims=True) / awake.sum(axis=2, keepdims=True)
        return (values - mean)[awake]

    steps = within_day(trace.stacked("steps") / 1000.0)
    slope = np.polyfit(steps, within_day(trace.stacked("hourly_true_systolic_mmhg")), 1)[0]
    assert slope == pytest.approx(p.SYSTOLIC_PER_1000_STEPS_PER_HOUR_MMHG, rel=0.2)
    heart_rate = trace.stacked("heart_rate_true_bpm")
    hr_slope = np.polyfit(steps, within_day(heart_rate), 1)[0]
    assert hr_slope == pytest.approx(p.HEART_RATE_PER_1000_STEPS_PER_HOUR_BPM, rel=0.2)


def test_day_to_day_variability_matches_documented_sd():
    patients = untreated(generate_cohort(100, seed=5), median_daily_steps=0.0)
    trace = quiet_trace(patients, 60)
    daily = trace.stacked("daily_mean_systolic_mmhg")
    awake_hours = (~trace.stacked("hourly_is_asleep")).sum(axis=2).mean()
    expected = np.sqrt(
        p.DAY_OFFSET_SYSTOLIC_SD_MMHG**2 + p.WITHIN_DAY_SYSTOLIC_SD_MMHG**2 / awake_hours
    )
    assert daily.std(axis=1, ddof=1).mean() == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("name", DRUG_NAMES)
def test_documented_dose_response_is_emax_monotone_and_saturating(name):
    spec = DRUGS[name]
    effects = [spec.mean_effect_mmhg(dose)[0] for dose in spec.titration_steps_mg]
    assert (np.diff(effects) > 0).all()
    doses = [float(dose) for dose in spec.titration_steps_mg]
    per_mg = np.diff([0.0, *effects]) / np.diff([0.0, *doses])
    assert (np.diff(per_mg) < 0).all()
    standard = spec.mean_effect_mmhg(spec.standard_dose_mg)
    assert standard[0] == pytest.approx(d.LAW_2003_STANDARD_DOSE_SYSTOLIC_EFFECT_MMHG)
    assert standard[1] == pytest.approx(d.LAW_2003_STANDARD_DOSE_DIASTOLIC_EFFECT_MMHG)
    half = spec.mean_effect_mmhg(spec.standard_dose_mg / 2)[0]
    assert half / standard[0] == pytest.approx(d.LAW_2003_HALF_DOSE_EFFECT_RATIO)
    assert spec.mean_effect_mmhg(spec.ed50_mg)[0] == pytest.approx(spec.emax_systolic_mmhg / 2)
    assert spec.mean_effect_mmhg(1e6)[0] < spec.emax_systolic_mmhg


@pytest.mark.parametrize("name", DRUG_NAMES)
def test_simulated_bp_falls_monotonically_and_saturates_with_dose(name):
    patients = untreated(generate_cohort(80, seed=6))
    doses = (Decimal(0), *DRUGS[name].titration_steps_mg)
    means = []
    for dose in doses:
        trace = quiet_trace(patients, 35, regimens=[{name: dose}] * len(patients))
        means.append(trace.stacked("daily_mean_systolic_mmhg")[:, -7:].mean())
    falls = -np.diff(means)
    assert (falls > 0).all()
    per_mg = falls / np.diff([float(dose) for dose in doses])
    assert (np.diff(per_mg) < 0).all()


def test_drug_effect_builds_up_with_first_order_onset():
    patient = make_patient("onset", adherence_rate=1.0)
    fractions = {}
    for name in ("amlodipine", "hydrochlorothiazide"):
        spec = DRUGS[name]
        dose = spec.standard_dose_mg
        trace = quiet_trace([patient], 50, regimens=[{name: dose}])
        effect = trace.stacked("drug_effect_systolic_mmhg")[0]
        assert (np.diff(effect) > 0).all()
        # exposure after day k of full adherence: dose * (1 - exp(-(k + 1) / tau))
        retained = np.exp(-1 / spec.onset_time_constant_days)
        exposure = [float(dose) * (1 - retained ** (k + 1)) for k in range(len(effect))]
        expected = [spec.mean_effect_mmhg(x)[0] / spec.mean_effect_mmhg(dose)[0] for x in exposure]
        steady = effect[-1] / expected[-1]
        assert effect / steady == pytest.approx(expected, rel=1e-6)
        fractions[name] = effect[3] / steady
    # amlodipine's shorter time constant: closer to its plateau after three days
    assert fractions["amlodipine"] > fractions["hydrochlorothiazide"]


def _effect_by_race(patients, regimen, baseline_means, days=28):
    trace = quiet_trace(patients, days, regimens=[regimen] * len(patients))
    fall = baseline_means - trace.stacked("daily_mean_systolic_mmhg")[:, -7:].mean(axis=1)
    black = np.array([x.demographics.race == d.BLACK for x in patients])
    return fall[black].mean(), fall[~black].mean()


def test_ace_inhibitor_lowers_bp_less_in_black_patients_and_thiazide_or_ccb_more():
    patients = untreated(generate_cohort(600, seed=7))
    baseline = quiet_trace(patients, 28).stacked("daily_mean_systolic_mmhg")[:, -7:].mean(axis=1)
    lisinopril = {"lisinopril": Decimal("20")}
    thiazide = {"hydrochlorothiazide": Decimal("25")}
    both = {**lisinopril, **thiazide}

    black, other = _effect_by_race(patients, lisinopril, baseline)
    assert black / other == pytest.approx(d.ACE_INHIBITOR_BLACK_MONOTHERAPY_MULTIPLIER, abs=0.15)
    for regimen in (thiazide, {"amlodipine": Decimal("5")}):
        black_more, other_less = _effect_by_race(patients, regimen, baseline)
        assert black_more > other_less
    # with a thiazide on board the ACE inhibitor's added effect is much less blunted
    black_both, other_both = _effect_by_race(patients, both, baseline)
    black_thiazide, other_thiazide = _effect_by_race(patients, thiazide, baseline)
    added_ratio = (black_both - black_thiazide) / (other_both - other_thiazide)
    assert added_ratio > black / other + 0.15


def test_realised_adherence_matches_each_patients_rate_with_a_weekend_dip():
    patients = generate_cohort(300, seed=8)
    trace = quiet_trace(patients, 364)
    taken = trace.stacked("intake_taken")
    rates = np.array([x.adherence_rate for x in patients])
    realised = taken.mean(axis=1)
    assert np.abs(realised - rates).mean() < 0.025
    assert np.corrcoef(realised, rates)[0, 1] > 0.95

    weekend = np.array([day.local_date.weekday() >= 5 for day in trace.days])
    below_cap = rates <= p.ADHERENCE_MEAN  # weekday probability not capped at 1
    ratio = taken[below_cap][:, weekend].mean() / taken[below_cap][:, ~weekend].mean()
    assert ratio == pytest.approx(1 - p.WEEKEND_ADHERENCE_DIP_FRACTION, abs=0.03)


def test_dehydration_lowers_and_nsaids_raise_blood_pressure():
    patient = make_patient("events")
    reference = quiet_trace([patient], 10)
    dehydrated = quiet_trace([dataclasses.replace(patient, dehydrated_first_days=5)], 10)
    nsaid = quiet_trace([dataclasses.replace(patient, nsaid_first_days=5)], 10)
    base = reference.stacked("daily_mean_systolic_mmhg")[0]

    drop = base - dehydrated.stacked("daily_mean_systolic_mmhg")[0]
    assert drop[:5] == pytest.approx(p.DEHYDRATION_SYSTOLIC_DROP_MMHG)
    assert drop[5:] == pytest.approx(0)
    rise = nsaid.stacked("daily_mean_systolic_mmhg")[0] - base
    assert rise[:5] == pytest.approx(p.NSAID_SYSTOLIC_RISE_MMHG)
    heart_rate_rise = dehydrated.stacked("heart_rate_true_bpm") - reference.stacked(
        "heart_rate_true_bpm"
    )
    assert heart_rate_rise[0, :5].mean() == pytest.approx(p.DEHYDRATION_HEART_RATE_RISE_BPM, abs=1)


def test_random_intercurrent_events_occur_at_documented_rates():
    patients = generate_cohort(300, seed=9)
    trace = simulate_trace(patients, start_date=START, days=200, seed=2, device=PERFECT)
    expected_dehydrated = p.DEHYDRATION_EPISODES_PER_DAY * np.mean(
        p.DEHYDRATION_DURATION_DAYS_RANGE
    )
    expected_nsaid = p.NSAID_COURSES_PER_DAY * np.mean(p.NSAID_COURSE_DURATION_DAYS_RANGE)
    # fraction of days with an active episode ~ rate * duration (slightly less: no overlap)
    assert trace.stacked("is_dehydrated").mean() == pytest.approx(expected_dehydrated, rel=0.3)
    assert trace.stacked("is_on_nsaid").mean() == pytest.approx(expected_nsaid, rel=0.3)


def test_scenarios_crisis_controlled_and_hypotensive():
    crisis = simulate_trace([crisis_patient()], start_date=START, days=5, seed=1, events=NO_EVENTS)
    readings = [r for r in crisis.readings() if r["type"] == "blood_pressure"]
    in_crisis = [
        r["systolic"] >= p.CRISIS_SYSTOLIC_MMHG or r["diastolic"] >= p.CRISIS_DIASTOLIC_MMHG
        for r in readings
    ]
    assert len(readings) >= 10 and np.mean(in_crisis) >= 0.9

    outcome = run_policy(
        [crisis_patient(), controlled_patient(), hypotensive_patient(dehydrated_days=7)],
        hold_policy,
        days=28,
        seed=3,
        events=NO_EVENTS,
    )
    crisis_outcome, controlled, hypotensive = outcome.patients
    assert crisis_outcome.crisis_event_days == 28
    assert controlled.time_in_target_range >= 0.8
    assert controlled.crisis_event_days == controlled.hypotension_event_days == 0
    assert hypotensive.hypotension_event_days >= 6
    daily = outcome.daily_mean_systolic_mmhg[2]
    assert (daily[:7] < p.HYPOTENSION_SYSTOLIC_MMHG).mean() >= 0.8
    assert (daily[7:] > p.HYPOTENSION_SYSTOLIC_MMHG + 10).all()


def titrate_to_target(state: ObservedState) -> dict[str, Decimal]:
    """Test policy: if the 7-day mean is at/above target, raise a dose or add a drug."""
    regimen = dict(state.regimen)
    if state.mean_systolic_7d_mmhg is None or (
        state.mean_systolic_7d_mmhg < state.target.systolic_mmhg
    ):
        return regimen
    for name in DRUG_NAMES:
        steps = DRUGS[name].titration_steps_mg
        if name not in regimen:
            regimen[name] = DRUGS[name].standard_dose_mg
            return regimen
        higher = [dose for dose in steps if dose > regimen[name]]
        if higher:
            regimen[name] = higher[0]
            return regimen
    return regimen


def test_titration_beats_holding_on_time_in_target_range_quickly_and_reproducibly():
    patients = generate_cohort(200, seed=10)
    started = time.perf_counter()
    held = run_policy(patients, hold_policy, days=90, seed=4, interval_days=14)
    titrated = run_policy(patients, titrate_to_target, days=90, seed=4, interval_days=14)
    elapsed = time.perf_counter() - started

    assert elapsed < 5.0
    assert held.cohort.dose_change_count == 0
    assert titrated.cohort.dose_change_count > 0
    assert titrated.cohort.mean_time_in_target_range > held.cohort.mean_time_in_target_range + 0.1
    assert titrated.cohort.crisis_event_days < held.cohort.crisis_event_days
    assert all(
        o.final_regimen == x.initial_regimen for o, x in zip(held.patients, patients, strict=True)
    )
    again = run_policy(patients, titrate_to_target, days=90, seed=4, interval_days=14)
    assert again.patients == titrated.patients


def test_policy_sees_observable_state_every_interval():
    patients = generate_cohort(5, seed=12)
    calls: list[ObservedState] = []

    def recording_policy(state: ObservedState) -> dict[str, Decimal]:
        calls.append(state)
        return hold_policy(state)

    result = run_policy(
        patients, recording_policy, days=30, seed=5, interval_days=7, keep_trace=True
    )
    assert sorted({state.day for state in calls}) == [7, 14, 21, 28]
    assert len(calls) == 4 * len(patients)
    state = next(s for s in calls if s.day == 14 and s.patient_id == patients[0].patient_id)
    assert state.regimen == patients[0].initial_regimen
    assert state.demographics == patients[0].demographics

    trace = result.trace
    assert trace is not None
    window = range(7, 14)
    systolic = np.concatenate([trace.days[day].bp_measured_systolic_mmhg[0] for day in window])
    recorded = np.concatenate([trace.days[day].bp_is_recorded[0] for day in window])
    assert state.reading_count_7d == recorded.sum()
    assert state.mean_systolic_7d_mmhg == pytest.approx(systolic[recorded].mean())
    if state.regimen:
        taken = [trace.days[day].intake_taken[0] for day in window]
        assert state.adherence_rate_7d == pytest.approx(np.mean(taken))


@pytest.mark.parametrize(
    "bad_regimen",
    [{"metoprolol": Decimal("50")}, {"amlodipine": Decimal("20")}, {"lisinopril": 10.0}],
)
def test_policy_returning_an_invalid_regimen_is_refused(bad_regimen):
    with pytest.raises(InvalidRegimen, match="policy returned an invalid regimen"):
        run_policy(
            generate_cohort(2, seed=1), lambda state: bad_regimen, days=10, seed=1, interval_days=5
        )
