"""The review card a clinician reads in ten seconds (issue 14): the sentence, the contribution
bars, the uncertainty in words, reasons in words, a decision form with no default that keeps what
was typed, and who decided, when and what the patient was told."""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from clinicians.models import Recommendation, RecommendationStatus
from clinicians.portal.review import DecisionForm
from clinicians.portal.review_card import (
    MINUS,
    reasons_in_words,
    review_card,
    summary_sentence,
    top_contributions,
)
from tests.clinicians.test_oversight_api import make_recommendation
from tests.clinicians.test_portal import portal_client
from tests.conftest import PASSWORD

# The sixteen rows the model explains with (models_ml.features, home_bp_v1), unrounded.
SHAP_ROWS = [
    ("mean_systolic_7d", "7-day mean systolic", 148.3, "mmHg", -3.7994657270411656),
    ("mean_diastolic_7d", "7-day mean diastolic", 92.1, "mmHg", -1.2345678),
    ("sd_systolic_7d", "systolic variability (SD)", 8.2, "mmHg", 0.31),
    ("morning_surge_mmhg", "morning surge", 6.0, "mmHg", -0.2),
    ("systolic_trend_per_day", "systolic trend", 0.4, "mmHg/day", 0.05),
    ("bp_count_7d", "readings in 7 days", 12.0, "count", 0.02),
    ("adherence_7d", "adherence (7 days)", 1.0, "fraction", -0.9),
    ("mean_heart_rate_7d", "mean heart rate", 71.0, "/min", 0.11),
    ("mean_daily_steps_7d", "daily steps", 5400.0, "steps", -0.08),
    ("age_years", "age", 61.0, "years", -0.6),
    ("dose_amlodipine_mg", "current amlodipine dose", 5.0, "mg", -0.7),
    ("dose_lisinopril_mg", "current lisinopril dose", 0.0, "mg", 2.4),
    ("dose_hydrochlorothiazide_mg", "current hydrochlorothiazide dose", 0.0, "mg", -1.9),
    ("delta_amlodipine_mg", "proposed change of amlodipine", 5.0, "mg", -2.9),
    ("delta_lisinopril_mg", "proposed change of lisinopril", 0.0, "mg", 1.6),
    ("delta_hydrochlorothiazide_mg", "proposed change of hydrochlorothiazide", 0.0, "mg", 0.4),
]
EXPLANATION = [
    {"key": k, "feature": f, "value": v, "unit": u, "shap_mmhg": s} for k, f, v, u, s in SHAP_ROWS
]
EVIDENCE = {
    "mean_systolic_7d": 148.3,
    "mean_diastolic_7d": 92.1,
    "bp_count_7d": 12,
    "regimen": {"amlodipine": "5"},
}


def recommendation(**fields) -> Recommendation:
    values = {
        "kind": "titrate",
        "medication": "amlodipine",
        "current_dose_mg": Decimal("5"),
        "proposed_dose_mg": Decimal("10"),
        "tier": "clinician",
        "status": "pending_review",
        "reason": "above target",
        "expected_effect": {"systolic_mmhg": -6.0, "diastolic_mmhg": -3.0, "uncertainty_mmhg": 4.0},
        "explanation": EXPLANATION,
        "evidence": EVIDENCE,
        "model_version": "dose-gbr-3",
    }
    values.update(fields)
    return Recommendation(**values)


# --- 1. one sentence first ----------------------------------------------------------------------


def test_the_card_opens_with_one_sentence_of_change_evidence_target_and_expected_effect():
    sentence = summary_sentence(recommendation(), target_mmhg=(130, 80))
    assert sentence == (
        "Increase amlodipine 5 → 10 mg: home mean 148/92 over 7 days (12 readings), above the "
        f"130/80 target; expected {MINUS}6 mmHg systolic ({MINUS}2 to {MINUS}10)"
    )


@pytest.mark.parametrize(
    ("current", "proposed", "opening"),
    [
        ("0", "2.5", "Start amlodipine 2.5 mg"),
        ("10", "5", "Reduce amlodipine 10 → 5 mg"),
        ("2.5", "0", "Stop amlodipine 2.5 mg"),
        ("5", None, "No usable dose proposed for amlodipine (now 5 mg)"),
    ],
)
def test_the_sentence_names_the_kind_of_change(current, proposed, opening):
    rec = recommendation(
        current_dose_mg=Decimal(current),
        proposed_dose_mg=None if proposed is None else Decimal(proposed),
    )
    assert summary_sentence(rec, target_mmhg=(130, 80)).startswith(opening + ":")


def test_the_sentence_says_below_target_and_survives_missing_evidence():
    below = recommendation(evidence={"mean_systolic_7d": 124.0, "mean_diastolic_7d": 76.0})
    assert "home mean 124/76 over 7 days, below the 130/80 target" in summary_sentence(
        below, target_mmhg=(130, 80)
    )
    bare = recommendation(evidence={}, expected_effect={})
    assert summary_sentence(bare) == "Increase amlodipine 5 → 10 mg"


# --- 2. the contributions -----------------------------------------------------------------------


def test_contributions_are_the_top_five_rounded_with_the_rest_summed():
    bars = top_contributions(EXPLANATION, medication="amlodipine", has_regimen=True)
    assert bars is not None
    assert [(b.feature, b.shap_text) for b in bars.top] == [
        ("7-day mean systolic", f"{MINUS}3.8"),
        ("proposed change of amlodipine", f"{MINUS}2.9"),
        ("7-day mean diastolic", f"{MINUS}1.2"),
        ("adherence (7 days)", f"{MINUS}0.9"),
        ("current amlodipine dose", f"{MINUS}0.7"),
    ]
    shown = {b.feature for b in bars.top}
    rest = [s for _, f, _, _, s in SHAP_ROWS if f not in shown]
    assert bars.others_count == 11 and bars.others_mmhg == round(sum(rest), 1)
    assert bars.others_label == f"11 others: +{round(sum(rest), 1):.1f} mmHg"
    # Nothing is shown to more than one decimal.
    assert not any(re.search(r"\.\d\d", b.shap_text) for b in bars.top)


def test_drugs_this_proposal_does_not_change_are_folded_into_the_rest():
    bars = top_contributions(EXPLANATION, medication="amlodipine", has_regimen=True)
    assert bars is not None
    features = " ".join(b.feature for b in bars.top)
    # lisinopril's dose row (+2.4) is larger than four of the five shown, and still folded.
    assert "lisinopril" not in features and "hydrochlorothiazide" not in features
    changing_lisinopril = top_contributions(EXPLANATION, medication="lisinopril", has_regimen=True)
    assert changing_lisinopril is not None
    assert "current lisinopril dose" in [b.feature for b in changing_lisinopril.top]
    assert "current amlodipine dose" not in [b.feature for b in changing_lisinopril.top]


def test_adherence_is_shown_only_when_the_patient_takes_a_drug():
    no_drugs = review_card(recommendation(evidence={**EVIDENCE, "regimen": {}}))
    assert no_drugs.contributions is not None
    assert "adherence (7 days)" not in [b.feature for b in no_drugs.contributions.top]
    on_drugs = review_card(recommendation())
    assert on_drugs.contributions is not None
    assert "adherence (7 days)" in [b.feature for b in on_drugs.contributions.top]
    protocol = recommendation(
        evidence={"regimen": {}},
        explanation=[
            {"feature": "adherence (7 days)", "value": 1.0, "unit": "fraction", "threshold": 0.8},
            {"feature": "7-day mean systolic", "value": 148.26, "unit": "mmHg", "threshold": 130},
        ],
    )
    assert [(r.feature, r.value_text) for r in review_card(protocol).thresholds] == [
        ("7-day mean systolic", "148.3 mmHg")
    ]


def test_bars_are_geometry_for_svg_attributes_scaled_to_the_largest():
    bars = top_contributions(EXPLANATION, medication="amlodipine", has_regimen=True)
    assert bars is not None
    largest = bars.top[0]
    assert largest.lowers and (largest.bar_x, largest.bar_width) == (0.0, 100.0)
    assert all(b.bar_x + b.bar_width <= 200 and b.bar_width >= 0 for b in bars.top)


# --- 3. uncertainty -----------------------------------------------------------------------------


def test_an_interval_that_crosses_zero_is_flagged_in_words():
    unsure = review_card(
        recommendation(
            expected_effect={"systolic_mmhg": -1.5, "diastolic_mmhg": -1, "uncertainty_mmhg": 3.0}
        )
    )
    assert unsure.effect_may_be_nothing
    assert "may be nothing" in unsure.uncertainty_text
    assert f"+1.5 to {MINUS}4.5 mmHg) includes zero" in unsure.uncertainty_text
    sure = review_card(recommendation())
    assert not sure.effect_may_be_nothing and sure.uncertainty_text == ""


# --- 4. reasons in words ------------------------------------------------------------------------


def test_reasons_are_words_never_raw_codes():
    words = reasons_in_words(
        [
            {"code": "step_too_large", "message": "step_too_large"},
            {"code": "min_interval", "message": "The last change was 3 days ago."},
            {"code": "something_new"},
        ]
    )
    assert words == (
        "The step is larger than the clinician allows without review.",
        "The last change was 3 days ago.",
        "Something new.",
    )
    assert reasons_in_words([], ["no_bounds"]) == ("No safety bounds are set for this drug.",)
    assert not any("_" in w for w in reasons_in_words([], ["stale_data", "open_crisis"]))


# --- 5. the decision form -----------------------------------------------------------------------


def test_the_decision_form_has_no_default_and_refuses_a_missing_action():
    form = DecisionForm({"reason": "ok", "password": "x"})
    assert not form.is_valid() and "action" in form.errors
    html = str(DecisionForm()["action"])
    assert 'type="radio"' in html and "checked" not in html and "selected" not in html


def _card(html: str, rec_pk: int) -> str:
    start = html.index(f'id="rec-{rec_pk}"')
    return html[start : html.index("</section>", start)]


def test_the_chart_card_shows_sentence_bars_uncertainty_and_reasons(clinician_a, patient_a):
    rec = make_recommendation(patient_a)
    rec.explanation = EXPLANATION
    rec.evidence = EVIDENCE
    rec.expected_effect = {"systolic_mmhg": -1.0, "diastolic_mmhg": -0.5, "uncertainty_mmhg": 2.0}
    rec.reasons = [{"code": "step_too_large", "message": "step_too_large"}]
    rec.save()
    card = _card(portal_client(clinician_a).get(f"/portal/patients/{patient_a.pk}/").text, rec.pk)
    assert "Increase amlodipine 2.5 → 5 mg: home mean 148/92 over 7 days" in card
    assert "-3.7994657270411656" not in card and f"{MINUS}3.8 mmHg" in card
    assert "11 others" in card and "<svg" in card and "style=" not in card
    assert "lisinopril" not in card
    assert "may be nothing" in card
    assert "step_too_large" not in card and "larger than the clinician allows" in card
    assert "<script" not in card and "onclick" not in card
    assert "checked" not in card and "<select" not in card


def test_a_missing_action_is_refused_beside_the_field(clinician_a, patient_a):
    rec = make_recommendation(patient_a)
    response = portal_client(clinician_a).post(
        f"/portal/recommendations/{rec.pk}/decision/",
        {"reason": "looked at it", "password": PASSWORD},
    )
    assert response.status_code == 400
    card = _card(response.text, rec.pk)
    assert "Choose approve, modify or reject" in card or "This field is required" in card
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.PENDING_REVIEW


def test_a_wrong_password_keeps_what_was_typed_and_returns_to_the_card(clinician_a, patient_a):
    rec = make_recommendation(patient_a)
    response = portal_client(clinician_a).post(
        f"/portal/recommendations/{rec.pk}/decision/",
        {
            "action": "modify",
            "dose_mg": "5",
            "reason": "two weeks above target",
            "patient_note": "Take one more tablet in the morning",
            "password": "not my password",
        },
    )
    assert response.status_code == 400
    card = _card(response.text, rec.pk)
    assert f'action="/portal/recommendations/{rec.pk}/decision/#rec-{rec.pk}"' in card
    assert 'value="two weeks above target"' in card
    assert "Take one more tablet in the morning" in card
    assert 'value="5"' in card
    assert re.search(r'value="modify"[^>]*checked', card)
    assert "not my password" not in response.text
    # The error sits with the password field, not in a banner at the top of the page.
    password_at = card.index('name="password"')
    error_at = card.index("password does not match")
    assert abs(error_at - password_at) < 400
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.PENDING_REVIEW


@pytest.mark.parametrize(
    ("action", "word"), [("approve", "approved"), ("modify", "modified"), ("reject", "rejected")]
)
def test_the_confirmation_is_spelt_right(clinician_a, patient_a, action, word):
    rec = make_recommendation(patient_a)
    response = portal_client(clinician_a).post(
        f"/portal/recommendations/{rec.pk}/decision/",
        {"action": action, "dose_mg": "5", "reason": "seen", "password": PASSWORD},
        follow=True,
    )
    assert f"Recommendation {rec.pk}: {word}." in response.text
    assert response.redirect_chain[-1][0].endswith(f"#rec-{rec.pk}")
    assert "modifyd" not in response.text and "rejectd" not in response.text
    if action == "modify":
        assert "Modified to 5 mg by" in _card(response.text, rec.pk)


# --- 6. reason and patient note; who decided, when ----------------------------------------------


def test_the_reason_and_the_note_sent_to_the_patient_are_two_labelled_fields(
    clinician_a, patient_a
):
    rec = make_recommendation(patient_a)
    card = _card(portal_client(clinician_a).get(f"/portal/patients/{patient_a.pk}/").text, rec.pk)
    assert "not sent to the patient" in card
    assert "sent to the patient" in card.replace("not sent to the patient", "")


def test_the_decided_card_shows_who_when_in_the_clinic_zone_reason_and_note(
    clinician_a, patient_a, settings
):
    settings.TIME_ZONE = "Europe/Berlin"
    rec = make_recommendation(patient_a)
    client = portal_client(clinician_a)
    client.post(
        f"/portal/recommendations/{rec.pk}/decision/",
        {
            "action": "reject",
            "reason": "readings taken after exercise",
            "patient_note": "Please measure at rest for a week",
            "password": PASSWORD,
        },
    )
    rec.refresh_from_db()
    stamp = timezone.localtime(rec.decided_at, zoneinfo.ZoneInfo("Europe/Berlin"))
    assert isinstance(stamp, datetime)
    card = _card(client.get(f"/portal/patients/{patient_a.pk}/").text, rec.pk)
    name = clinician_a.clinician_profile.display_name
    assert f"Rejected by {name}" in card
    assert stamp.strftime("%H:%M") in card and ("CET" in card or "CEST" in card)
    assert "readings taken after exercise" in card
    assert "Please measure at rest for a week" in card and "Sent to the patient" in card


def test_a_decision_refused_by_the_rules_is_shown_on_its_card(clinician_a, patient_a):
    rec = make_recommendation(patient_a)
    client = portal_client(clinician_a)
    body = {"action": "reject", "reason": "not now", "password": PASSWORD}
    client.post(f"/portal/recommendations/{rec.pk}/decision/", body)
    again = client.post(f"/portal/recommendations/{rec.pk}/decision/", body)
    assert again.status_code == 400
    assert "already rejected" in _card(again.text, rec.pk)


def test_a_change_the_patient_acknowledged_says_so_with_the_time(clinician_a, patient_a):
    rec = make_recommendation(patient_a, tier="patient")
    card = _card(portal_client(clinician_a).get(f"/portal/patients/{patient_a.pk}/").text, rec.pk)
    assert "Sent to the patient's app; not acknowledged yet." in card
    rec.status, rec.decided_at = RecommendationStatus.ACKNOWLEDGED, timezone.now()
    rec.save(update_fields=["status", "decided_at"])
    card = _card(portal_client(clinician_a).get(f"/portal/patients/{patient_a.pk}/").text, rec.pk)
    assert "Acknowledged by the patient</strong>" in card
    assert timezone.localtime(rec.decided_at).strftime("%H:%M") in card
