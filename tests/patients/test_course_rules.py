"""The treatment-course rules (``patients.course``): pure, total, failing closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from core.doses import parse_dose
from patients import course
from patients.course import CourseState, LabSnapshot, LabValue, assess_change

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def state(**overrides) -> CourseState:
    values = {
        "now": NOW,
        "regimen": {},
        "evidence_count": 10,
        "mean_systolic_mmhg": 150.0,
        "mean_diastolic_mmhg": 92.0,
        "lowest_recent_systolic_mmhg": 135.0,
    }
    values.update(overrides)
    return CourseState(**values)


def recent_labs(potassium="4.2", egfr="80") -> LabSnapshot:
    return LabSnapshot(
        LabValue(Decimal(potassium), NOW - timedelta(days=10)),
        LabValue(Decimal(egfr), NOW - timedelta(days=10)),
    )


def test_a_change_three_days_ago_holds_with_the_next_date_in_words():
    s = state(last_change_at=NOW - timedelta(days=3), last_change_medication="amlodipine")
    (hold,) = course.holds(s)
    assert hold.code == "min_interval"
    assert "3 days ago" in hold.message and "2026-12-13" in hold.message


def test_after_the_interval_too_few_post_change_readings_hold():
    s = state(
        last_change_at=NOW - timedelta(days=14),
        last_change_medication="amlodipine",
        evidence_count=3,
    )
    (hold,) = course.holds(s)
    assert hold.code == "insufficient_evidence"
    assert "3 blood-pressure reading(s)" in hold.message


def test_evidence_starts_when_the_changed_drug_can_have_acted():
    change = NOW - timedelta(days=9)
    assert course.evidence_from(NOW, change, "amlodipine") == change + timedelta(days=7)
    assert course.evidence_from(NOW, change, "lisinopril") == change + timedelta(days=5)
    long_ago = NOW - timedelta(days=13)
    assert course.evidence_from(NOW, long_ago, "lisinopril") == NOW - timedelta(days=7)
    assert course.evidence_from(NOW, None, None) == NOW - timedelta(days=7)
    # An unknown drug waits the longest (fails closed).
    assert course.evidence_from(NOW, change, "unknown") == change + timedelta(days=14)


def test_the_interval_cannot_be_shortened_below_the_hard_limit():
    assert course.clamp_interval_days(1) == course.MIN_INTERVAL_LIMITS_DAYS[0]
    assert course.clamp_interval_days("nonsense") == course.DEFAULT_MIN_INTERVAL_DAYS
    s = state(last_change_at=NOW - timedelta(days=5), min_interval_days=2)
    assert course.holds(s)[0].code == "min_interval"


def test_no_increase_at_or_below_the_systolic_target_whatever_the_diastolic():
    s = state(regimen={"amlodipine": Decimal("5")}, mean_systolic_mmhg=106, mean_diastolic_mmhg=82)
    verdict = assess_change(s, "amlodipine", Decimal("5"), Decimal("10"))
    assert [f.code for f in verdict.refused] == ["at_or_below_target"]
    at_target = state(mean_systolic_mmhg=130.0, mean_diastolic_mmhg=70.0)
    assert assess_change(at_target, "amlodipine", Decimal("5"), Decimal("10")).refused


def test_a_diastolic_only_increase_goes_to_the_clinician():
    s = state(regimen={"amlodipine": Decimal("5")}, mean_systolic_mmhg=125, mean_diastolic_mmhg=88)
    verdict = assess_change(s, "amlodipine", Decimal("5"), Decimal("10"))
    assert not verdict.refused and [f.code for f in verdict.review] == ["diastolic_only"]


def test_a_recent_low_reading_refuses_any_increase_and_leads_toward_a_step_down():
    s = state(regimen={"amlodipine": Decimal("5")}, lowest_recent_systolic_mmhg=86)
    verdict = assess_change(s, "amlodipine", Decimal("5"), Decimal("10"))
    assert [f.code for f in verdict.refused] == ["recent_low_reading"]
    assert course.is_overtreated(s)
    assert assess_change(s, "amlodipine", Decimal("5"), Decimal("2.5")) == course.ChangeAssessment()


def test_starting_a_drug_is_a_clinicians_decision_unless_the_bounds_allow_it():
    s = state()
    assert [f.code for f in assess_change(s, "amlodipine", Decimal(0), Decimal("2.5")).review] == [
        "initiation"
    ]
    allowed = state(may_start=frozenset({"amlodipine"}))
    assert assess_change(allowed, "amlodipine", Decimal(0), Decimal("2.5")) == (
        course.ChangeAssessment()
    )


def test_ace_inhibitor_and_thiazide_need_recent_labs():
    s = state(regimen={"lisinopril": Decimal("10")})
    codes = [f.code for f in assess_change(s, "lisinopril", Decimal(10), Decimal(20)).review]
    assert codes == ["labs_needed"]
    old = LabSnapshot(
        LabValue(Decimal("4.0"), NOW - timedelta(days=120)),
        LabValue(Decimal("80"), NOW - timedelta(days=120)),
    )
    stale = assess_change(state(labs=old), "hydrochlorothiazide", Decimal("12.5"), Decimal(25))
    assert [f.code for f in stale.review] == ["labs_needed"]
    fresh = assess_change(state(labs=recent_labs()), "lisinopril", Decimal(10), Decimal(20))
    assert fresh == course.ChangeAssessment()
    # A calcium-channel blocker needs none.
    assert assess_change(s, "amlodipine", Decimal("5"), Decimal("10")) == course.ChangeAssessment()


def test_labs_beyond_limits_block_the_drugs_they_concern():
    high_k = state(labs=recent_labs(potassium="5.6"))
    assert [
        f.code for f in assess_change(high_k, "lisinopril", Decimal(10), Decimal(20)).blocked
    ] == ["potassium_high"]
    assert not assess_change(high_k, "hydrochlorothiazide", Decimal(0), Decimal("12.5")).blocked
    low_k = state(labs=recent_labs(potassium="3.1"))
    assert [
        f.code
        for f in assess_change(low_k, "hydrochlorothiazide", Decimal(0), Decimal("12.5")).blocked
    ] == ["potassium_low"]
    low_egfr = state(labs=recent_labs(egfr="24"))
    assert "egfr_low" in [
        f.code for f in assess_change(low_egfr, "lisinopril", Decimal(10), Decimal(20)).blocked
    ]
    assert {f.code for f in course.lab_findings(recent_labs("5.6", "24"), NOW)} == {
        "potassium",
        "egfr",
    }


def test_the_final_check_is_the_labelled_range():
    assert course.labelled_dose_problem("amlodipine", Decimal("999")) is not None
    assert course.labelled_dose_problem("amlodipine", Decimal("20")) is not None
    assert course.labelled_dose_problem("amlodipine", Decimal("10")) is None
    assert course.labelled_dose_problem("amlodipine", Decimal("0")) is None  # a stop
    assert course.labelled_dose_problem("amlodipine", 1.5) is not None  # floats are not doses
    assert course.labelled_dose_problem("unknown", Decimal("5")) is not None


def test_doses_are_plain_decimal_numbers_only():
    assert parse_dose("10") == Decimal("10") and parse_dose(12.5) == Decimal("12.5")
    for text in ("1_0", "١٠", "１０", "1e1", " 10", "10 mg", "-5", "NaN", "Infinity", "5.123"):
        assert parse_dose(text) is None, text
    assert parse_dose(True) is None and parse_dose(float("nan")) is None


def test_serving_rules_must_be_at_least_those_validated():
    validated = course.rules_record(14)
    assert course.is_at_least_as_strict(course.rules_record(14), validated)
    assert course.is_at_least_as_strict(course.rules_record(28), validated)
    assert not course.is_at_least_as_strict(course.rules_record(7), validated)
    assert not course.is_at_least_as_strict(course.rules_record(14), {})
    assert not course.is_at_least_as_strict(
        course.rules_record(14), {**validated, "version": "older"}
    )


@given(
    mean=st.floats(60, 220),
    diastolic=st.floats(40, 130),
    lowest=st.floats(50, 220),
    current=st.sampled_from([Decimal(0), Decimal("2.5"), Decimal(5)]),
    may_start=st.booleans(),
)
def test_no_increase_is_ever_free_at_low_pressure_or_as_an_unallowed_start(
    mean, diastolic, lowest, current, may_start
):
    s = state(
        mean_systolic_mmhg=mean,
        mean_diastolic_mmhg=diastolic,
        lowest_recent_systolic_mmhg=min(lowest, mean),
        may_start=frozenset({"amlodipine"}) if may_start else frozenset(),
    )
    verdict = assess_change(s, "amlodipine", current, Decimal(10))
    free = not (verdict.refused or verdict.blocked or verdict.review)
    if free:
        assert mean > s.target_systolic_mmhg and min(lowest, mean) >= 90
        assert current > 0 or may_start
