"""Signing in to the portal returns to the page that asked for it (a SMART launch's review, a
link from the EHR) — only to a page of this site, never elsewhere."""

from __future__ import annotations

import pytest
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _sign_in(clinician, next_url: str):
    device = TOTPDevice.objects.create(user=clinician, name="phone", confirmed=True)
    client = Client()
    step = client.post(
        f"/portal/login/?next={next_url}",
        {"username": clinician.username, "password": PASSWORD},
    )
    assert step.status_code == 302, step.content
    return client.post("/portal/login/verify/", {"code": f"{totp(device.bin_key):06d}"})


def test_sign_in_returns_to_the_page_that_asked(clinician_a, patient_a):
    done = _sign_in(clinician_a, f"/portal/patients/{patient_a.pk}/")
    assert done.status_code == 302 and done["Location"] == f"/portal/patients/{patient_a.pk}/"


@pytest.mark.parametrize("elsewhere", ["https://evil.example/", "//evil.example/x"])
def test_sign_in_never_returns_to_another_site(clinician_a, elsewhere):
    done = _sign_in(clinician_a, elsewhere)
    assert done.status_code == 302 and done["Location"] == "/portal/"
