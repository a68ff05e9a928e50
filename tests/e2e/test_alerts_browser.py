"""Alerts in the browser (#14), against a real daphne server (HTTP and websockets):

- a crisis posted through the API appears live naming the patient with its readings, and the tab
  title counts it;
- a colleague's acknowledgement updates the first clinician's page (banner, row, count);
- snoozing high pressure does not silence a hypotension alert posted next;
- the ladder re-notifies the on-call clinician when nobody acknowledges (the test moves time by
  firing the rungs due 16 minutes after the opening — what Celery beat does every 30 s);
- emergency access needs a reason and shows in the auditor's review report.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings
from playwright.sync_api import expect, sync_playwright

from accounts.models import CareTeamMembership
from clinicians import alerts
from clinicians.models import Alert, AlertKind
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.live import EagerChannelsLiveServer
from tests.e2e.test_portal_browser import sign_in
from tests.factories import CareTeamFactory, ClinicianFactory, PatientFactory, UserFactory

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REDIS = os.environ.get("E2E_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping())
    except Exception:
        return False


class _LiveServer(EagerChannelsLiveServer):
    def setUp(self):
        self.team = CareTeamFactory(name="North")
        self.clinician = ClinicianFactory(care_team=self.team)
        self.colleague = ClinicianFactory(care_team=self.team)
        self.patient = PatientFactory(
            care_team=self.team, family_name="Varga", given_name="Rae", mrn="N-4471"
        )
        self._playwright = sync_playwright().start()
        self.browser = self._playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )

    def tearDown(self):
        self.browser.close()
        self._playwright.stop()

    def page_for(self, user):
        context = self.browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        sign_in(page, self.live_server_url, user)
        page.wait_for_url(f"{self.live_server_url}/portal/")
        page.wait_for_selector("body[data-live=connected]")
        return page

    def readings(self, values: list[tuple[int, int]], minutes_apart: int = 5) -> None:
        token = self._token(self.patient.user)
        now = datetime.now(UTC)
        batch = [
            {
                "client_id": str(uuid.uuid4()),
                "type": "blood_pressure",
                "systolic": systolic,
                "diastolic": diastolic,
                "unit": "mm[Hg]",
                "device_id": "cuff",
                "measured_at": (now - timedelta(minutes=minutes_apart * k)).isoformat(),
            }
            for k, (systolic, diastolic) in enumerate(values)
        ]
        assert self._post("/api/v1/readings/", {"readings": batch}, token)["accepted"] == len(batch)


@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
class LiveAlertTests(_LiveServer):
    def test_a_crisis_appears_live_with_the_patient_and_a_colleagues_acknowledgement_updates_it(
        self,
    ):
        first = self.page_for(self.clinician)
        second = self.page_for(self.colleague)
        self.readings([(194, 122), (191, 121)])
        banner = first.wait_for_selector("[data-key^=alert-].alert.high")
        text = banner.text_content()
        assert "Varga, Rae" in text and "MRN N-4471" in text
        assert "194/122 mmHg at" in text and "191/121 mmHg at" in text
        # Polled through Playwright's protocol, not page-evaluated: the CSP forbids eval.
        expect(first).to_have_title(re.compile(r"^\(1\) "))
        assert first.locator("#live-urgent [data-key^=alert-], #live [data-key^=alert-]").count()

        # Both pages now list it as a row (after a reload), and stay connected.
        first.reload()
        first.wait_for_selector("body[data-live=connected]")
        # The colleague acknowledges from their worklist.
        second.reload()
        second.get_by_role("button", name="Acknowledge hypertensive crisis for Varga, Rae").click()
        second.wait_for_load_state()
        assert "acknowledged for Varga, Rae" in second.content()

        # The first page follows without a reload: banner, count and tab title.
        banner = first.locator("[data-key^=alert-]").first
        expect(banner).to_have_text(
            re.compile(r"^Acknowledged by " + re.escape(self.colleague.shown_name))
        )
        expect(first).to_have_title(re.compile(r"^Worklist"))
        expect(first.locator("[data-count=urgent]").first).to_have_text("0")
        alert = Alert.objects.get(patient=self.patient, kind=AlertKind.CRISIS)
        expect(first.locator(f"[data-alert='{alert.pk}'] .acked")).to_contain_text(
            f"Acknowledged by {self.colleague.shown_name}"
        )

    def test_snoozing_high_pressure_does_not_silence_a_hypotension_alert_posted_next(self):
        self.readings([(152, 96)] * 8, minutes_apart=60)
        assert Alert.objects.filter(patient=self.patient, kind=AlertKind.ABOVE_TARGET).exists()
        page = self.page_for(self.clinician)
        row = page.locator("#out-of-target tr", has_text="Varga, Rae")
        row.get_by_label("Reason").fill("Amlodipine increased on Monday; review next week")
        row.get_by_role("button", name="Snooze home average above target for Varga, Rae").click()
        page.wait_for_load_state()
        assert "Crisis and hypotension alerts still come through" in page.content()
        page.wait_for_selector("body[data-live=connected]")

        self.readings([(84, 52), (82, 50), (80, 48)], minutes_apart=10)
        banner = page.wait_for_selector("[data-key^=alert-].alert.high")
        assert "Sustained low blood pressure" in banner.text_content()
        assert "Varga, Rae" in banner.text_content()
        open_high = Alert.objects.filter(
            patient=self.patient, kind=AlertKind.ABOVE_TARGET, status="open"
        )
        assert not open_high.exists()

    def test_emergency_access_needs_a_reason_and_shows_in_the_auditors_list(self):
        outsider = ClinicianFactory(care_team=CareTeamFactory(name="South"))
        page = self.page_for(outsider)
        page.locator("summary", has_text="Emergency access").click()
        page.get_by_label("MRN (exact)").fill("N-4471")
        page.get_by_role("button", name="Open the record").click()
        page.wait_for_load_state()
        assert "State why you need this record" in page.content()
        assert "/portal/patients/" not in page.url

        page.get_by_label("MRN (exact)").fill("N-4471")
        page.get_by_label("Why you need this record now").fill(
            "Covering North's crisis line tonight; the patient called"
        )
        page.get_by_role("button", name="Open the record").click()
        page.wait_for_url(f"**/portal/patients/{self.patient.pk}/")
        assert page.locator("[data-testid=emergency-banner]").is_visible()

        auditor = UserFactory(role="auditor")
        audit_page = self.browser.new_context().new_page()
        audit_page.set_default_timeout(20_000)
        sign_in(audit_page, self.live_server_url, auditor)
        audit_page.wait_for_url("**/portal/audit/**")
        audit_page.goto(f"{self.live_server_url}/portal/audit/review/")
        assert "Covering North's crisis line tonight" in audit_page.content()


def sweep_at(now) -> int:
    """``fire_due_escalations`` as the beat runs it, at the time the test chooses."""
    from django.db import connection

    fired: list[int] = []

    def run():
        try:
            fired.append(alerts.fire_due_escalations(now))
        finally:
            connection.close()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(30)
    return fired[0]


@pytest.mark.skipif(not _redis_up(), reason=f"no Redis at {REDIS} (CI starts one)")
@override_settings(
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    # The rungs fire in this (the test's) process, as in a Celery worker; the browser follows
    # the daphne process: the two share Redis's channel layer, as production does.
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # As clinaiops.settings: the read timeout sits above channels-redis's 5 s pop.
                "hosts": [{"address": REDIS, "socket_timeout": 30, "retry_on_timeout": True}],
                "prefix": f"e2e-ladder-{uuid.uuid4().hex[:8]}",
            },
        }
    },
)
class LadderTests(_LiveServer):
    def test_the_ladder_re_notifies_the_on_call_clinician_when_nobody_acknowledges(self):
        CareTeamMembership.objects.filter(care_team=self.team, user=self.colleague).update(
            is_on_call=True
        )
        on_call = self.page_for(self.colleague)
        self.readings([(196, 124), (193, 121)])
        on_call.wait_for_selector("[data-key^=alert-].alert.high")
        alert = Alert.objects.get(patient=self.patient, kind=AlertKind.CRISIS)

        # Nobody acknowledges; the beat's sweep runs 4, then 16 minutes after the opening — in a
        # thread of its own, as in a worker (Playwright holds an event loop in this one).
        assert sweep_at(alert.opened_at + timedelta(minutes=4)) == 0
        assert sweep_at(alert.opened_at + timedelta(minutes=16)) == 2
        escalated = on_call.wait_for_selector("[data-key^=escalation-]:has-text('on call')")
        text = escalated.text_content()
        assert text.startswith("Escalated to you (on call)")
        assert "Varga, Rae" in text and "196/124 mmHg at" in text
