"""In-silico hypertensive patients: generate, measure, treat, and score - deterministically.

Pure Python + numpy (no Django). Used to train and evaluate the dose model, to test ingestion
and safety rules, and to build the demo fixtures. Same seed and inputs => identical output.

Modules (one seam each)
    parameters   every clinical/device constant with its source and an honesty label
    drugs        amlodipine, lisinopril, hydrochlorothiazide: Emax, onset, subgroup modifiers
    population   Demographics, VirtualPatient, generate_cohort, make_patient
    adherence    per-patient intake probability with a weekend dip
    device       DeviceErrorModel (bias, noise, motion artefacts, gaps, duplicates, clock skew)
    physiology   CohortSimulation: the day engine (circadian, activity, drugs, events)
    readings     simulate_trace, CohortTrace, readings/intakes in the ingestion API's shape
    course       run_policy, ObservedState, hold_policy, outcome metrics
    scenarios    crisis_patient, controlled_patient, hypotensive_patient

Parameter table (details and exact sources next to each constant; labels: [source] taken from
the reference, [informed] direction/range from it and value ours, [assumption] illustrative)

==========================================  =======================  ==========================
parameter                                   value                    reference
==========================================  =======================  ==========================
race / ethnicity / sex mix                  62 % white, 17 % Black,  [informed] US Census 2020,
                                            16 % Hispanic, 52 % men  NHANES 2017-2020
age                                         58 +/- 13 y (25-90)      [assumption]
untreated awake baseline                    144/88 +/- 12/6 mmHg     [informed] ACC/AHA 2017
                                            (stage 1-2 mostly)       stages; NHANES
nocturnal dip                               dippers 10-20 %,         [source] ESH 2021 (Stergiou)
                                            non-dippers 0-10 %, 30 % [informed]
morning surge                               +10 +/- 4 mmHg, tau 1.5h [assumption] ~Kario 2003
day-to-day / within-day SD (systolic)       5 (AR 0.5) / 4 mmHg      [informed] Juhanoja 2017
activity                                    +4/+2 mmHg, +10/min per  [assumption]
                                            1000 steps/h
standard-dose effect (all 3 drugs)          9.1/5.5 mmHg             [source] Law 2003 BMJ
half-dose effect                            80 % -> ED50 = std / 3   [source] Law 2003
pretreatment BP dependence                  +1.0/+1.1 per 10 mmHg    [source] Law 2003
combination                                 additive                 [source] Law 2003
onset tau amlodipine/lisinopril/HCTZ        3 / 5 / 7 days           [informed] US labels
between-patient response                    lognormal sigma 0.45     [assumption]
ACE inhibitor in Black patients             x0.5 mono, x0.85 +thiaz  [informed] ALLHAT 2005,
thiazide / CCB in Black patients            x1.15                    NICE NG136, ACC/AHA 2017
age >= 55: ACEi / thiazide, CCB             x0.9 / x1.1              [informed] NICE, Dickerson
adherence                                   Beta(8,2), mean 0.8;     [informed] Vrijens 2008
                                            weekend -15 % relative
dehydration                                 1/365 d, 2-4 d, -25/-12  [assumption]; labels for
                                            mmHg, ACEi+thiazide x1.5 the volume-depletion warning
NSAID course                                1/120 d, 3-10 d, +6/+4   [source] Johnson 1994 (+5
                                                                     mean BP), split assumed
device bias SD / noise SD (systolic)        4 / 7 mmHg (diast 3/5)   [informed] ISO 81060-2,
                                                                     cuffless validation studies
artefacts / gaps / missing / duplicates     2 % / 15 % d / 3 % d / 2 %  [assumption]
clock offset / drift                        90 s / 2 s per day       [assumption]
target / crisis / hypotension               <130/80, >=180|>=120, <90  [source] ACC/AHA 2017
time-in-target-range window                 110 <= daily mean < 130  [informed] Fatani 2021
==========================================  =======================  ==========================

Known limitations: one class-average Emax curve for all three drugs; no ARBs, beta-blockers or
tolerance; doses taken all together or not at all; no DST; a patient's values depend on the
cohort it is simulated in (the random streams are per cohort, not per patient).
"""

from .course import (
    BloodPressureTarget,
    CohortOutcome,
    CourseResult,
    ObservedState,
    PatientOutcome,
    Policy,
    RegimenChange,
    hold_policy,
    run_policy,
)
from .device import DeviceErrorModel, ReadingCadence
from .drugs import DRUG_NAMES, DRUGS, DrugSpec, InvalidRegimen, Regimen, validate_regimen
from .physiology import CohortSimulation, DayOutcome, IntercurrentEventRates
from .population import Demographics, VirtualPatient, generate_cohort, make_patient
from .readings import CohortTrace, cohort_readings, patient_readings, simulate_trace
from .scenarios import controlled_patient, crisis_patient, hypotensive_patient

__all__ = [
    "DRUGS",
    "DRUG_NAMES",
    "BloodPressureTarget",
    "CohortOutcome",
    "CohortSimulation",
    "CohortTrace",
    "CourseResult",
    "DayOutcome",
    "Demographics",
    "DeviceErrorModel",
    "DrugSpec",
    "IntercurrentEventRates",
    "InvalidRegimen",
    "ObservedState",
    "PatientOutcome",
    "Policy",
    "ReadingCadence",
    "Regimen",
    "RegimenChange",
    "VirtualPatient",
    "cohort_readings",
    "controlled_patient",
    "crisis_patient",
    "generate_cohort",
    "hold_policy",
    "hypotensive_patient",
    "make_patient",
    "patient_readings",
    "run_policy",
    "simulate_trace",
    "validate_regimen",
]
