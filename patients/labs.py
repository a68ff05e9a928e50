"""Laboratory results the course rules need: the value sets, unit conversion, plain-decimal
reading and the CKD-EPI 2021 equation. Pure (no Django): ingestion, the selectors, the FHIR
facade and tests share it.

Codes are LOINC, units UCUM (case-sensitive codes, http://unitsofmeasure.org). Each result is
stored in its code's canonical unit, beside the value and unit as sent.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation

POTASSIUM = "2823-3"  # Potassium [Moles/volume] in Serum or Plasma
CREATININE = "2160-0"  # Creatinine [Mass/volume] in Serum or Plasma
# eGFR/1.73 m², creatinine-based: MDRD (33914-3), CKD-EPI (62238-1), CKD-EPI 2021 (98979-8).
# A reported eGFR is used as the laboratory computed it, whatever the equation.
EGFR_CODES = ("33914-3", "62238-1", "98979-8")
EGFR_UNIT = "mL/min/{1.73_m2}"

# Stored values: at most 6 integer digits and 3 decimals (the columns' precision).
VALUE_PLACES = Decimal("0.001")
PLAIN_VALUE = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,3})?$")
VALUE_MESSAGE = "must be a plain decimal number (digits 0-9, at most 3 decimals)"


@dataclass(frozen=True)
class LabCode:
    loinc: str
    name: str  # in words, for messages
    display: str  # LOINC long common name
    unit: str  # canonical UCUM code
    # Accepted UCUM codes → the divisor that brings a value into the canonical unit.
    units: dict[str, Decimal]
    plausible: tuple[Decimal, Decimal]  # in the canonical unit, inclusive


# Plausible ranges (treatment-course safety, docs/patient-ai-loop.md): outside them a value is
# a unit or transcription error, not a patient state. They are wide on purpose, so that a real
# extreme — the very result the course rules must act on — is never refused.
LAB_CODES: dict[str, LabCode] = {
    code.loinc: code
    for code in (
        LabCode(
            POTASSIUM,
            "potassium",
            "Potassium [Moles/volume] in Serum or Plasma",
            "mmol/L",
            # K⁺ is monovalent: 1 mEq/L = 1 mmol/L (UCUM ``meq`` = milliequivalent).
            {"mmol/L": Decimal(1), "meq/L": Decimal(1)},
            (Decimal("1.5"), Decimal("10.0")),
        ),
        LabCode(
            CREATININE,
            "creatinine",
            "Creatinine [Mass/volume] in Serum or Plasma",
            "mg/dL",
            # 1 mg/dL = 88.42 µmol/L (creatinine, molar mass 113.12 g/mol; the factor of the
            # issue and of common SI conversion tables — 88.40 by the molar mass alone, a
            # 0.02 % difference far inside assay imprecision). Strictly, µmol/L results have
            # their own LOINC code (14682-9); laboratories send them under 2160-0 too.
            {"mg/dL": Decimal(1), "umol/L": Decimal("88.42")},
            (Decimal("0.1"), Decimal("25")),
        ),
        *(
            LabCode(
                loinc,
                "eGFR",
                display,
                EGFR_UNIT,
                {EGFR_UNIT: Decimal(1)},
                (Decimal("1"), Decimal("200")),
            )
            for loinc, display in (
                (
                    "33914-3",
                    "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum "
                    "or Plasma by Creatinine-based formula (MDRD)",
                ),
                (
                    "62238-1",
                    "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, "
                    "Plasma or Blood by Creatinine-based formula (CKD-EPI)",
                ),
                (
                    "98979-8",
                    "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, "
                    "Plasma or Blood by Creatinine-based formula (CKD-EPI 2021)",
                ),
            )
        ),
    )
}
CODES_TEXT = ", ".join(f"{code.loinc} ({code.name})" for code in LAB_CODES.values())


@dataclass(frozen=True)
class Canonical:
    value: Decimal
    unit: str


@dataclass(frozen=True)
class LabProblem:
    """Why a result cannot be stored; ``field`` is the input at fault (code, unit, value)."""

    field: str
    message: str


def parse_value(value: object) -> Decimal | None:
    """The number ``value`` denotes, or None unless it is a JSON number (not a boolean, finite,
    non-negative) or a string of ASCII digits with at most one decimal point — at most 6 integer
    digits and 3 decimals either way. ``Decimal`` alone would read ``"1_0"`` as 10 and
    Arabic-Indic digits as ASCII ones: a silent misreading (as ``core.doses`` for doses)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return Decimal(value) if PLAIN_VALUE.fullmatch(value) else None
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        number = Decimal(repr(value))
    elif isinstance(value, Decimal):
        number = value
    else:
        return None
    try:
        if not number.is_finite() or number < 0 or number >= Decimal(1_000_000):
            return None
        if number != number.quantize(VALUE_PLACES):
            return None
    except InvalidOperation:
        return None
    return number


def _range_text(low: Decimal, high: Decimal, unit: str) -> str:
    return f"{low}–{high} {unit}"


def to_canonical(code: str, value: Decimal, unit: str) -> Canonical | LabProblem:
    """``value`` in ``unit`` as the code's canonical value, or the problem with it."""
    lab = LAB_CODES.get(code)
    if lab is None:
        return LabProblem("code", f"is not a supported LOINC code; expected one of {CODES_TEXT}")
    divisor = lab.units.get(unit)
    if divisor is None:
        return LabProblem(
            "unit",
            f"{unit!r} is not a unit for {lab.name} ({code}); expected UCUM {', '.join(lab.units)}",
        )
    canonical = (value / divisor).quantize(VALUE_PLACES, rounding=ROUND_HALF_EVEN)
    low, high = lab.plausible
    if not (low <= canonical <= high):
        ranges = _range_text(low, high, lab.unit)
        if unit != lab.unit:
            ranges += f" ({_range_text(low * divisor, high * divisor, unit)})"
        return LabProblem("value", f"must be within {ranges} for {lab.name}: {value} {unit} is not")
    return Canonical(canonical, lab.unit)


# --- CKD-EPI 2021 -------------------------------------------------------------------------------

# Inker LA et al. New creatinine- and cystatin C-based equations to estimate GFR without race.
# N Engl J Med 2021;385:1737-49 (the race-free creatinine equation, recommended by the NKF-ASN
# task force, 2021):
#   eGFR = 142 × min(Scr/κ, 1)^α × max(Scr/κ, 1)^-1.200 × 0.9938^age × 1.012 [if female]
# with Scr in mg/dL, κ 0.7 (female) / 0.9 (male), α -0.241 (female) / -0.302 (male). Derived
# and validated in adults (18 years and over).
CKD_EPI_2021 = {"female": (0.7, -0.241, 1.012), "male": (0.9, -0.302, 1.0)}
CKD_EPI_MIN_AGE = 18
EGFR_PLACES = Decimal("0.1")


def _ckd_epi(creatinine_mg_dl: float, age_years: int, sex: str) -> float:
    kappa, alpha, factor = CKD_EPI_2021[sex]
    ratio = creatinine_mg_dl / kappa
    return 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.200 * 0.9938**age_years * factor


def egfr_ckd_epi_2021(creatinine_mg_dl: Decimal, age_years: int, sex: str | None) -> Decimal | None:
    """eGFR in mL/min/1.73 m² from a creatinine in mg/dL, floored to a tenth (rounding never
    lifts a value over a threshold). Fails closed: for a sex other than female or male
    (``other``, ``unknown``) the lower of the two results; None outside the equation's domain
    (a child, a creatinine that is not a positive number)."""
    try:
        creatinine = float(creatinine_mg_dl)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(creatinine) and creatinine > 0) or age_years < CKD_EPI_MIN_AGE:
        return None
    sexes = (sex,) if sex in CKD_EPI_2021 else tuple(CKD_EPI_2021)
    egfr = min(_ckd_epi(creatinine, age_years, each) for each in sexes)
    return Decimal(repr(egfr)).quantize(EGFR_PLACES, rounding=ROUND_FLOOR)
