"""The safety bounds editor (issue 14): absolute limits nobody may cross, recommended ranges that
need a reason, the journal with old and new values and the reason, the re-check at confirmation,
and the tier preview — through the services, the API and the portal."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal
from html import unescape

import pytest
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from clinicians import services
from clinicians.bounds_policy import (
    DrugBounds,
    TierPreview,
    bounds_settings,
    check_bounds,
    check_thresholds,
    preview_tier,
    smallest_titration_step_mg,
)
from clinicians.errors import BoundsViolation
from clinicians.models import Alert, AlertThresholds, RecommendationStatus, SafetyBounds, Tier
from clinicians.treatment import course_view
from patients import course
from patients.formulary import FORMULARY
from tests.clinicians.conftest import course_ready, set_bounds
from tests.clinicians.test_oversight_api import make_recommendation
from tests.clinicians.test_portal import portal_client
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db

AMLODIPINE = {
    "medication": "amlodipine",
    "min_dose_mg": Decimal("2.5"),
    "max_dose_mg": Decimal("10"),
    "max_auto_step_mg": Decimal("2.5"),
    "target_systolic_mmhg": 130,
    "target_diastolic_mmhg": 80,
}


def bounds_events():
    return AuditEvent.objects.filter(object_type="safety_bounds").order_by("pk")


def candidate(**change) -> DrugBounds:
    return DrugBounds(**{**AMLODIPINE, "may_start": False, "min_interval_days": 14, **change})


# --- the two layers, in the domain --------------------------------------------------------------


def test_the_recommended_step_is_one_step_between_the_smallest_strengths():
    assert {name: smallest_titration_step_mg(drug) for name, drug in FORMULARY.items()} == {
        "amlodipine": Decimal("2.5"),
        "lisinopril": Decimal("5"),
        "hydrochlorothiazide": Decimal("12.5"),
    }


def test_values_inside_the_recommended_ranges_raise_nothing():
    check = check_bounds(candidate())
    assert not check.refused and not check.warnings and not check.kept


@settings(max_examples=200, deadline=None)
@given(
    medication=st.sampled_from(sorted(FORMULARY)),
    step=st.decimals(min_value=0, max_value=60, places=2),
)
def test_a_step_is_refused_beyond_half_the_label_and_warned_beyond_one_titration_step(
    medication, step
):
    drug = FORMULARY[medication]
    check = check_bounds(
        DrugBounds(
            medication,
            Decimal(0),
            drug.max_dose_mg,
            step,
            130,
            80,
            may_start=False,
            min_interval_days=14,
        )
    )
    refused = {p.field for p in check.refused}
    warned = {p.field for p in check.warnings}
    assert ("max_auto_step_mg" in refused) == (step > drug.max_dose_mg / 2)
    assert ("max_auto_step_mg" in warned) == (
        smallest_titration_step_mg(drug) < step <= drug.max_dose_mg / 2
    )
    assert refused <= {"max_auto_step_mg"} and warned <= {"max_auto_step_mg"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_dose_mg": Decimal("12.5")}, "max_dose_mg"),  # above the label
        ({"max_auto_step_mg": Decimal("7.5")}, "max_auto_step_mg"),  # above half the label
        ({"min_dose_mg": Decimal("10"), "max_dose_mg": Decimal("5")}, "min_dose_mg"),
        ({"target_systolic_mmhg": 170}, "target_systolic_mmhg"),
        ({"target_diastolic_mmhg": 55}, "target_diastolic_mmhg"),
        ({"min_interval_days": 3}, "min_interval_days"),
        ({"medication": "aspirin"}, "medication"),
    ],
)
def test_values_beyond_an_absolute_limit_are_refused_with_their_field(change, field):
    assert check_bounds(candidate(**change)).refused[0].field == field


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_auto_step_mg": Decimal("5")}, "max_auto_step_mg"),
        ({"min_dose_mg": Decimal("1")}, "min_dose_mg"),  # under the smallest tablet, not 0
        ({"target_systolic_mmhg": 145}, "target_systolic_mmhg"),
        ({"target_systolic_mmhg": 115}, "target_systolic_mmhg"),
        ({"target_diastolic_mmhg": 95}, "target_diastolic_mmhg"),
        ({"min_interval_days": 7}, "min_interval_days"),
        ({"min_interval_days": 42}, "min_interval_days"),
        ({"may_start": True}, "may_start"),
    ],
)
def test_values_outside_the_recommended_range_are_warnings_named_by_field(change, field):
    check = check_bounds(candidate(**change))
    assert not check.refused and [p.field for p in check.warnings] == [field]
    assert "recommended" in check.warnings[0].message


def test_an_unchanged_value_outside_the_range_is_kept_not_warned_again():
    accepted = candidate(max_auto_step_mg=Decimal("5"))
    check = check_bounds(
        candidate(max_auto_step_mg=Decimal("5"), target_systolic_mmhg=135), previous=accepted
    )
    assert not check.warnings and [p.field for p in check.kept] == ["max_auto_step_mg"]


def test_the_interval_is_never_recommended_under_the_drugs_effect_onset():
    for name in FORMULARY:
        low = bounds_settings(name)["min_interval_days"].recommended.low
        assert low >= course.onset_days(name) and low >= course.DEFAULT_MIN_INTERVAL_DAYS


def test_thresholds_have_the_same_two_layers():
    assert check_thresholds({"crisis_systolic_mmhg": 250}).refused[0].field == (
        "crisis_systolic_mmhg"
    )
    assert [p.field for p in check_thresholds({"crisis_systolic_mmhg": 190}).warnings] == [
        "crisis_systolic_mmhg"
    ]
    assert not check_thresholds({"crisis_systolic_mmhg": 175}).warnings  # earlier: fine
    assert [p.field for p in check_thresholds({"hypotension_systolic_mmhg": 85}).warnings] == [
        "hypotension_systolic_mmhg"
    ]
    assert check_thresholds({"colour": 3}).refused[0].field == "colour"


# --- the services enforce them ----------------------------------------------------------------


def test_an_absolute_limit_is_refused_whatever_the_reason(clinician_a, patient_a):
    with pytest.raises(BoundsViolation) as refused:
        services.set_safety_bounds(
            patient=patient_a,
            actor=clinician_a,
            reason="I know this patient",
            **{**AMLODIPINE, "max_auto_step_mg": Decimal("7.5")},
        )
    assert refused.value.field == "max_auto_step_mg"
    assert not SafetyBounds.objects.exists()


def test_a_value_outside_the_recommended_range_needs_a_reason_which_the_journal_keeps(
    clinician_a, patient_a
):
    services.set_safety_bounds(patient=patient_a, actor=clinician_a, **AMLODIPINE)
    with pytest.raises(BoundsViolation) as refused:
        services.set_safety_bounds(
            patient=patient_a, actor=clinician_a, **{**AMLODIPINE, "max_auto_step_mg": Decimal(5)}
        )
    assert (refused.value.field, refused.value.code) == ("max_auto_step_mg", "reason_required")
    assert SafetyBounds.objects.get().max_auto_step_mg == Decimal("2.5")

    services.set_safety_bounds(
        patient=patient_a,
        actor=clinician_a,
        reason="Stable for a year; titrates in whole tablets",
        **{**AMLODIPINE, "max_auto_step_mg": Decimal(5)},
    )
    assert SafetyBounds.objects.get().max_auto_step_mg == Decimal(5)
    event = bounds_events().last()
    assert event.action == "update"
    assert set(event.changes) == {"max_auto_step_mg"}
    assert Decimal(str(event.changes["max_auto_step_mg"]["old"])) == Decimal("2.5")
    assert Decimal(str(event.changes["max_auto_step_mg"]["new"])) == Decimal(5)
    assert event.detail["reason"] == "Stable for a year; titrates in whole tablets"
    assert [w["field"] for w in event.detail["outside_recommended"]] == ["max_auto_step_mg"]


def test_a_new_set_of_bounds_records_every_value_new(clinician_a, patient_a):
    services.set_safety_bounds(patient=patient_a, actor=clinician_a, **AMLODIPINE)
    event = bounds_events().get()
    assert event.action == "create" and "reason" not in event.detail
    assert {name: change["old"] for name, change in event.changes.items()} == dict.fromkeys(
        event.changes
    )
    assert event.changes["target_systolic_mmhg"]["new"] == 130


def test_a_value_accepted_with_a_reason_needs_none_when_another_one_changes(clinician_a, patient_a):
    step_five = {**AMLODIPINE, "max_auto_step_mg": Decimal(5)}
    services.set_safety_bounds(
        patient=patient_a, actor=clinician_a, reason="whole tablets", **step_five
    )
    services.set_safety_bounds(
        patient=patient_a, actor=clinician_a, **{**step_five, "target_systolic_mmhg": 135}
    )
    event = bounds_events().last()
    assert set(event.changes) == {"target_systolic_mmhg"} and "reason" not in event.detail


def test_confirmation_checks_both_layers_again(admin_user, clinician_a, patient_a):
    entered = services.propose_safety_bounds(
        patient=patient_a, actor=admin_user, **{**AMLODIPINE, "max_auto_step_mg": Decimal(5)}
    )
    assert not entered.is_confirmed  # entering is allowed: a clinician confirms
    assert bounds_events().last().detail["outside_recommended"][0]["field"] == "max_auto_step_mg"

    with pytest.raises(BoundsViolation) as refused:
        services.confirm_safety_bounds(bounds=entered, actor=clinician_a)
    assert (refused.value.field, refused.value.code) == ("max_auto_step_mg", "reason_required")
    entered.refresh_from_db()
    assert not entered.is_confirmed
    assert AuditEvent.objects.filter(action="refused", object_type="safety_bounds").exists()

    services.confirm_safety_bounds(bounds=entered, actor=clinician_a, reason="as prescribed")
    entered.refresh_from_db()
    assert entered.is_confirmed
    event = bounds_events().last()
    assert event.action == "bounds_confirmed"
    assert event.changes == {"confirmed": {"old": False, "new": True}}
    assert event.detail["reason"] == "as prescribed"
    assert Decimal(str(event.detail["in_force"]["max_auto_step_mg"])) == Decimal(5)


def test_bounds_entered_before_the_limits_cannot_be_confirmed(admin_user, clinician_a, patient_a):
    # A row entered before the absolute limit on the step existed (written directly).
    row = SafetyBounds.objects.create(
        patient=patient_a, set_by=admin_user, **{**AMLODIPINE, "max_auto_step_mg": Decimal(10)}
    )
    with pytest.raises(BoundsViolation) as refused:
        services.confirm_safety_bounds(bounds=row, actor=clinician_a, reason="please")
    assert refused.value.field == "max_auto_step_mg" and refused.value.code == "bounds_violation"


def test_alert_thresholds_need_a_reason_outside_the_range_and_journal_old_and_new(
    clinician_a, patient_a
):
    with pytest.raises(BoundsViolation) as refused:
        services.set_alert_thresholds(
            patient=patient_a, actor=clinician_a, crisis_systolic_mmhg=190
        )
    assert refused.value.field == "crisis_systolic_mmhg"
    assert not AlertThresholds.objects.exists()
    services.set_alert_thresholds(
        patient=patient_a, actor=clinician_a, reason="white-coat spikes", crisis_systolic_mmhg=190
    )
    event = AuditEvent.objects.filter(object_type="alert_thresholds").get()
    assert event.changes == {"crisis_systolic_mmhg": {"old": 180, "new": 190}}
    assert event.detail["reason"] == "white-coat spikes" and event.detail["defaults_before"]


# --- the API carries the reason ---------------------------------------------------------------

API_BOUNDS = {
    "medication": "amlodipine",
    "min_dose_mg": "2.5",
    "max_dose_mg": "10",
    "max_auto_step_mg": "5",
    "target_systolic": 130,
    "target_diastolic": 80,
}


def test_the_api_refuses_a_value_outside_the_recommended_range_without_a_reason(
    clinician_a, patient_a
):
    client = bearer_client(clinician_a)
    url = f"/api/v1/patients/{patient_a.pk}/safety-bounds/"
    refused = client.put(url, API_BOUNDS, format="json")
    assert refused.status_code == 400
    error = refused.json()["errors"][0]
    assert (error["field"], error["code"]) == ("max_auto_step_mg", "reason_required")
    assert "recommended" in error["message"]
    assert not SafetyBounds.objects.exists()

    saved = client.put(url, {**API_BOUNDS, "reason": "whole tablets only"}, format="json")
    assert saved.status_code == 200 and saved.json()[0]["max_auto_step_mg"] == 5
    assert bounds_events().last().detail["reason"] == "whole tablets only"

    beyond = client.put(
        url, {**API_BOUNDS, "max_auto_step_mg": "7.5", "reason": "x"}, format="json"
    )
    assert beyond.status_code == 400 and beyond.json()["errors"][0]["field"] == "max_auto_step_mg"


def test_the_api_confirmation_and_thresholds_take_the_reason(admin_user, clinician_a, patient_a):
    services.propose_safety_bounds(
        patient=patient_a, actor=admin_user, **{**AMLODIPINE, "max_auto_step_mg": Decimal(5)}
    )
    client = bearer_client(clinician_a)
    confirm = f"/api/v1/patients/{patient_a.pk}/safety-bounds/amlodipine/confirm/"
    assert client.post(confirm, {}, format="json").status_code == 400
    confirmed = client.post(confirm, {"reason": "as prescribed"}, format="json")
    assert confirmed.status_code == 200 and confirmed.json()["confirmed"] is True

    url = f"/api/v1/patients/{patient_a.pk}/alert-thresholds/"
    refused = client.put(url, {"stale_after_hours": 96}, format="json")
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "stale_after_hours"
    saved = client.put(url, {"stale_after_hours": 96, "reason": "travels"}, format="json")
    assert saved.status_code == 200 and saved.json()["stale_after_hours"] == 96


# --- the portal editor ------------------------------------------------------------------------


def proposal_five_to_ten(patient, clinician):
    """Amlodipine 5 mg for a month, a week at 150/92, bounds 2.5–10 with a 2.5 mg step: the
    proposal 5 → 10 mg is a clinician's (the step is too large) and nothing else holds it."""
    course_ready(patient, clinician, "amlodipine", dose="5", step="2.5")
    return make_recommendation(patient, current="5", proposed="10", tier=Tier.CLINICIAN)


def form_of(medication="amlodipine", **change) -> dict:
    return {
        "medication": medication,
        "min_dose_mg": "2.5",
        "max_dose_mg": "10",
        "max_auto_step_mg": "2.5",
        "target_systolic_mmhg": "130",
        "target_diastolic_mmhg": "80",
        "min_interval_days": "14",
        **change,
    }


def input_of(response, medication: str, name: str) -> str:
    html = response.content.decode()
    return re.search(rf'<input[^>]*id="id_bounds_{medication}_{name}"[^>]*>', html).group(0)


def text_of(response) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", response.content.decode())))


def test_the_preview_is_the_gates_own_verdict_and_keeps_the_producers_findings(
    clinician_a, patient_a
):
    rec = proposal_five_to_ten(patient_a, clinician_a)
    view = course_view(patient_a, timezone.now())
    in_force = DrugBounds.of(SafetyBounds.objects.get(patient=patient_a))
    looser = replace(in_force, max_auto_step_mg=Decimal(5))
    preview = preview_tier(view, rec, looser)
    assert (preview.now.tier, preview.then.tier) == (Tier.CLINICIAN, Tier.PATIENT)
    assert preview.now.decision.reasons == ("step_too_large",) and preview.changes_tier
    # A step down the evaluation sent to review at low pressure stays with the clinician.
    rec.reasons = [{"code": "low_pressure_step_down", "message": "Low readings."}]
    assert preview_tier(view, rec, looser).then.tier == Tier.CLINICIAN
    # An open crisis blocks under any bounds; no proposal: nothing to judge.
    Alert.objects.create(
        patient=patient_a, kind="hypertensive_crisis", message="x", opened_at=timezone.now()
    )
    blocked = preview_tier(course_view(patient_a, timezone.now()), rec, looser)
    assert blocked.then.tier == Tier.BLOCKED and "open_crisis" in blocked.then.decision.reasons
    assert preview_tier(view, None, looser) == TierPreview(None, None, None)


def test_the_editor_shows_the_absolute_limits_as_input_limits_and_the_range_as_help(
    clinician_a, patient_a
):
    set_bounds(patient_a, clinician_a, step="2.5")
    client = portal_client(clinician_a)
    chart = client.get(f"/portal/patients/{patient_a.pk}/").content.decode()
    assert f"/portal/patients/{patient_a.pk}/bounds/" in chart  # the way into the editor
    page = client.get(f"/portal/patients/{patient_a.pk}/bounds/")
    assert page.status_code == 200
    html = page.content.decode()
    step = input_of(page, "amlodipine", "max_auto_step_mg")
    assert 'min="0"' in step and 'max="5"' in step and 'value="2.50"' in step
    assert 'aria-describedby="id_bounds_amlodipine_max_auto_step_mg_helptext"' in step
    assert "Recommended 0–2.5 mg" in text_of(page)
    editor = html[html.index('id="bounds-editor"') :]
    assert " style=" not in editor and not re.search(r"\son[a-z]+=", editor)
    assert "<script" not in editor[: editor.index("</section>")]


def test_preview_saves_nothing_and_shows_the_tier_the_gate_would_give(clinician_a, patient_a):
    rec = proposal_five_to_ten(patient_a, clinician_a)
    before = AuditEvent.objects.filter(object_type="safety_bounds").count()
    response = portal_client(clinician_a).post(
        f"/portal/patients/{patient_a.pk}/bounds/",
        form_of(max_auto_step_mg="5", preview="1"),
    )
    assert response.status_code == 200
    text = text_of(response)
    assert "Outside the recommended range — saving needs a reason" in text
    assert "Largest change without review: 5 mg is outside the recommended 0–2.5 mg" in text
    assert "Open proposal: amlodipine 5 → 10 mg" in text
    assert "Under the bounds in force: Clinician review" in text
    assert "The step is larger than the clinician allows without review." in text
    assert "Under these values: Patient may act (the tier changes)" in text
    assert "Inside the clinician's bounds: the patient may make this change." in text
    # Nothing saved, nothing journalled as a change; the proposal is untouched.
    assert SafetyBounds.objects.get(patient=patient_a).max_auto_step_mg == Decimal("2.5")
    assert AuditEvent.objects.filter(object_type="safety_bounds").count() == before
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.PENDING_REVIEW
    # What was typed is kept.
    assert 'value="5"' in input_of(response, "amlodipine", "max_auto_step_mg")


def test_preview_without_an_open_proposal_says_so(clinician_a, patient_a):
    set_bounds(patient_a, clinician_a, step="2.5")
    response = portal_client(clinician_a).post(
        f"/portal/patients/{patient_a.pk}/bounds/", form_of(target_systolic_mmhg="125", preview="1")
    )
    assert response.status_code == 200
    text = text_of(response)
    assert "No open proposal for amlodipine: there is no tier to preview." in text
    assert "Every new value is inside its recommended range." in text


def test_save_outside_the_range_without_a_reason_comes_back_as_typed_with_400(
    clinician_a, patient_a
):
    proposal_five_to_ten(patient_a, clinician_a)
    client = portal_client(clinician_a)
    url = f"/portal/patients/{patient_a.pk}/bounds/"
    refused = client.post(url, form_of(max_auto_step_mg="5", save="1"))
    assert refused.status_code == 400
    assert "A reason is required: a new value is outside the recommended range." in text_of(refused)
    assert 'value="5"' in input_of(refused, "amlodipine", "max_auto_step_mg")
    assert SafetyBounds.objects.get(patient=patient_a).max_auto_step_mg == Decimal("2.5")

    saved = client.post(url, form_of(max_auto_step_mg="5", save="1", reason="whole tablets"))
    assert saved.status_code == 302 and saved["Location"].endswith("#bounds")
    assert SafetyBounds.objects.get(patient=patient_a).max_auto_step_mg == Decimal(5)
    event = bounds_events().last()
    assert event.detail["reason"] == "whole tablets"
    assert Decimal(str(event.changes["max_auto_step_mg"]["old"])) == Decimal("2.5")


def test_an_absolute_limit_comes_back_beside_its_field_and_is_never_saved(clinician_a, patient_a):
    set_bounds(patient_a, clinician_a, step="2.5")
    client = portal_client(clinician_a)
    url = f"/portal/patients/{patient_a.pk}/bounds/"
    previewed = client.post(url, form_of(max_auto_step_mg="7.5", preview="1"))
    assert "Beyond an absolute limit — cannot be saved" in text_of(previewed)
    assert "Tier preview" not in text_of(previewed)
    refused = client.post(url, form_of(max_auto_step_mg="7.5", save="1", reason="please"))
    assert refused.status_code == 400
    assert "is beyond the absolute limit 0–5 mg for amlodipine" in text_of(refused)
    assert SafetyBounds.objects.get(patient=patient_a).max_auto_step_mg == Decimal("2.5")
    unreadable = client.post(url, form_of(max_auto_step_mg="lots", save="1"))
    assert unreadable.status_code == 400


def test_bounds_entered_at_enrolment_are_put_in_force_by_saving_them_with_a_reason(
    admin_user, clinician_a, patient_a
):
    services.propose_safety_bounds(
        patient=patient_a, actor=admin_user, **{**AMLODIPINE, "max_auto_step_mg": Decimal(5)}
    )
    client = portal_client(clinician_a)
    url = f"/portal/patients/{patient_a.pk}/bounds/"
    assert "Saving puts these values in force" in text_of(client.get(url))
    # The value was never accepted by a clinician: a reason is needed although it is unchanged.
    assert client.post(url, form_of(max_auto_step_mg="5", save="1")).status_code == 400
    assert (
        client.post(
            url, form_of(max_auto_step_mg="5", save="1", reason="as prescribed")
        ).status_code
        == 302
    )
    assert SafetyBounds.objects.get(patient=patient_a).is_confirmed


def test_alert_thresholds_editor_previews_and_saves_with_a_reason(clinician_a, patient_a):
    client = portal_client(clinician_a)
    url = f"/portal/patients/{patient_a.pk}/alert-thresholds/"
    values = {
        "crisis_systolic_mmhg": "190",
        "crisis_diastolic_mmhg": "120",
        "hypotension_systolic_mmhg": "90",
        "stale_after_hours": "48",
    }
    previewed = client.post(url, {**values, "preview": "1"})
    assert previewed.status_code == 200
    assert "Crisis alert at systolic: 190 mmHg is outside the recommended 170–180 mmHg" in text_of(
        previewed
    )
    assert not AlertThresholds.objects.exists()
    assert client.post(url, {**values, "save": "1"}).status_code == 400
    assert client.post(url, {**values, "save": "1", "reason": "white-coat"}).status_code == 302
    assert AlertThresholds.objects.get(patient=patient_a).crisis_systolic_mmhg == 190


def test_only_the_care_team_edits(clinician_a, clinician_b, patient_a):
    set_bounds(patient_a, clinician_a, step="2.5")
    other = portal_client(clinician_b)
    url = f"/portal/patients/{patient_a.pk}/bounds/"
    assert other.get(url).status_code == 404
    assert other.post(url, form_of(max_auto_step_mg="0", save="1")).status_code == 404
    assert SafetyBounds.objects.get(patient=patient_a).max_auto_step_mg == Decimal("2.5")
