"""Antihypertensive drugs: dose ranges, Emax dose-response, onset, and subgroup differences.

Dose-response (Emax model)
    E(D) = Emax * D / (ED50 + D), per drug and separately for systolic and diastolic BP.

    [source] Law, Wald, Morris & Jordan, BMJ 2003;326:1427 (354 placebo-controlled trials): every
    class lowers BP by about 9.1 mmHg systolic / 5.5 mmHg diastolic at its standard dose, 20 %
    less at half the standard dose; effects of drugs from different classes add up; the reduction
    is 1.0 / 1.1 mmHg larger for every 10 mmHg higher pretreatment systolic / diastolic BP.
    Solving E(D/2) = 0.8 * E(D) for the Emax model gives ED50 = standard dose / 3 and
    Emax = 4/3 * E(standard dose). The same class-average effect is used for all three drugs
    ([informed]: Law 2003 found the classes similar; per-drug differences are not modelled).
    The reference pretreatment BP is 154/97 mmHg (the mean pretreatment BP of Law 2003's
    trials as we recall it; [informed], check against its Table 2 before quoting).

Time to effect
    The drug's *exposure* follows first-order kinetics towards the dose taken each day
    (x <- x + (dose_taken - x) * (1 - exp(-1 / tau_days))); the effect is Emax applied to the
    exposure. One time constant thus models both onset after starting/up-titrating and the loss
    of effect after missed doses. tau per drug is [informed] by the US labels (Norvasc: steady
    state after 7-8 days; Zestril: full effect may take 2-4 weeks; thiazides 2-4 weeks).

Between-patient variation
    Each patient has a lognormal sensitivity per drug (median ~1, sigma below, [assumption]);
    individual responses range from none to 20-30 mmHg (Eur Heart J 2011;32:2499).

Subgroup differences ([informed]; the multipliers themselves are [assumption])
    * ACE inhibitor monotherapy lowers BP less in Black patients: ALLHAT (Wright et al., JAMA
      2005;293:1595: systolic BP ~4 mmHg higher on lisinopril than chlorthalidone in Black
      participants); NICE NG136 (2019, "Choosing antihypertensive drug treatment": CCB first for
      Black African or African-Caribbean adults, ARB in preference to ACE inhibitor in
      combination); ACC/AHA 2017 (section 10.3.1, racial and ethnic differences in treatment:
      thiazide or CCB as initial therapy in Black adults). The blunting is mostly
      removed when a thiazide is co-prescribed (diuretics activate the renin system).
    * Thiazide and CCB relatively more effective in Black patients and in older patients; ACE
      inhibitor relatively more in younger patients (NICE NG136 age-55 rule; Dickerson et al.,
      Lancet 1999;353:2008, AB/CD rule).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final, Literal

from .parameters import Race

DrugClass = Literal["calcium_channel_blocker", "ace_inhibitor", "thiazide_diuretic"]
Regimen = dict[str, Decimal]
"""A regimen: medication name -> once-daily dose in mg. A drug not in the dict is not taken."""

LAW_2003_STANDARD_DOSE_SYSTOLIC_EFFECT_MMHG: Final[float] = 9.1  # [source] Law 2003
LAW_2003_STANDARD_DOSE_DIASTOLIC_EFFECT_MMHG: Final[float] = 5.5  # [source] Law 2003
LAW_2003_HALF_DOSE_EFFECT_RATIO: Final[float] = 0.8  # [source] Law 2003: "20 % lower"
LAW_2003_REFERENCE_SYSTOLIC_MMHG: Final[float] = 154.0  # [informed], see module docstring
LAW_2003_REFERENCE_DIASTOLIC_MMHG: Final[float] = 97.0  # [informed]
# [source] Law 2003: +1.0 / +1.1 mmHg reduction per 10 mmHg higher pretreatment BP.
LAW_2003_EXTRA_SYSTOLIC_EFFECT_PER_MMHG: Final[float] = 0.10
LAW_2003_EXTRA_DIASTOLIC_EFFECT_PER_MMHG: Final[float] = 0.11
PRETREATMENT_FACTOR_RANGE: Final[tuple[float, float]] = (0.25, 2.0)  # [assumption] guard rail
# ED50 / standard dose implied by the half-dose ratio r: (ED50 + D) / (2 ED50 + D) = r.
ED50_PER_STANDARD_DOSE: Final[float] = (1 - LAW_2003_HALF_DOSE_EFFECT_RATIO) / (
    2 * LAW_2003_HALF_DOSE_EFFECT_RATIO - 1
)
EMAX_PER_STANDARD_DOSE_EFFECT: Final[float] = 1 + ED50_PER_STANDARD_DOSE
DRUG_SENSITIVITY_LOGNORMAL_SIGMA: Final[float] = 0.45  # [assumption]


@dataclass(frozen=True)
class DrugSpec:
    """One antihypertensive drug as the simulator knows it (once-daily oral dosing)."""

    name: str
    drug_class: DrugClass
    min_dose_mg: Decimal
    standard_dose_mg: Decimal
    max_dose_mg: Decimal
    titration_steps_mg: tuple[Decimal, ...]
    onset_time_constant_days: float
    dose_range_source: str

    @property
    def ed50_mg(self) -> float:
        return float(self.standard_dose_mg) * ED50_PER_STANDARD_DOSE

    @property
    def emax_systolic_mmhg(self) -> float:
        return LAW_2003_STANDARD_DOSE_SYSTOLIC_EFFECT_MMHG * EMAX_PER_STANDARD_DOSE_EFFECT

    @property
    def emax_diastolic_mmhg(self) -> float:
        return LAW_2003_STANDARD_DOSE_DIASTOLIC_EFFECT_MMHG * EMAX_PER_STANDARD_DOSE_EFFECT

    def mean_effect_mmhg(self, dose_mg: Decimal | float) -> tuple[float, float]:
        """Average steady-state (systolic, diastolic) fall at this dose with full adherence, at
        the reference pretreatment BP, for a patient of median sensitivity and no modifier."""
        dose = max(float(dose_mg), 0.0)
        fraction = dose / (self.ed50_mg + dose)
        return self.emax_systolic_mmhg * fraction, self.emax_diastolic_mmhg * fraction


DRUGS: Final[dict[str, DrugSpec]] = {
    "amlodipine": DrugSpec(
        name="amlodipine",
        drug_class="calcium_channel_blocker",
        min_dose_mg=Decimal("2.5"),
        standard_dose_mg=Decimal("5"),
        max_dose_mg=Decimal("10"),
        titration_steps_mg=(Decimal("2.5"), Decimal("5"), Decimal("10")),
        onset_time_constant_days=3.0,
        dose_range_source="Norvasc US label: 2.5-10 mg once daily; BNF",
    ),
    "lisinopril": DrugSpec(
        name="lisinopril",
        drug_class="ace_inhibitor",
        min_dose_mg=Decimal("5"),
        standard_dose_mg=Decimal("10"),
        max_dose_mg=Decimal("40"),
        titration_steps_mg=(Decimal("5"), Decimal("10"), Decimal("20"), Decimal("40")),
        onset_time_constant_days=5.0,
        dose_range_source="Zestril US label: 10-40 mg (5 mg start with diuretic); BNF",
    ),
    "hydrochlorothiazide": DrugSpec(
        name="hydrochlorothiazide",
        drug_class="thiazide_diuretic",
        min_dose_mg=Decimal("12.5"),
        standard_dose_mg=Decimal("25"),
        max_dose_mg=Decimal("50"),
        titration_steps_mg=(Decimal("12.5"), Decimal("25"), Decimal("50")),
        onset_time_constant_days=7.0,
        dose_range_source="Hydrochlorothiazide US label: 12.5-50 mg once daily",
    ),
}
DRUG_NAMES: Final[tuple[str, ...]] = tuple(DRUGS)


@dataclass(frozen=True)
class ResponseModifier:
    """Multiplies a drug class's effect in a subgroup (see the module docstring for sources)."""

    drug_class: DrugClass
    multiplier: float
    race: Race | None = None
    min_age_years: int | None = None
    max_age_years: int | None = None
    only_with_class: DrugClass | None = None
    only_without_class: DrugClass | None = None

    def applies(self, age_years: int, race: Race, co_prescribed: frozenset[DrugClass]) -> bool:
        return (
            (self.race is None or race == self.race)
            and (self.min_age_years is None or age_years >= self.min_age_years)
            and (self.max_age_years is None or age_years < self.max_age_years)
            and (self.only_with_class is None or self.only_with_class in co_prescribed)
            and (self.only_without_class is None or self.only_without_class not in co_prescribed)
        )


# Classes whose effect is larger in volume depletion ([source] lisinopril and
# hydrochlorothiazide US labels, warnings on hypotension in volume-depleted patients).
DEHYDRATION_SENSITIVE_CLASSES: Final[frozenset[DrugClass]] = frozenset(
    {"ace_inhibitor", "thiazide_diuretic"}
)

BLACK: Final[Race] = "black_or_african_american"
ACE_INHIBITOR_BLACK_MONOTHERAPY_MULTIPLIER: Final[float] = 0.5
ACE_INHIBITOR_BLACK_WITH_THIAZIDE_MULTIPLIER: Final[float] = 0.85
THIAZIDE_OR_CCB_BLACK_MULTIPLIER: Final[float] = 1.15
OLDER_AGE_YEARS: Final[int] = 55  # [source] NICE NG136 age threshold
ACE_INHIBITOR_OLDER_MULTIPLIER: Final[float] = 0.9
THIAZIDE_OR_CCB_OLDER_MULTIPLIER: Final[float] = 1.1

RESPONSE_MODIFIERS: Final[tuple[ResponseModifier, ...]] = (
    ResponseModifier(
        "ace_inhibitor",
        ACE_INHIBITOR_BLACK_MONOTHERAPY_MULTIPLIER,
        race=BLACK,
        only_without_class="thiazide_diuretic",
    ),
    ResponseModifier(
        "ace_inhibitor",
        ACE_INHIBITOR_BLACK_WITH_THIAZIDE_MULTIPLIER,
        race=BLACK,
        only_with_class="thiazide_diuretic",
    ),
    ResponseModifier("thiazide_diuretic", THIAZIDE_OR_CCB_BLACK_MULTIPLIER, race=BLACK),
    ResponseModifier("calcium_channel_blocker", THIAZIDE_OR_CCB_BLACK_MULTIPLIER, race=BLACK),
    ResponseModifier(
        "ace_inhibitor", ACE_INHIBITOR_OLDER_MULTIPLIER, min_age_years=OLDER_AGE_YEARS
    ),
    ResponseModifier(
        "thiazide_diuretic", THIAZIDE_OR_CCB_OLDER_MULTIPLIER, min_age_years=OLDER_AGE_YEARS
    ),
    ResponseModifier(
        "calcium_channel_blocker", THIAZIDE_OR_CCB_OLDER_MULTIPLIER, min_age_years=OLDER_AGE_YEARS
    ),
)


def response_multiplier(
    drug_name: str, age_years: int, race: Race, co_prescribed: frozenset[DrugClass]
) -> float:
    """Product of the subgroup multipliers that apply to this drug for this patient.

    ``co_prescribed`` is the set of classes in the whole current regimen (it may include the
    drug's own class, which no modifier uses)."""
    drug_class = DRUGS[drug_name].drug_class
    multiplier = 1.0
    for modifier in RESPONSE_MODIFIERS:
        if modifier.drug_class == drug_class and modifier.applies(age_years, race, co_prescribed):
            multiplier *= modifier.multiplier
    return multiplier


def pretreatment_factors(
    baseline_systolic_mmhg: float, baseline_diastolic_mmhg: float
) -> tuple[float, float]:
    """How much larger (> 1) or smaller the effect is at this pretreatment BP (Law 2003)."""
    low, high = PRETREATMENT_FACTOR_RANGE
    systolic = (
        1
        + LAW_2003_EXTRA_SYSTOLIC_EFFECT_PER_MMHG
        * (baseline_systolic_mmhg - LAW_2003_REFERENCE_SYSTOLIC_MMHG)
        / LAW_2003_STANDARD_DOSE_SYSTOLIC_EFFECT_MMHG
    )
    diastolic = (
        1
        + LAW_2003_EXTRA_DIASTOLIC_EFFECT_PER_MMHG
        * (baseline_diastolic_mmhg - LAW_2003_REFERENCE_DIASTOLIC_MMHG)
        / LAW_2003_STANDARD_DOSE_DIASTOLIC_EFFECT_MMHG
    )
    return min(max(systolic, low), high), min(max(diastolic, low), high)


class InvalidRegimen(ValueError):
    """A regimen names an unknown drug or a dose outside the drug's labelled range."""


def validate_regimen(regimen: Mapping[str, Decimal | int | str]) -> Regimen:
    """Return the regimen with Decimal doses, dropping drugs whose dose is 0 (stopped).

    Floats are refused: doses are compared against bounds, so they must be exact."""
    validated: Regimen = {}
    for name, raw_dose in regimen.items():
        if name not in DRUGS:
            raise InvalidRegimen(f"unknown medication {name!r}; known: {', '.join(DRUG_NAMES)}")
        if isinstance(raw_dose, float | bool):
            raise InvalidRegimen(f"dose of {name} must be a Decimal, got {type(raw_dose).__name__}")
        try:
            dose_mg = Decimal(raw_dose)
        except (InvalidOperation, TypeError, ValueError) as error:
            raise InvalidRegimen(f"dose of {name} is not a number: {raw_dose!r}") from error
        if not dose_mg.is_finite():
            raise InvalidRegimen(f"dose of {name} is not finite: {raw_dose!r}")
        if dose_mg == 0:
            continue
        spec = DRUGS[name]
        if not spec.min_dose_mg <= dose_mg <= spec.max_dose_mg:
            raise InvalidRegimen(
                f"dose of {name} must be 0 or within {spec.min_dose_mg}-{spec.max_dose_mg} mg,"
                f" got {dose_mg} mg"
            )
        validated[name] = dose_mg
    return validated


def exposure_retention_per_day(drug_name: str) -> float:
    """Fraction of yesterday's exposure that remains after one day (exp(-1 / tau_days))."""
    return math.exp(-1 / DRUGS[drug_name].onset_time_constant_days)
