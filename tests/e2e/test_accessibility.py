"""The portal's craft in a real browser (issue 14): axe-core finds no serious or critical issue on
the worklist, the chart and the review card; on a phone (390 and 360 px wide) neither page
scrolls sideways and every control is on the screen; the Content-Security-Policy is served with
a nonce, and everything the pages, the API docs, the SMART consent and the chart's EHR launch
need still works under it — the live worklist's websocket included."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from channels.testing import ChannelsLiveServerTestCase
from django.test import override_settings
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from clinicians.loop.goals import set_goal
from clinicians.loop.messages import send_message
from clinicians.models import Alert
from tests.accounts.test_oauth_flows import pkce
from tests.clinicians.test_oversight_api import make_recommendation
from tests.conftest import PASSWORD, totp_code
from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.test_portal_browser import sign_in
from tests.factories import CareTeamFactory, ClinicianFactory, PatientFactory
from tests.oauth_clients import SMART_REDIRECT, smart_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.slow]

# A model's explanation as the demo's model gives it: five contributions, long drug names.
EXPLANATION = [
    {
        "key": "delta_hydrochlorothiazide_mg",
        "feature": "proposed change of hydrochlorothiazide",
        "unit": "mg",
        "value": 12.5,
        "shap_mmhg": -3.4,
    },
    {
        "key": "mean_systolic_7d_mmhg",
        "feature": "7-day mean systolic",
        "unit": "mmHg",
        "value": 144.2,
        "shap_mmhg": -2.4,
    },
    {
        "key": "dose_hydrochlorothiazide_mg",
        "feature": "current hydrochlorothiazide dose",
        "unit": "mg",
        "value": 0,
        "shap_mmhg": -0.4,
    },
    {
        "key": "sd_systolic_7d_mmhg",
        "feature": "systolic variability (SD)",
        "unit": "mmHg",
        "value": 7.5,
        "shap_mmhg": 1.1,
    },
    {
        "key": "mean_heart_rate_7d_bpm",
        "feature": "mean heart rate",
        "unit": "/min",
        "value": 87.2,
        "shap_mmhg": 0.2,
    },
    {"key": "steps_7d", "feature": "daily steps", "unit": "", "value": 4200, "shap_mmhg": 0.0},
]

# Collected before any page script runs (an init script is not subject to the page's policy).
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.effectiveDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile || document.location.pathname}:${event.lineNumber}`);
});
"""
OFF_SCREEN = """() => {
  const outside = [];
  for (const el of document.querySelectorAll("a, button, input, select, textarea, table, svg")) {
    if (el.closest(".table-wrap")) continue;  // scrolls inside its own box, on purpose
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    if (box.left < -0.5 || box.right > window.innerWidth + 0.5) {
      const where = `${Math.round(box.left)}–${Math.round(box.right)}`;
      outside.push(`${el.outerHTML.slice(0, 100)} (${where})`);
    }
  }
  // A box that scrolls sideways inside the page hides its overflow just as well.
  const scrolling = [];
  for (const el of document.querySelectorAll("main *")) {
    if (el.closest(".table-wrap")) continue;
    const overflow = getComputedStyle(el).overflowX;
    if ((overflow === "auto" || overflow === "scroll") && el.scrollWidth > el.clientWidth + 1) {
      scrolling.push(`${el.outerHTML.slice(0, 100)} (${el.scrollWidth} > ${el.clientWidth})`);
    }
  }
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    outside: outside,
    scrolling: scrolling,
  };
}"""


def watch_csp(page) -> None:
    page.add_init_script(RECORD_CSP_VIOLATIONS)


def csp_violations(page) -> list[str]:
    return page.evaluate("() => window.__cspViolations || []")


@pytest.fixture
def clinic(clinician_a, team_a, patient_a):
    """A care team's day: a crisis alert and a proposal waiting for review with its SHAP
    explanation, a week of readings, a shared goal and a patient's question — and a panel long
    enough that the worklist's tables have rows, one name long enough to wrap."""
    patient_a.family_name = "Featherstonehaugh-Wolfeschlegelsteinhausen"
    patient_a.save(update_fields=["family_name"])
    rec = make_recommendation(patient_a)
    rec.explanation = EXPLANATION
    rec.save(update_fields=["explanation"])
    Alert.objects.create(
        patient=patient_a,
        kind="hypertensive_crisis",
        message="194/124 mmHg confirmed by a second reading",
        opened_at=timezone.now() - timedelta(minutes=20),
    )
    for _ in range(3):
        make_recommendation(PatientFactory(care_team=team_a))
    set_goal(patient=patient_a, actor=clinician_a, kind="blood_pressure")
    send_message(
        patient=patient_a,
        actor=patient_a.user,
        body="My evening readings are higher than my morning ones. Should I worry?",
    )
    return {"clinician": clinician_a, "patient": patient_a, "rec": rec}


@pytest.fixture
def signed_in(clinic, page, live_server):
    watch_csp(page)
    sign_in(page, live_server.url, clinic["clinician"])
    page.wait_for_url(f"{live_server.url}/portal/")
    return page


def _pages(live_server, clinic) -> dict[str, str]:
    return {
        "worklist": f"{live_server.url}/portal/",
        "chart": f"{live_server.url}/portal/patients/{clinic['patient'].pk}/",
    }


@pytest.mark.parametrize("where", ["worklist", "chart", "review card"])
def test_axe_finds_no_serious_or_critical_issue(signed_in, live_server, clinic, where):
    page = signed_in
    rec = clinic["rec"]
    url = _pages(live_server, clinic)["worklist" if where == "worklist" else "chart"]
    page.goto(url)
    page.wait_for_load_state("load")
    context = f"#rec-{rec.pk}" if where == "review card" else None
    if context:
        assert "Sign decision" in page.locator(context).inner_text()  # the card to decide on
    assert_accessible(page, where, context)
    assert csp_violations(page) == []


@pytest.mark.parametrize("width", [390, 360])
def test_worklist_and_chart_fit_a_phone_without_sideways_scrolling(
    signed_in, live_server, clinic, width
):
    page = signed_in
    page.set_viewport_size({"width": width, "height": 844})
    for where, url in _pages(live_server, clinic).items():
        page.goto(url)
        page.wait_for_load_state("load")
        fit = page.evaluate(OFF_SCREEN)
        assert fit["scrollWidth"] <= fit["innerWidth"], (where, fit)
        assert fit["outside"] == [], (where, fit["outside"])
        assert fit["scrolling"] == [], (where, fit["scrolling"])
    # The review card's decision is reachable on the phone.
    page.locator(f"#rec-{clinic['rec'].pk}").get_by_role("button", name="Sign decision").click(
        trial=True
    )
    assert csp_violations(page) == []


def test_skip_link_is_the_first_stop_and_lands_on_the_main_content(signed_in):
    page = signed_in
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => [document.activeElement.textContent, document.activeElement.getAttribute('href')]"
    )
    assert focused == ["Skip to main content", "#main"]
    assert page.locator(".skip-link").is_visible()
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"


def test_urgent_and_polite_live_regions_are_in_place(signed_in):
    page = signed_in
    urgent = page.locator("#live-urgent")
    assert urgent.get_attribute("role") == "alert"
    assert urgent.get_attribute("aria-live") == "assertive"
    polite = page.locator("#live")
    assert polite.get_attribute("role") == "status"
    assert polite.get_attribute("aria-live") == "polite"


def test_api_docs_render_under_the_policy(page, live_server):
    watch_csp(page)
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "ClinAIOps API" in page.locator(".swagger-ui .info .title").inner_text()
    page.wait_for_selector(".opblock")  # the operations, from /api/schema/
    assert csp_violations(page) == []

    page.goto(f"{live_server.url}/api/redoc/")
    page.locator("h1", has_text="ClinAIOps API").wait_for()
    page.wait_for_selector("[data-section-id]")  # the operations, from /api/schema/
    # Only Redoc's own "by Redocly" logo, from its CDN, is refused: nothing loads from elsewhere.
    assert [v for v in csp_violations(page) if "https://cdn.redoc.ly/" not in v] == []


def test_smart_consent_is_allowed_to_send_the_code_to_the_apps_redirect(
    clinician_a, patient_a, page, live_server
):
    """form-action governs where the consent form's answer may redirect: the code must reach
    the app's registered redirect URI on its own origin."""
    app = smart_app()
    watch_csp(page)
    arrived: list[str] = []

    def app_callback(route):
        arrived.append(route.request.url)
        route.fulfill(status=200, content_type="text/plain", body="app received the code")

    page.route(re.compile(r"^https://app\.example/"), app_callback)
    page.goto(f"{live_server.url}/oauth/login/?next=/oauth/signed-in/")
    page.fill("#id_username", clinician_a.username)
    page.fill("#id_password", PASSWORD)
    page.fill("#id_otp", totp_code(clinician_a))
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    _, challenge = pkce()
    query = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": SMART_REDIRECT,
        "scope": "openid launch/patient patient/Observation.rs",
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "aud": f"{live_server.url}/fhir",
    }
    page.goto(f"{live_server.url}/oauth/authorize/?{urlencode(query)}")
    page.select_option("#id_patient", str(patient_a.pk))
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(re.compile(r"^https://app\.example/cb\?"))
    assert arrived and "code=" in arrived[0] and "state=st" in arrived[0]


def test_open_in_app_is_allowed_to_send_the_launch_to_the_app(
    clinician_a, patient_a, page, live_server
):
    """The chart's "Open in app" answers with a redirect to the app's launch URI."""
    smart_app()  # launch URI https://app.example/launch
    watch_csp(page)
    arrived: list[str] = []

    def app_launch(route):
        arrived.append(route.request.url)
        route.fulfill(status=200, content_type="text/plain", body="app launched")

    page.route(re.compile(r"^https://app\.example/"), app_launch)
    sign_in(page, live_server.url, clinician_a)
    page.wait_for_url(f"{live_server.url}/portal/")
    page.goto(f"{live_server.url}/portal/patients/{patient_a.pk}/")
    page.get_by_role("button", name="Open", exact=True).click()
    page.wait_for_url(re.compile(r"^https://app\.example/launch\?"))
    assert arrived and "launch=" in arrived[0] and "iss=" in arrived[0]


# The server process is forked when the class is set up, before per-test fixtures run: it must
# already know the fast hasher the factories use (as in test_live_worklist).
@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
class PolicyOnTheLiveWorklistTests(ChannelsLiveServerTestCase):
    """Against daphne (HTTP and websockets in one process, as served in production): the
    policy's connect-src lets the live worklist's websocket open."""

    serve_static = False

    def setUp(self):
        team = CareTeamFactory(name="North")
        self.clinician = ClinicianFactory(care_team=team)
        PatientFactory(care_team=team)

    def test_portal_pages_carry_a_nonce_and_their_script_runs(self):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            page = browser.new_page()
            page.set_default_timeout(20_000)
            watch_csp(page)
            sign_in(page, self.live_server_url, self.clinician)
            page.wait_for_url(f"{self.live_server_url}/portal/")
            response = page.reload()
            policy = response.headers["content-security-policy"]
            nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
            assert f'nonce="{nonce}"' in response.text()  # the page's own script and style
            assert "'unsafe-inline'" not in policy
            # The live script ran (its nonce) and its websocket opened (connect-src).
            # (expect, not wait_for_function: a string predicate is eval'd, which the policy
            # refuses as it should.)
            expect(page.locator("#live-state")).to_have_text("Live updates on", timeout=20_000)
            assert csp_violations(page) == []
            browser.close()
