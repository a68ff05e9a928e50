"""The clinician's path through the portal in a real browser: password, then the authenticator
code, the worklist, the patient chart with the model's explanation, a signed decision."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinicians.models import RecommendationStatus
from patients.models import Prescription
from tests.clinicians.test_oversight_api import make_recommendation
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.slow]

EXPLANATION = [
    {
        "key": "mean_systolic_7d_mmhg",
        "feature": "Mean home systolic, 7 days",
        "unit": "mmHg",
        "value": 152.4,
        "shap_mmhg": -3.1,
    },
    {
        "key": "adherence_rate_7d",
        "feature": "Adherence, 7 days",
        "unit": "",
        "value": 0.93,
        "shap_mmhg": -0.8,
    },
]


def sign_in(page, base_url: str, user, code: str | None = None) -> None:
    device, _ = TOTPDevice.objects.get_or_create(
        user=user, name="phone", defaults={"confirmed": True}
    )
    page.goto(f"{base_url}/portal/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/portal/login/verify/")
    page.fill("#id_code", code or f"{totp(device.bin_key):06d}")
    page.click("button[type=submit]")


def test_clinician_signs_in_with_a_second_factor_reviews_and_approves(
    page, live_server, clinician_a, patient_a
):
    rec = make_recommendation(patient_a)
    rec.explanation = EXPLANATION
    rec.save(update_fields=["explanation"])

    sign_in(page, live_server.url, clinician_a)
    page.wait_for_url(f"{live_server.url}/portal/")
    reviews = page.locator("section#reviews")
    assert "amlodipine 2.5 → 5 mg" in reviews.inner_text()

    reviews.get_by_role("link", name=patient_a.family_name, exact=False).click()
    page.wait_for_url(f"**/portal/patients/{patient_a.pk}/**")
    card = page.locator(f"#rec-{rec.pk}")
    explanation = card.locator("table.explanation").inner_text()
    assert "Mean home systolic, 7 days" in explanation and "\u22123.1 mmHg" in explanation
    # No decision is chosen for the clinician.
    assert card.locator("input[name=action]:checked").count() == 0

    card.get_by_label("Approve").check()
    card.locator("input[name=reason]").fill("BP above target on two weeks of readings")
    card.locator("input[name=password]").fill("not my password")
    card.get_by_role("button", name="Sign decision").click()
    page.wait_for_url(f"**/portal/recommendations/{rec.pk}/decision/#rec-{rec.pk}")
    card = page.locator(f"#rec-{rec.pk}")
    assert "password does not match" in card.inner_text()
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.PENDING_REVIEW

    # What was typed is kept (but the password): only the password is typed again.
    assert card.get_by_label("Approve").is_checked()
    assert card.locator("input[name=reason]").input_value() == (
        "BP above target on two weeks of readings"
    )
    assert card.locator("input[name=password]").input_value() == ""
    card.locator("input[name=password]").fill(PASSWORD)
    card.get_by_role("button", name="Sign decision").click()
    page.wait_for_load_state()
    assert "BP above target on two weeks of readings" in page.locator(f"#rec-{rec.pk}").inner_text()
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.APPROVED and rec.decided_by == clinician_a
    current = Prescription.objects.get(patient=patient_a, medication="amlodipine", ended_at=None)
    assert current.dose_mg == Decimal("5")


def test_a_wrong_authenticator_code_keeps_the_portal_closed(page, live_server, clinician_a):
    sign_in(page, live_server.url, clinician_a, code="000000")
    assert "That code is not valid" in page.content()
    page.goto(f"{live_server.url}/portal/")
    assert "/portal/login/" in page.url


def test_names_with_markup_are_shown_as_text_not_run(page, live_server, clinician_a, patient_a):
    patient_a.family_name = '<img src=x onerror="alert(1)">Smith'
    patient_a.save(update_fields=["family_name"])
    make_recommendation(patient_a)
    sign_in(page, live_server.url, clinician_a)
    page.wait_for_url(f"{live_server.url}/portal/")
    reviews = page.locator("section#reviews")
    assert '<img src=x onerror="alert(1)">Smith' in reviews.inner_text()
    assert page.locator("img[src=x]").count() == 0 and page.dialogs == []
