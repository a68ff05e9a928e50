"""The Content-Security-Policy (issue 14): every page carries it, scripts and styles run only from
our origin or with the response's nonce (a new one per response), and no template holds what
the policy would block — an inline event handler, a style attribute, a ``javascript:`` URL, or an
inline script or style without the nonce. The browser side (pages, API docs, the live
websocket, the SMART consent's redirect) is tested in tests/e2e/test_accessibility.py."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.template import engines
from django.test import Client

from core.csp import origin_source
from tests.accounts.test_oauth_flows import pkce, signed_in_browser
from tests.clinicians.test_oversight_api import make_recommendation
from tests.clinicians.test_portal import portal_client
from tests.oauth_clients import SMART_REDIRECT, smart_app

NONCE_SOURCE = re.compile(r"'nonce-([A-Za-z0-9+/=]+)'")
NONCE_ATTRIBUTE = re.compile(r'\snonce="([^"]*)"')
TEMPLATE_NONCE = 'nonce="{{ request.csp_nonce }}"'
# Redoc's page widens style-src to 'unsafe-inline' (its components inject <style> elements; see
# clinaiops/urls.py), so its own <style> needs no nonce.
INLINE_STYLE_WITHOUT_NONCE_ALLOWED = {"drf_spectacular/redoc.html"}


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def nonce_of(response) -> str:
    found = NONCE_SOURCE.search(response["Content-Security-Policy"])
    assert found, response["Content-Security-Policy"]
    return found.group(1)


# --- the header ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_policy_is_strict_and_complete():
    policy = directives(Client().get("/portal/login/"))
    assert policy["default-src"] == ["'self'"]
    for name in ("script-src", "style-src"):
        assert policy[name][0] == "'self'" and NONCE_SOURCE.fullmatch(policy[name][1]), policy
        assert "'unsafe-inline'" not in policy[name] and "'unsafe-eval'" not in policy[name]
    assert policy["img-src"] == ["'self'", "data:"]  # QR codes and icons inline
    assert policy["connect-src"] == ["'self'"]  # CSP 3: same-host ws:/wss: included
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]


@pytest.mark.django_db
def test_each_response_has_its_own_nonce():
    client = Client()
    nonces = {nonce_of(client.get("/portal/login/")) for _ in range(3)}
    assert len(nonces) == 3


@pytest.mark.django_db
def test_portal_pages_carry_the_policy_and_mark_their_inline_code_with_its_nonce(
    clinician_a, patient_a
):
    make_recommendation(patient_a)  # the chart has a review card
    client = portal_client(clinician_a)
    for path in ("/portal/", f"/portal/patients/{patient_a.pk}/"):
        response = client.get(path)
        assert response.status_code == 200
        nonce = nonce_of(response)
        html = response.content.decode()
        inline = re.findall(r"<(?:script|style)\b(?![^>]*\bsrc=)[^>]*>", html)
        assert inline, path  # the portal's stylesheet and live script
        assert all(NONCE_ATTRIBUTE.search(tag) for tag in inline), (path, inline)
        assert set(NONCE_ATTRIBUTE.findall(html)) == {nonce}, path


@pytest.mark.django_db
def test_api_docs_keep_scripts_strict():
    swagger = Client().get("/api/docs/")
    assert f'<script nonce="{nonce_of(swagger)}">' in swagger.content.decode()
    redoc = directives(Client().get("/api/redoc/"))
    assert "'unsafe-inline'" not in redoc["script-src"]
    assert redoc["style-src"] == ["'self'", "'unsafe-inline'"]  # Redoc's own <style> elements
    assert redoc["worker-src"] == ["'self'", "blob:"]  # its search worker


@pytest.mark.django_db
def test_the_smart_consent_page_may_send_its_answer_to_the_apps_redirect_only(clinician_a):
    app = smart_app()
    _, challenge = pkce()
    query = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": SMART_REDIRECT,
        "scope": "openid launch/patient patient/Observation.rs",
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "aud": "http://testserver/fhir",
    }
    page = signed_in_browser(clinician_a).get("/oauth/authorize/?" + urlencode(query))
    assert page.status_code == 200
    assert directives(page)["form-action"] == ["'self'", "https://app.example"]


@pytest.mark.django_db
def test_the_chart_may_send_open_in_app_to_the_apps_launch_origin(clinician_a, patient_a):
    client = portal_client(clinician_a)
    chart = f"/portal/patients/{patient_a.pk}/"
    assert directives(client.get(chart))["form-action"] == ["'self'"]
    smart_app()  # launch URI https://app.example/launch
    assert directives(client.get(chart))["form-action"] == ["'self'", "https://app.example"]


@pytest.mark.parametrize(
    ("uri", "source"),
    [
        ("https://app.example/cb", "https://app.example"),
        ("http://127.0.0.1:8765/callback?x=1", "http://127.0.0.1:8765"),
        ("http://[::1]:8765/cb", "http://[::1]:8765"),
        ("org.clinaiops.app:/oauth/callback", "org.clinaiops.app:"),
        ("javascript:alert(1)", None),
        ("data:text/html,hi", None),
        ("https://app.example;script-src *", None),
        ("https://app.example 'unsafe-inline'/cb", None),
        ("https://user@app.example/cb", None),
        ("https:///cb", None),
        ("", None),
    ],
)
def test_only_a_plain_origin_is_added_to_form_action(uri, source):
    assert origin_source(uri) == source


# --- the templates --------------------------------------------------------------------------


def project_templates() -> list[tuple[str, str]]:
    """Every template of the project's own apps and template folders (not the libraries')."""
    base = Path(settings.BASE_DIR).resolve()
    found = []
    for folder in engines["django"].template_dirs:
        folder = Path(folder).resolve()
        if not folder.is_relative_to(base) or ".venv" in folder.parts:
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix in {".html", ".txt", ".xml", ".svg"}:
                found.append((path.relative_to(folder).as_posix(), path.read_text()))
    return found


TEMPLATES = project_templates()
BLOCK = re.compile(r"<(script|style)\b([^>]*)>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL)
TAG = re.compile(r"<[A-Za-z][^>]*>")
HANDLER = re.compile(r"(?<![\w:.-])on[a-z]+\s*=", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"(?<![\w:.-])style\s*=", re.IGNORECASE)


def test_the_project_has_templates_to_scan():
    names = {name for name, _ in TEMPLATES}
    assert {"portal/base.html", "portal/home.html", "portal/patient.html"} <= names
    assert "oauth/authorize.html" in names  # clinaiops/templates too


def problems_in(name: str, text: str) -> list[str]:
    """What in a template the policy would block."""
    problems = []
    for kind, attributes, _ in BLOCK.findall(text):
        if "src=" in attributes:
            continue
        exempt = kind.lower() == "style" and name in INLINE_STYLE_WITHOUT_NONCE_ALLOWED
        if TEMPLATE_NONCE not in attributes and not exempt:
            problems.append(f"inline <{kind}> without {TEMPLATE_NONCE}")
    # Tags only: what a script or a stylesheet says inside its block is not markup.
    markup = BLOCK.sub(lambda block: f"<{block.group(1)}{block.group(2)}>", text)
    for tag in TAG.findall(markup):
        if HANDLER.search(tag):
            problems.append(f"inline event handler: {tag[:120]}")
        if STYLE_ATTRIBUTE.search(tag):
            problems.append(f"style attribute (use a class from portal/base.html): {tag[:120]}")
    if re.search(r"javascript\s*:", markup, re.IGNORECASE):
        problems.append("javascript: URL")
    return problems


@pytest.mark.parametrize(("name", "text"), TEMPLATES, ids=[name for name, _ in TEMPLATES])
def test_templates_hold_nothing_the_policy_blocks(name, text):
    assert problems_in(name, text) == []


@pytest.mark.parametrize(
    "text",
    [
        '<button onclick="go()">Go</button>',
        '<form {% if x %}onsubmit="return check()"{% endif %}>',
        '<div class="qr" style="width:200px">',
        '<a href="javascript:void(0)">x</a>',
        "<script>alert(1)</script>",
        "<style>body { margin:0 }</style>",
        '<script nonce="fixed">go()</script>',
    ],
)
def test_the_scan_finds_what_the_policy_blocks(text):
    assert problems_in("portal/example.html", text)


def test_the_scan_lets_through_what_the_policy_allows():
    text = (
        f"<style {TEMPLATE_NONCE}>.a > b {{ color:red }}</style>"
        f"<script {TEMPLATE_NONCE}>if (a < b && c > d) el.onclick = null;</script>"
        '<script src="/static/app.js"></script>'
        '<button name="action" value="confirm" data-on-hold="1">Confirm</button>'
        '<svg><rect fill="#b3261e" stroke="#777"/></svg><link rel="stylesheet" href="/a.css">'
    )
    assert problems_in("portal/example.html", text) == []
