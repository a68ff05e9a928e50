"""patients.labs: the laboratory value sets, unit conversion, plain-decimal parsing and the
CKD-EPI 2021 equation (pure; no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patients import labs

# --- CKD-EPI 2021 (Inker et al., NEJM 2021;385:1737) --------------------------------------------


@pytest.mark.parametrize(
    ("creatinine", "age", "sex", "expected"),
    [
        # The National Kidney Foundation's CKD-EPI 2021 calculator (kidney.org): 55-year-old
        # man, creatinine 1.2 mg/dL → 71 mL/min/1.73 m² (71.42 before rounding).
        ("1.2", 55, "male", "71.4"),
        # Worked by hand from the published equation (floored to a tenth):
        # 142 × (1.0/0.7)^-1.200 × 0.9938^50 × 1.012 = 68.63
        ("1.0", 50, "female", "68.6"),
        # 142 × (1.5/0.9)^-1.200 × 0.9938^60 = 52.97
        ("1.5", 60, "male", "52.9"),
        # the min-term branch: 142 × (0.8/0.9)^-0.302 × 0.9938^40 = 114.74
        ("0.8", 40, "male", "114.7"),
        # 142 × (0.6/0.7)^-0.241 × 0.9938^30 × 1.012 = 123.76
        ("0.6", 30, "female", "123.7"),
    ],
)
def test_egfr_matches_published_and_hand_worked_values(creatinine, age, sex, expected):
    assert labs.egfr_ckd_epi_2021(Decimal(creatinine), age, sex) == Decimal(expected)


def _egfr_by_hand(creatinine: float, age: int, female: bool) -> float:
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine / kappa
    return (
        142
        * min(ratio, 1) ** alpha
        * max(ratio, 1) ** -1.200
        * 0.9938**age
        * (1.012 if female else 1)
    )


@given(
    creatinine=st.decimals(min_value="0.1", max_value="25", places=3),
    age=st.integers(min_value=18, max_value=110),
    female=st.booleans(),
)
def test_egfr_is_floored_to_a_tenth_so_rounding_never_lifts_it_over_a_threshold(
    creatinine, age, female
):
    exact = _egfr_by_hand(float(creatinine), age, female)
    egfr = labs.egfr_ckd_epi_2021(creatinine, age, "female" if female else "male")
    assert egfr == egfr.quantize(Decimal("0.1"))
    assert exact - 0.1 - 1e-9 <= float(egfr) <= exact + 1e-9


@pytest.mark.parametrize("sex", ["other", "unknown", "", None])
def test_egfr_for_other_or_unknown_sex_is_the_lower_of_the_two(sex):
    creatinine = Decimal("1.1")
    female = labs.egfr_ckd_epi_2021(creatinine, 62, "female")
    male = labs.egfr_ckd_epi_2021(creatinine, 62, "male")
    assert labs.egfr_ckd_epi_2021(creatinine, 62, sex) == min(female, male)


@pytest.mark.parametrize(
    ("creatinine", "age"),
    [(Decimal("0"), 50), (Decimal("-1"), 50), (Decimal("1.0"), 17), (Decimal("NaN"), 50)],
)
def test_egfr_is_none_outside_the_equation_s_domain(creatinine, age):
    assert labs.egfr_ckd_epi_2021(creatinine, age, "female") is None


@given(
    creatinine=st.decimals(min_value="0.1", max_value="25", places=2),
    age=st.integers(min_value=18, max_value=110),
    sex=st.sampled_from(["female", "male", "other", "unknown"]),
)
def test_egfr_falls_as_creatinine_or_age_rises(creatinine, age, sex):
    egfr = labs.egfr_ckd_epi_2021(creatinine, age, sex)
    assert egfr is not None and egfr > 0
    assert labs.egfr_ckd_epi_2021(creatinine + Decimal("0.1"), age, sex) <= egfr
    assert labs.egfr_ckd_epi_2021(creatinine, age + 1, sex) <= egfr


# --- value sets and units -----------------------------------------------------------------------


def test_every_code_has_its_canonical_unit_among_the_accepted_ones():
    assert set(labs.LAB_CODES) == {"2823-3", "2160-0", "33914-3", "62238-1", "98979-8"}
    for code in labs.LAB_CODES.values():
        assert code.units[code.unit] == 1


@pytest.mark.parametrize(
    ("code", "value", "unit", "canonical"),
    [
        ("2823-3", "4.2", "mmol/L", "4.2"),
        ("2823-3", "4.2", "meq/L", "4.2"),
        ("2160-0", "1.05", "mg/dL", "1.05"),
        ("2160-0", "88.42", "umol/L", "1"),
        ("2160-0", "100", "umol/L", "1.131"),  # 1.13097… to three decimals
        ("62238-1", "45", "mL/min/{1.73_m2}", "45"),
    ],
)
def test_values_are_converted_to_the_canonical_unit(code, value, unit, canonical):
    result = labs.to_canonical(code, Decimal(value), unit)
    assert isinstance(result, labs.Canonical)
    assert result.value == Decimal(canonical)
    assert result.unit == labs.LAB_CODES[code].unit


@pytest.mark.parametrize(
    ("code", "value", "unit", "field", "words"),
    [
        ("2823-3", "4.2", "mg/dL", "unit", "mmol/L, meq/L"),
        ("2823-3", "4.2", "mEq/L", "unit", "mmol/L, meq/L"),
        ("62238-1", "45", "mL/min/1.73m2", "unit", "mL/min/{1.73_m2}"),
        ("2823-3", "42", "mmol/L", "value", "1.5–10.0 mmol/L"),
        ("2823-3", "1.4", "meq/L", "value", "1.5–10.0 meq/L"),
        ("2160-0", "3000", "umol/L", "value", "0.1–25 mg/dL"),
        ("62238-1", "0", "mL/min/{1.73_m2}", "value", "1–200"),
        ("1234-5", "1", "mmol/L", "code", "2823-3"),
    ],
)
def test_a_wrong_unit_impossible_value_or_unknown_code_is_named(code, value, unit, field, words):
    problem = labs.to_canonical(code, Decimal(value), unit)
    assert isinstance(problem, labs.LabProblem)
    assert problem.field == field
    assert words in problem.message


def test_a_creatinine_range_refusal_in_umol_names_the_range_in_umol_too():
    problem = labs.to_canonical("2160-0", Decimal("3000"), "umol/L")
    assert "umol/L" in problem.message


# --- plain decimals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (4, Decimal("4")),
        (4.25, Decimal("4.25")),
        ("4.25", Decimal("4.25")),
        ("0.870", Decimal("0.870")),
        (Decimal("1.5"), Decimal("1.5")),
        ("123456", Decimal("123456")),
    ],
)
def test_plain_values_are_read(raw, expected):
    assert labs.parse_value(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "1_0",
        "١٠",  # Arabic-Indic digits
        "４",  # full-width
        "1e1",
        1e300,
        "NaN",
        "Infinity",
        float("nan"),
        float("inf"),
        "-4",
        -4,
        "4.2 mmol/L",
        " 4.2",
        "4.",
        ".5",
        "4.1234",
        4.1234,
        "1234567",
        True,
        None,
        [],
    ],
)
def test_anything_but_a_plain_decimal_is_refused(raw):
    assert labs.parse_value(raw) is None
