"""In Chromium against a live daphne server: a caregiver signs in at /care/ (password only, no
authenticator chosen), sees the two people they follow, and a crisis reading uploaded for one of
them reaches the open page live — under the Content-Security-Policy, without a reload."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.test import override_settings
from playwright.sync_api import expect, sync_playwright

from tests.caregivers.conftest import grant_to
from tests.conftest import PASSWORD
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.live import EagerChannelsLiveServer
from tests.factories import CareTeamFactory, PatientFactory

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
class CaregiverLivePageTests(EagerChannelsLiveServer):
    def setUp(self):
        team = CareTeamFactory(name="Family team")
        self.mother = PatientFactory(care_team=team, given_name="Ada", family_name="Moss")
        self.father = PatientFactory(care_team=team, given_name="Ben", family_name="Moss")
        self.stranger = PatientFactory(care_team=team, given_name="Cy", family_name="Other")
        scopes = ("readings", "alerts")
        grant_to(self.mother, email="kid@example.org", scopes=scopes, live_alerts=True)
        self.caregiver = grant_to(
            self.father, email="kid@example.org", scopes=scopes, live_alerts=True
        ).caregiver

    def _crisis(self, patient, device: str) -> None:
        now = datetime.now(UTC)
        readings = [
            {
                "client_id": f"{device}-{k}",
                "type": "blood_pressure",
                "systolic": 192,
                "diastolic": 121,
                "unit": "mm[Hg]",
                "device_id": device,
                "measured_at": (now - timedelta(minutes=3 - k)).isoformat(),
            }
            for k in range(2)
        ]
        token = self._token(patient.user)
        assert self._post("/api/v1/readings/", {"readings": readings}, token)["accepted"] == 2

    def test_a_caregiver_following_two_people_gets_an_urgent_alert_live(self):
        if not Path(CHROMIUM).exists():
            self.skipTest(f"no Chromium at {CHROMIUM} (set CHROMIUM or install chromium)")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            page = browser.new_page()
            page.set_default_timeout(90_000)  # a loaded CI host
            blocked: list[str] = []
            page.on(
                "console",
                lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
            )
            page.goto(f"{self.live_server_url}/care/login/")
            page.fill("#id_username", self.caregiver.username)
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{self.live_server_url}/care/")
            rows = page.locator("[data-testid=followed] tbody tr")
            expect(rows).to_have_count(2)
            expect(page.locator("[data-testid=followed]")).to_contain_text("Moss, Ada")
            expect(page.locator("[data-testid=followed]")).to_contain_text("Moss, Ben")
            expect(page.locator("body")).to_have_attribute("data-live", "connected")
            expect(page.locator("#live-state")).to_have_text("Live alerts on")

            self._crisis(self.stranger, "stranger-watch")  # not followed: never shown
            self._crisis(self.father, "father-watch")
            banner = page.locator("#live-urgent p")
            expect(banner).to_have_count(1)
            expect(banner).to_contain_text("Hypertensive crisis")
            expect(banner).to_contain_text("Moss, Ben")
            expect(banner).to_contain_text("192/121")
            expect(banner).not_to_contain_text("Other")
            assert banner.get_attribute("data-patient") == str(self.father.pk)
            assert not blocked, blocked
            browser.close()
