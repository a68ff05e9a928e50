"""The worklist is live: with the portal open, a patient's confirmed crisis reading and message
reach the clinician's page over the websocket, without a reload — against a real daphne server
(HTTP and websockets in one process, as `make demo` and production serve them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings
from playwright.sync_api import sync_playwright

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.live import EagerChannelsLiveServer
from tests.e2e.test_portal_browser import sign_in
from tests.factories import CareTeamFactory, ClinicianFactory, PatientFactory

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# The server process is forked when the class is set up, before per-test fixtures run: it must
# already know the fast hasher the factories use.
@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
class LiveWorklistTests(EagerChannelsLiveServer):
    def setUp(self):
        team, other_team = CareTeamFactory(name="North"), CareTeamFactory(name="South")
        self.clinician = ClinicianFactory(care_team=team)
        self.patient = PatientFactory(care_team=team)
        self.stranger = PatientFactory(care_team=other_team)

    def _crisis(self, token: str, device: str) -> None:
        now = datetime.now(UTC)
        readings = [
            {
                "client_id": f"{device}-{k}",
                "type": "blood_pressure",
                "systolic": 194,
                "diastolic": 122,
                "unit": "mm[Hg]",
                "device_id": device,
                "measured_at": (now - timedelta(minutes=3 - k)).isoformat(),
            }
            for k in range(2)
        ]
        assert self._post("/api/v1/readings/", {"readings": readings}, token)["accepted"] == 2

    def test_a_crisis_and_a_message_reach_the_open_worklist_and_another_teams_do_not(self):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            page = browser.new_page()
            page.set_default_timeout(20_000)
            sign_in(page, self.live_server_url, self.clinician)
            page.wait_for_url(f"{self.live_server_url}/portal/")
            page.wait_for_selector("body[data-live=connected]")

            self._crisis(
                self._token(self.stranger.user), "stranger-watch"
            )  # another team's patient
            self._crisis(self._token(self.patient.user), "own-watch")
            # Urgent banners go to the assertive region, naming the patient.
            urgent = page.wait_for_selector("#live-urgent a.alert.high")
            assert "hypertensive crisis" in urgent.text_content().lower()
            assert "194/122" in urgent.text_content()
            assert self.patient.family_name in urgent.text_content()
            # The other team's crisis never came.
            assert page.locator("#live-urgent a, #live a").count() == 1

            self._post(
                "/api/v1/messages/",
                {"body": "<b>dizzy</b> since this morning"},
                self._token(self.patient.user),
            )
            note = page.wait_for_selector("#live a[data-key^=message-]")
            # Who wrote, never the body, on screen.
            assert note.text_content() == f"New message from {self.patient.identity}"
            # The crisis stays in the assertive region although the message came later.
            assert page.locator("#live-urgent a").first.get_attribute("class") == "alert high"
            assert page.locator("#live-state").text_content() == "Live updates on"

            urgent.click()
            page.wait_for_url(f"**/portal/patients/{self.patient.pk}/#alerts")
            assert "<b>dizzy</b> since this morning" in page.content().replace("&lt;", "<").replace(
                "&gt;", ">"
            )
            assert page.locator("b", has_text="dizzy").count() == 0  # shown as text, not markup
            browser.close()
