"""Hand-made patients for tests and demos: crisis, stable and controlled, hypotensive.

Each is fully specified (no randomness in the patient; the simulation seed still drives the
day-to-day variation), with median drug sensitivity and full adherence, so the expected BP is
easy to reason about. The levels quoted below are the true awake resting levels; readings add
morning surge, activity and device error.
"""

from __future__ import annotations

from decimal import Decimal

from .population import VirtualPatient, make_patient

CRISIS_BASELINE_SYSTOLIC_MMHG = 205.0
CRISIS_BASELINE_DIASTOLIC_MMHG = 135.0


def crisis_patient(patient_id: str = "sim-crisis") -> VirtualPatient:
    """Untreated severe hypertension, non-dipper: readings >= 180 / >= 120 mmHg day and night."""
    return make_patient(
        patient_id,
        baseline_systolic_mmhg=CRISIS_BASELINE_SYSTOLIC_MMHG,
        baseline_diastolic_mmhg=CRISIS_BASELINE_DIASTOLIC_MMHG,
        nocturnal_dip_fraction=0.02,
        age_years=61,
    )


def controlled_patient(patient_id: str = "sim-controlled") -> VirtualPatient:
    """Stage 1 hypertension on amlodipine 10 mg + lisinopril 20 mg at steady state, fully
    adherent: true awake level ~121/76 mmHg, inside the default 110-130 target range."""
    return make_patient(
        patient_id,
        baseline_systolic_mmhg=138.0,
        baseline_diastolic_mmhg=86.0,
        age_years=50,
        initial_regimen={"amlodipine": Decimal("10"), "lisinopril": Decimal("20")},
    )


def hypotensive_patient(
    patient_id: str = "sim-hypotensive", dehydrated_days: int = 7
) -> VirtualPatient:
    """Older patient on lisinopril 20 mg + hydrochlorothiazide 25 mg who is dehydrated for the
    first ``dehydrated_days`` days: true awake level ~80-85 mmHg systolic, lower at night."""
    return make_patient(
        patient_id,
        baseline_systolic_mmhg=128.0,
        baseline_diastolic_mmhg=80.0,
        age_years=74,
        sex="female",
        initial_regimen={"lisinopril": Decimal("20"), "hydrochlorothiazide": Decimal("25")},
        dehydrated_first_days=dehydrated_days,
    )
