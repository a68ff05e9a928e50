"""Clinical and device parameters of the simulator, each next to its source.

Every number the simulator uses to generate patients, physiology, devices, adherence and
intercurrent events lives here, so that tests can import them instead of restating them and an
auditor can check them in one place. Drug parameters live in :mod:`.drugs` beside the drugs.

Honesty labels used below:

* **[source]** the number is taken (or directly derived) from the cited guideline or paper;
* **[informed]** the cited source gives the direction or the range, the exact value is our choice;
* **[assumption]** an illustrative modelling assumption, chosen to look plausible; do not quote it
  as a clinical fact.
"""

from __future__ import annotations

from typing import Final, Literal

from patients import clinical_defaults as defaults

Sex = Literal["male", "female"]
Race = Literal[
    "american_indian_or_alaska_native",
    "asian",
    "black_or_african_american",
    "native_hawaiian_or_other_pacific_islander",
    "white",
    "unknown",
]
Ethnicity = Literal["hispanic_or_latino", "not_hispanic_or_latino", "unknown"]

SEXES: Final[tuple[Sex, ...]] = ("male", "female")
RACES: Final[tuple[Race, ...]] = (
    "american_indian_or_alaska_native",
    "asian",
    "black_or_african_american",
    "native_hawaiian_or_other_pacific_islander",
    "white",
    "unknown",
)
ETHNICITIES: Final[tuple[Ethnicity, ...]] = (
    "hispanic_or_latino",
    "not_hispanic_or_latino",
    "unknown",
)

# --- demographics of adults with hypertension ----------------------------------------------
# [informed] US Census 2020 race-alone shares, shifted towards Black adults because hypertension
# is more prevalent among them (NHANES 2017-2020; AHA Heart Disease & Stroke Statistics).
# "unknown" stands for "some other race", multiracial and not reported.
RACE_PROPORTIONS: Final[dict[Race, float]] = {
    "american_indian_or_alaska_native": 0.012,
    "asian": 0.060,
    "black_or_african_american": 0.170,
    "native_hawaiian_or_other_pacific_islander": 0.004,
    "white": 0.620,
    "unknown": 0.134,
}
# [informed] US Census 2020 (18.7 % Hispanic or Latino), slightly lower hypertension prevalence.
ETHNICITY_PROPORTIONS: Final[dict[Ethnicity, float]] = {
    "hispanic_or_latino": 0.16,
    "not_hispanic_or_latino": 0.80,
    "unknown": 0.04,
}
# [informed] NHANES 2017-2018: hypertension prevalence 51 % in men vs 40 % in women.
MALE_PROPORTION: Final[float] = 0.52
# [assumption] age of treated adults with hypertension, truncated normal.
AGE_MEAN_YEARS: Final[float] = 58.0
AGE_SD_YEARS: Final[float] = 13.0
AGE_RANGE_YEARS: Final[tuple[int, int]] = (25, 90)

# --- untreated baseline blood pressure (resting, awake) -------------------------------------
# [informed] ACC/AHA 2017 stages: stage 1 = 130-139 / 80-89, stage 2 = >=140 / >=90 mmHg.
# The distribution puts most patients in stage 1-2 with a tail of severe hypertension.
# [informed] NHANES: higher mean systolic in Black adults and with age (isolated systolic
# hypertension widens pulse pressure, so diastolic falls with age).
BASELINE_SYSTOLIC_MEAN_MMHG: Final[float] = 144.0
BASELINE_SYSTOLIC_SD_MMHG: Final[float] = 12.0
BASELINE_SYSTOLIC_RANGE_MMHG: Final[tuple[float, float]] = (126.0, 195.0)
BASELINE_SYSTOLIC_PER_YEAR_OF_AGE_MMHG: Final[float] = 0.25  # [assumption] around 58 years
BASELINE_SYSTOLIC_BLACK_OFFSET_MMHG: Final[float] = 4.0  # [assumption] direction from NHANES
BASELINE_DIASTOLIC_MEAN_MMHG: Final[float] = 88.0
BASELINE_DIASTOLIC_SD_MMHG: Final[float] = 6.0
BASELINE_DIASTOLIC_PER_SYSTOLIC: Final[float] = 0.35  # [assumption]
BASELINE_DIASTOLIC_PER_YEAR_OF_AGE_MMHG: Final[float] = -0.25  # [assumption]
BASELINE_DIASTOLIC_RANGE_MMHG: Final[tuple[float, float]] = (62.0, 125.0)
MIN_PULSE_PRESSURE_MMHG: Final[float] = 25.0  # [assumption] baseline systolic - diastolic

# --- circadian rhythm ---------------------------------------------------------------------
# [source] ESH 2021 practice guideline for office and out-of-office BP measurement (Stergiou et
# al., J Hypertens 2021;39:1293), dipping categories: dipper = nocturnal fall of 10-20 % of the
# daytime mean, non-dipper 0-10 %, extreme dipper > 20 %.
DIPPER_DIP_RANGE: Final[tuple[float, float]] = (0.10, 0.20)
NON_DIPPER_DIP_RANGE: Final[tuple[float, float]] = (0.00, 0.10)
# [informed] 25-40 % of treated hypertensives are non-dippers in ABPM cohorts; 30 % chosen.
NON_DIPPER_PROPORTION: Final[float] = 0.30
# Mean nocturnal dip the two statements above imply (tests compare against it).
EXPECTED_MEAN_DIP_FRACTION: Final[float] = (1 - NON_DIPPER_PROPORTION) * sum(
    DIPPER_DIP_RANGE
) / 2 + NON_DIPPER_PROPORTION * sum(NON_DIPPER_DIP_RANGE) / 2
# [assumption] morning surge above the daytime level, decaying after waking. Together with the
# dip it gives a sleep-trough surge (morning minus lowest night) of ~25-35 mmHg, the order of
# magnitude reported by Kario et al., Circulation 2003;107:1401 (mean ~34 mmHg, top decile >= 55).
MORNING_SURGE_SYSTOLIC_MEAN_MMHG: Final[float] = 10.0
MORNING_SURGE_SYSTOLIC_SD_MMHG: Final[float] = 4.0
MORNING_SURGE_DIASTOLIC_PER_SYSTOLIC: Final[float] = 0.6  # [assumption]
MORNING_SURGE_DECAY_HOURS: Final[float] = 1.5  # [assumption] exponential time constant
WAKE_HOUR_MEAN: Final[float] = 6.75  # [assumption] local clock
WAKE_HOUR_SD: Final[float] = 0.75
WAKE_HOUR_RANGE: Final[tuple[float, float]] = (4.5, 9.5)
SLEEP_DURATION_MEAN_HOURS: Final[float] = 7.25  # [informed] NHIS adult self-reported sleep
SLEEP_DURATION_SD_HOURS: Final[float] = 0.75
SLEEP_DURATION_RANGE_HOURS: Final[tuple[float, float]] = (5.5, 9.5)

# --- day-to-day and within-day variability of the true BP -----------------------------------
# [informed] home BP day-to-day SD is ~7-10 mmHg systolic including measurement error
# (Juhanoja et al., Hypertension 2017;70:61); the biological part is modelled as an AR(1)
# daily offset plus independent within-day noise. Values are [assumption].
DAY_OFFSET_SYSTOLIC_SD_MMHG: Final[float] = 5.0
DAY_OFFSET_DIASTOLIC_SD_MMHG: Final[float] = 3.0
DAY_OFFSET_AUTOCORRELATION: Final[float] = 0.5
DAY_OFFSET_SYSTOLIC_DIASTOLIC_CORRELATION: Final[float] = 0.6
WITHIN_DAY_SYSTOLIC_SD_MMHG: Final[float] = 4.0
WITHIN_DAY_DIASTOLIC_SD_MMHG: Final[float] = 3.0
# Model-domain limits of the *true* BP (the simulator never produces a true value outside).
TRUE_SYSTOLIC_RANGE_MMHG: Final[tuple[float, float]] = (60.0, 260.0)
TRUE_DIASTOLIC_RANGE_MMHG: Final[tuple[float, float]] = (35.0, 150.0)
TRUE_MIN_PULSE_PRESSURE_MMHG: Final[float] = 15.0

# --- physical activity and heart rate -------------------------------------------------------
# [informed] older adults with chronic disease walk ~2000-9000 steps/day (Tudor-Locke et al.,
# IJBNPA 2011;8:80); lognormal around 5500, [assumption] shape.
DAILY_STEPS_MEDIAN: Final[float] = 5500.0
DAILY_STEPS_BETWEEN_PATIENT_SIGMA: Final[float] = 0.45
DAILY_STEPS_DAY_TO_DAY_SIGMA: Final[float] = 0.35
HOURLY_STEPS_BURSTINESS_SHAPE: Final[float] = 2.0  # [assumption] gamma-Poisson shape
# [assumption] pressor and chronotropic effect of walking; ambulatory studies report BP rises of
# several mmHg with activity, the slope here is illustrative.
SYSTOLIC_PER_1000_STEPS_PER_HOUR_MMHG: Final[float] = 4.0
DIASTOLIC_PER_1000_STEPS_PER_HOUR_MMHG: Final[float] = 2.0
HEART_RATE_PER_1000_STEPS_PER_HOUR_BPM: Final[float] = 10.0
RESTING_HEART_RATE_MEAN_BPM: Final[float] = 72.0  # [informed] NHANES adult mean ~72/min
RESTING_HEART_RATE_SD_BPM: Final[float] = 9.0
RESTING_HEART_RATE_RANGE_BPM: Final[tuple[float, float]] = (50.0, 100.0)
HEART_RATE_NOCTURNAL_DIP_FRACTION: Final[float] = 0.10  # [assumption]
HEART_RATE_WITHIN_DAY_SD_BPM: Final[float] = 3.0  # [assumption]
TRUE_HEART_RATE_RANGE_BPM: Final[tuple[float, float]] = (35.0, 190.0)

# --- adherence ----------------------------------------------------------------------------
# [informed] Vrijens et al., BMJ 2008;336:1114 (electronic monitoring of 4783 patients on
# antihypertensives): among patients still on treatment, ~10 % of scheduled doses are omitted,
# with wide between-patient spread and more omissions at weekends. Beta(8, 2) gives a mean of
# 0.8 to include poorer adherers. [assumption] shape and weekend dip size.
ADHERENCE_BETA_A: Final[float] = 8.0
ADHERENCE_BETA_B: Final[float] = 2.0
ADHERENCE_MEAN: Final[float] = ADHERENCE_BETA_A / (ADHERENCE_BETA_A + ADHERENCE_BETA_B)
# Relative reduction of the probability of taking the doses on Saturday and Sunday versus the
# weekday probability, when the weekday probability is below 1.
WEEKEND_ADHERENCE_DIP_FRACTION: Final[float] = 0.15
INTAKE_DELAY_AFTER_WAKING_HOURS: Final[float] = 0.75  # [assumption] morning dosing
INTAKE_DELAY_SD_HOURS: Final[float] = 0.5

# --- intercurrent events --------------------------------------------------------------------
# [assumption] rates. Effects: volume depletion lowers BP and increases the effect of ACE
# inhibitors and diuretics ([source] lisinopril and hydrochlorothiazide US labels, warnings on
# symptomatic hypotension in volume- or salt-depleted patients); the multiplier is [assumption].
DEHYDRATION_EPISODES_PER_DAY: Final[float] = 1 / 365
DEHYDRATION_DURATION_DAYS_RANGE: Final[tuple[int, int]] = (2, 4)
DEHYDRATION_SYSTOLIC_DROP_MMHG: Final[float] = 25.0  # [informed] >= 20 mmHg: orthostatic range
DEHYDRATION_DIASTOLIC_DROP_MMHG: Final[float] = 12.0
DEHYDRATION_HEART_RATE_RISE_BPM: Final[float] = 15.0
DEHYDRATION_RAAS_DIURETIC_EFFECT_MULTIPLIER: Final[float] = 1.5
# [source] Johnson, Nguyen & Day, Ann Intern Med 1994;121:289: NSAIDs raise mean BP by
# 5.0 mmHg (95 % CI 1.2-8.7). Split into systolic/diastolic is [assumption]; frequency too.
NSAID_COURSES_PER_DAY: Final[float] = 1 / 120
NSAID_COURSE_DURATION_DAYS_RANGE: Final[tuple[int, int]] = (3, 10)
NSAID_SYSTOLIC_RISE_MMHG: Final[float] = 6.0
NSAID_DIASTOLIC_RISE_MMHG: Final[float] = 4.0

# --- wearable (cuffless) device ------------------------------------------------------------
# [informed] AAMI/ESH/ISO 81060-2:2018 accepts a cuff device whose mean error is within +/-5
# mmHg with SD <= 8 mmHg; cuffless wrist devices often do worse (e.g. mean difference 0-13
# mmHg, SD 8-11 mmHg: JMIR mHealth uHealth 2019;7:e14706; Falter et al., Front Cardiovasc Med
# 2022;9:958212). Per-device bias + per-reading noise below are [assumption] within that range.
DEVICE_BIAS_SD_SYSTOLIC_MMHG: Final[float] = 4.0
DEVICE_BIAS_SD_DIASTOLIC_MMHG: Final[float] = 3.0
DEVICE_NOISE_SD_SYSTOLIC_MMHG: Final[float] = 7.0
DEVICE_NOISE_SD_DIASTOLIC_MMHG: Final[float] = 5.0
DEVICE_NOISE_SD_HEART_RATE_BPM: Final[float] = 2.0
# [assumption] artefacts, gaps, duplicates, clock skew of a consumer device and its phone app.
MOTION_ARTEFACT_PROBABILITY: Final[float] = 0.02  # per reading at rest, grows with steps
MOTION_ARTEFACT_SYSTOLIC_MEAN_MMHG: Final[float] = 15.0
MOTION_ARTEFACT_SD_MMHG: Final[float] = 15.0
MOTION_ARTEFACT_HEART_RATE_MEAN_BPM: Final[float] = 30.0
GAP_PROBABILITY_PER_DAY: Final[float] = 0.15
GAP_DURATION_HOURS_RANGE: Final[tuple[float, float]] = (2.0, 10.0)
MISSING_DAY_PROBABILITY: Final[float] = 0.03
DUPLICATE_UPLOAD_PROBABILITY: Final[float] = 0.02
CLOCK_OFFSET_SD_SECONDS: Final[float] = 90.0
CLOCK_DRIFT_SD_SECONDS_PER_DAY: Final[float] = 2.0

# --- plausibility of emitted readings ------------------------------------------------------
# Outside clearly-flagged artefact mode every emitted reading stays inside these ranges and has
# systolic > diastolic. [assumption] wide limits that any ingestion validator should accept.
PLAUSIBLE_SYSTOLIC_MMHG: Final[tuple[int, int]] = (50, 300)
PLAUSIBLE_DIASTOLIC_MMHG: Final[tuple[int, int]] = (20, 200)
PLAUSIBLE_HEART_RATE_BPM: Final[tuple[int, int]] = (25, 250)
MIN_EMITTED_PULSE_PRESSURE_MMHG: Final[int] = 5

# --- clinical thresholds used by the course metrics -----------------------------------------
# [source] ACC/AHA 2017 guideline (Whelton et al., Hypertension 2018;71:e13): target < 130/80;
# hypertensive crisis > 180 and/or > 120 (we count >= 180 / >= 120, as the brief asks).
# The values are the product's clinical defaults (patients.clinical_defaults), so the simulator
# measures outcomes against the same lines the alerts and the course rules use.
TARGET_SYSTOLIC_MMHG: Final[int] = defaults.TARGET_SYSTOLIC_MMHG
TARGET_DIASTOLIC_MMHG: Final[int] = defaults.TARGET_DIASTOLIC_MMHG
CRISIS_SYSTOLIC_MMHG: Final[int] = defaults.CRISIS_SYSTOLIC_MMHG
CRISIS_DIASTOLIC_MMHG: Final[int] = defaults.CRISIS_DIASTOLIC_MMHG
# [informed] systolic < 90 mmHg is the usual definition of hypotension.
HYPOTENSION_SYSTOLIC_MMHG: Final[int] = defaults.HYPOTENSION_SYSTOLIC_MMHG
# [informed] Fatani et al., J Am Coll Cardiol 2021;77:1290 (SPRINT post hoc): systolic time in
# target range = 120-140 mmHg for the < 140 arm (110-130 for the < 120 arm). We use the same
# 20 mmHg window below the target: 110-130 mmHg for the < 130 target.
TARGET_RANGE_WIDTH_SYSTOLIC_MMHG: Final[int] = 20
