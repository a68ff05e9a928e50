"""The worklist is live: with the portal open, a patient's confirmed crisis reading and message
reach the clinician's page over the websocket, without a reload — against a real daphne server
(HTTP and websockets in one process, as `make demo` and production serve them)."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from channels.testing import ChannelsLiveServerTestCase
from django.test import override_settings
from playwright.sync_api import sync_playwright

from tests.conftest import PASSWORD
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.test_portal_browser import sign_in
from tests.factories import CareTeamFactory, ClinicianFactory, PatientFactory

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# The server process is forked when the class is set up, before per-test fixtures run: it must
# already know the fast hasher the factories use.
@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
class LiveWorklistTests(ChannelsLiveServerTestCase):
    serve_static = False

    @classmethod
    def setUpClass(cls):
        # The server process is forked in setUpClass: tasks must already run in-process there
        # (no Celery worker in this test), whatever the stack.
        from clinaiops.celery import app

        cls._eager_before = app.conf.task_always_eager
        app.conf.task_always_eager = True
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        from clinaiops.celery import app

        app.conf.task_always_eager = cls._eager_before

    def setUp(self):
        team, other_team = CareTeamFactory(name="North"), CareTeamFactory(name="South")
        self.clinician = ClinicianFactory(care_team=team)
        self.patient = PatientFactory(care_team=team)
        self.stranger = PatientFactory(care_team=other_team)

    def _post(self, path: str, body: dict, token: str | None = None) -> dict:
        request = urllib.request.Request(
            self.live_server_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {token}"} if token else {}),
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            return json.loads(response.read() or b"{}")

    def _token(self, user) -> str:
        body = {"username": user.username, "password": PASSWORD}
        return self._post("/api/v1/auth/token/", body)["access"]

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
            urgent = page.wait_for_selector("#live a.alert.high")
            assert "hypertensive crisis" in urgent.text_content().lower()
            assert "194/122" in urgent.text_content()
            assert page.locator("#live a").count() == 1  # the other team's crisis never came

            self._post(
                "/api/v1/messages/",
                {"body": "<b>dizzy</b> since this morning"},
                self._token(self.patient.user),
            )
            note = page.wait_for_selector("#live a.message")
            assert note.text_content() == "New message from a patient"  # no body on screen
            # The crisis stays on top although the message came later; the feed says it is on.
            assert page.locator("#live a").first.get_attribute("class") == "alert high"
            assert page.locator("#live-state").text_content() == "Live updates on"

            urgent.click()
            page.wait_for_url(f"**/portal/patients/{self.patient.pk}/")
            assert "<b>dizzy</b> since this morning" in page.content().replace("&lt;", "<").replace(
                "&gt;", ">"
            )
            assert page.locator("b", has_text="dizzy").count() == 0  # shown as text, not markup
            browser.close()
