"""The transparent stepwise titration protocol: the baseline every model must beat.

Pure Python (no Django), so the same function runs in production and inside the simulator.
Steps follow the ACC/AHA 2017 guideline (Whelton et al., Hypertension 2018;71:e13, section 8.1:
home-BP-guided titration towards < 130/80, monthly reassessment) and NICE NG136 (2019, 1.4:
titrate one drug at a time, then add a drug of another class):

1. fewer than ``MIN_READINGS_7D`` home readings in 7 days → no proposal (insufficient data);
2. adherence below ``ADEQUATE_ADHERENCE`` → an adherence nudge, never a higher dose (a higher
   dose for a patient who does not take the drug is the classic cause of overtreatment when
   adherence recovers — WHO 2021 hypertension guideline, recommendation 7);
3. 7-day mean systolic below ``target - STEP_DOWN_MARGIN_MMHG`` on treatment → one strength down;
4. 7-day mean at or above target (systolic or diastolic) → one strength up of the drug furthest
   from its maximum, or, with every drug at its maximum, add the next drug class at its lowest
   strength (first line: CCB, then ACE inhibitor, then thiazide);
5. otherwise hold.

Expected effects are population averages of the dose–response table in
``models_ml.simulator.drugs`` (Law et al., BMJ 2003;326:1427), with a between-patient spread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from models_ml.simulator.drugs import DRUG_SENSITIVITY_LOGNORMAL_SIGMA, DRUGS
from patients import clinical_defaults as defaults
from patients.course import MIN_EVIDENCE_READINGS
from patients.course import STEP_DOWN_MARGIN_MMHG as STEP_DOWN_MARGIN_MMHG  # re-exported
from patients.formulary import FORMULARY

PROTOCOL_VERSION = "stepwise-protocol-1"
MIN_READINGS_7D = MIN_EVIDENCE_READINGS
ADEQUATE_ADHERENCE = 0.8
FIRST_LINE_ORDER = ("amlodipine", "lisinopril", "hydrochlorothiazide")


@dataclass(frozen=True)
class TitrationState:
    """What the protocol sees about one patient."""

    mean_systolic_7d_mmhg: float | None
    mean_diastolic_7d_mmhg: float | None
    reading_count_7d: int
    adherence_rate_7d: float | None
    regimen: Mapping[str, Decimal]
    target_systolic_mmhg: int = defaults.TARGET_SYSTOLIC_MMHG
    target_diastolic_mmhg: int = defaults.TARGET_DIASTOLIC_MMHG
    # Drugs the clinician allows, each with its maximum (from safety bounds); None = formulary.
    allowed_max_dose_mg: Mapping[str, Decimal] | None = None


@dataclass(frozen=True)
class Proposal:
    kind: str  # "titrate" | "adherence_nudge" | "hold"
    medication: str = ""
    current_dose_mg: Decimal = Decimal("0")
    proposed_dose_mg: Decimal | None = None
    reason: str = ""
    expected_systolic_change_mmhg: float = 0.0
    expected_diastolic_change_mmhg: float = 0.0
    uncertainty_mmhg: float = 0.0
    explanation: list[dict[str, Any]] = field(default_factory=list)
    producer: str = PROTOCOL_VERSION
    base_value_mmhg: float | None = None  # SHAP base value when the explanation is SHAP
    # The explanation, not computed yet (SHAP costs more than the prediction): ``explained()``
    # computes it for a proposal that is made; a proposal that changes nothing never pays it.
    explain: Callable[[], Any] | None = field(default=None, compare=False, repr=False)

    def explained(self) -> Proposal:
        """This proposal with its explanation computed (itself when there is none to compute)."""
        if self.explain is None:
            return self
        explanation = self.explain()
        return replace(
            self,
            explanation=explanation.contributions,
            base_value_mmhg=explanation.base_value_mmhg,
            explain=None,
        )


def _strengths(medication: str, ceiling: Decimal | None) -> list[Decimal]:
    strengths = list(FORMULARY[medication].strengths_mg)
    return [s for s in strengths if ceiling is None or s <= ceiling]


def expected_change(
    medication: str, old_mg: Decimal, new_mg: Decimal
) -> tuple[float, float, float]:
    """(systolic, diastolic, uncertainty) change in mmHg when moving from old to new dose."""
    drug = DRUGS[medication]
    old_sys, old_dia = drug.mean_effect_mmhg(old_mg)
    new_sys, new_dia = drug.mean_effect_mmhg(new_mg)
    systolic, diastolic = -(new_sys - old_sys), -(new_dia - old_dia)
    # Lognormal sensitivity with sigma s: the SD of the multiplier is sqrt(exp(s^2)-1)*exp(s^2/2).
    spread = abs(systolic) * 0.5 * (1 + DRUG_SENSITIVITY_LOGNORMAL_SIGMA)
    return round(systolic, 1), round(diastolic, 1), round(spread, 1)


def _explanation(state: TitrationState) -> list[dict[str, Any]]:
    return [
        {
            "feature": "7-day mean systolic",
            "value": state.mean_systolic_7d_mmhg,
            "unit": "mmHg",
            "threshold": state.target_systolic_mmhg,
        },
        {
            "feature": "7-day mean diastolic",
            "value": state.mean_diastolic_7d_mmhg,
            "unit": "mmHg",
            "threshold": state.target_diastolic_mmhg,
        },
        {
            "feature": "readings in 7 days",
            "value": state.reading_count_7d,
            "unit": "count",
            "threshold": MIN_READINGS_7D,
        },
        {
            "feature": "adherence (7 days)",
            "value": state.adherence_rate_7d,
            "unit": "fraction",
            "threshold": ADEQUATE_ADHERENCE,
        },
    ]


def _titrate(
    state: TitrationState, medication: str, old: Decimal, new: Decimal, why: str
) -> Proposal:
    systolic, diastolic, spread = expected_change(medication, old, new)
    return Proposal(
        kind="titrate",
        medication=medication,
        current_dose_mg=old,
        proposed_dose_mg=new,
        reason=why,
        expected_systolic_change_mmhg=systolic,
        expected_diastolic_change_mmhg=diastolic,
        uncertainty_mmhg=spread,
        explanation=_explanation(state),
    )


def step_down(state: TitrationState, why: str) -> Proposal:
    """One strength down of the drug closest to its maximum (a stop below its lowest strength);
    a hold without a regimen."""
    regimen = {
        name: Decimal(dose) for name, dose in state.regimen.items() if name in FORMULARY and dose
    }
    if not regimen:
        return Proposal(kind="hold", reason=why, explanation=_explanation(state))
    name = max(regimen, key=lambda n: (regimen[n] / FORMULARY[n].max_dose_mg, n))
    lower = [s for s in FORMULARY[name].strengths_mg if s < regimen[name]]
    new = lower[-1] if lower else Decimal("0")
    return _titrate(state, name, regimen[name], new, f"{why}: reduce {name}")


def propose(state: TitrationState) -> Proposal:
    """One proposal for the patient (``kind="hold"`` when nothing should change)."""
    if state.reading_count_7d < MIN_READINGS_7D or state.mean_systolic_7d_mmhg is None:
        return Proposal(
            kind="hold",
            reason="not enough home readings in the last 7 days",
            explanation=_explanation(state),
        )
    systolic = state.mean_systolic_7d_mmhg
    diastolic = state.mean_diastolic_7d_mmhg or 0.0
    regimen = {name: Decimal(dose) for name, dose in state.regimen.items() if name in FORMULARY}
    allowed = state.allowed_max_dose_mg

    def ceiling(name: str) -> Decimal | None:
        return None if allowed is None else allowed.get(name)

    above = systolic >= state.target_systolic_mmhg or diastolic >= state.target_diastolic_mmhg
    if (
        regimen
        and state.adherence_rate_7d is not None
        and state.adherence_rate_7d < ADEQUATE_ADHERENCE
    ):
        if above:
            name = sorted(regimen)[0]
            return Proposal(
                kind="adherence_nudge",
                medication=name,
                current_dose_mg=regimen[name],
                reason=(
                    f"blood pressure above target with {state.adherence_rate_7d:.0%} of doses "
                    "taken: take the current doses before any increase"
                ),
                explanation=_explanation(state),
            )
        return Proposal(
            kind="hold",
            reason="adherence low but blood pressure at target",
            explanation=_explanation(state),
        )

    if regimen and systolic < state.target_systolic_mmhg - STEP_DOWN_MARGIN_MMHG:
        return step_down(
            state,
            f"7-day mean systolic {systolic:.0f} mmHg is well below the target of "
            f"{state.target_systolic_mmhg}",
        )

    if above:
        candidates = []
        for name, dose in regimen.items():
            higher = [
                s
                for s in _strengths(name, ceiling(name) if allowed is not None else None)
                if s > dose
            ]
            if allowed is not None and name not in allowed:
                higher = []
            if higher:
                candidates.append((dose / FORMULARY[name].max_dose_mg, name, higher[0]))
        if candidates:
            _, name, new = min(candidates)
            return _titrate(
                state,
                name,
                regimen[name],
                new,
                f"7-day mean {systolic:.0f}/{diastolic:.0f} mmHg is at or above the "
                f"target of {state.target_systolic_mmhg}/{state.target_diastolic_mmhg}: "
                f"increase {name}",
            )
        for name in FIRST_LINE_ORDER:
            if name in regimen or (allowed is not None and name not in allowed):
                continue
            strengths = _strengths(name, ceiling(name) if allowed is not None else None)
            if strengths:
                return _titrate(
                    state,
                    name,
                    Decimal("0"),
                    strengths[0],
                    f"7-day mean {systolic:.0f}/{diastolic:.0f} mmHg is above target "
                    f"with current drugs at their maximum: add {name}",
                )
        return Proposal(
            kind="hold",
            reason="above target but no further step is allowed",
            explanation=_explanation(state),
        )
    return Proposal(kind="hold", reason="blood pressure at target", explanation=_explanation(state))
