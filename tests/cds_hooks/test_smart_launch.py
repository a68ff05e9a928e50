"""SMART EHR launch of the review page, against a fake EHR authorization server on localhost
(a threading HTTP server: smart-configuration, authorize, token, JWKS, Patient) — our code runs
unchanged, including its outbound calls."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client
from jwcrypto import jwk, jwt

from audit.models import AuditEvent
from clinaiops.cds_hooks.registration import register_cds_client
from core.authz import System
from tests.cds_hooks.conftest import new_key
from tests.clinicians.test_oversight_api import make_recommendation
from tests.conftest import PASSWORD, totp_code
from tests.factories import ClinicianFactory

pytestmark = pytest.mark.django_db

CLIENT_ID = "clinaiops-at-ehr"
SECRET = "s3cret-shared-with-the-ehr"
MRN_SYSTEM = "urn:example:ehr:mrn"


class FakeEhr:
    """What an EHR's SMART authorization server does, in a few lines."""

    def __init__(self) -> None:
        self.key = jwk.JWK.generate(kty="RSA", size=2048, kid="ehr-rs256", alg="RS256")
        self.codes: dict[str, dict] = {}
        self.token_requests: list[dict] = []
        self.patient_reads: list[str] = []
        self.fhir_user = "Practitioner/example-clinician-1"
        self.app_context: dict | None = None
        self.nonce_override: str | None = None
        self.public_client = False
        ehr = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _json(self, body, status=200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/fhir/.well-known/smart-configuration":
                    self._json(
                        {
                            "issuer": ehr.fhir,
                            "authorization_endpoint": f"{ehr.base}/authorize",
                            "token_endpoint": f"{ehr.base}/token",
                            "jwks_uri": f"{ehr.base}/jwks",
                            "capabilities": ["launch-ehr", "client-confidential-symmetric"],
                            "code_challenge_methods_supported": ["S256"],
                        }
                    )
                elif parts.path == "/authorize":
                    code = secrets.token_urlsafe(16)
                    ehr.codes[code] = query
                    target = f"{query['redirect_uri']}?" + urlencode(
                        {"code": code, "state": query["state"]}
                    )
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.end_headers()
                elif parts.path == "/jwks":
                    self._json({"keys": [json.loads(ehr.key.export_public())]})
                elif parts.path.startswith("/fhir/Patient/"):
                    if self.headers.get("Authorization") != "Bearer ehr-access-token":
                        self._json({"resourceType": "OperationOutcome"}, 401)
                        return
                    ehr_id = parts.path.rsplit("/", 1)[1]
                    ehr.patient_reads.append(ehr_id)
                    self._json(
                        {
                            "resourceType": "Patient",
                            "id": ehr_id,
                            "identifier": [{"system": MRN_SYSTEM, "value": "FX-1001"}],
                            "name": [{"family": "Okafor-Lind", "given": ["Maren"]}],
                            "gender": "female",
                            "birthDate": "1956-04-12",
                        }
                    )
                else:
                    self._json({}, 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                ehr.token_requests.append(
                    {"form": form, "authorization": self.headers.get("Authorization")}
                )
                asked = ehr.codes.pop(form.get("code", ""), None)
                basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
                if ehr.public_client:  # identified by its client_id only, PKCE proves it
                    basic = None if form.get("client_id") == CLIENT_ID else "refused"
                challenge = (
                    base64.urlsafe_b64encode(
                        hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                    )
                    .rstrip(b"=")
                    .decode()
                )
                if (
                    asked is None
                    or self.headers.get("Authorization") != basic
                    or form.get("redirect_uri") != asked["redirect_uri"]
                    or challenge != asked["code_challenge"]
                ):
                    self._json({"error": "invalid_grant"}, 400)
                    return
                now = int(time.time())
                id_token = jwt.JWT(
                    header={"alg": "RS256", "kid": "ehr-rs256"},
                    claims={
                        "iss": ehr.fhir,
                        "sub": "clinician-1",
                        "aud": CLIENT_ID,
                        "exp": now + 300,
                        "iat": now,
                        "nonce": ehr.nonce_override or asked["nonce"],
                        "fhirUser": ehr.fhir_user,
                    },
                )
                id_token.make_signed_token(ehr.key)
                body = {
                    "access_token": "ehr-access-token",
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "scope": asked["scope"],
                    "patient": "fx-1001",
                    "id_token": id_token.serialize(),
                }
                if ehr.app_context is not None:
                    body["appContext"] = json.dumps(ehr.app_context)
                self._json(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.fhir = f"{self.base}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def authorize(self, url: str) -> str:
        """The browser at the EHR's authorize endpoint: where it is sent back to."""
        import http.client

        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        connection.request("GET", f"{parts.path}?{parts.query}")
        response = connection.getresponse()
        assert response.status == 302
        return response.getheader("Location")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_ehr():
    ehr = FakeEhr()
    yield ehr
    ehr.close()


@pytest.fixture
def smart_ehr(fake_ehr, team_a, clinician):
    row = register_cds_client(
        name="Launching EHR",
        issuer="https://launching-ehr.example.org/",
        jwks={"keys": [json.loads(new_key("cds-key").export_public())]},
        care_teams=[team_a],
        mrn_system=MRN_SYSTEM,
        fhir_server=fake_ehr.fhir,
        smart_client_id=CLIENT_ID,
        smart_client_secret=SECRET,
        actor=System("tests"),
    )
    from clinaiops.cds_hooks.registration import link_practitioner

    link_practitioner(
        client=row, reference="Practitioner/example-clinician-1", user=clinician, actor=System("t")
    )
    return row


def sign_in(browser: Client, user) -> None:
    browser.post("/portal/login/", {"username": user.username, "password": PASSWORD})
    assert browser.post("/portal/login/verify/", {"code": totp_code(user)}).status_code == 302


def launch(browser: Client, fake_ehr: FakeEhr, iss: str | None = None):
    started = browser.get("/smart/launch", {"iss": iss or fake_ehr.fhir, "launch": "xyz123"})
    assert started.status_code == 302, started.content
    back = fake_ehr.authorize(started["Location"])
    parts = urlsplit(back)
    assert parts.netloc == "testserver" and parts.path == "/smart/callback"
    return started, browser.get(f"{parts.path}?{parts.query}")


def steps(kind: str) -> list[dict]:
    return [
        event.detail
        for event in AuditEvent.objects.filter(object_type="smart_launch").order_by("pk")
        if kind in (event.action, "any")
    ]


def test_ehr_launch_shows_the_review_only_after_our_sign_in(fake_ehr, smart_ehr, maren, clinician):
    rec = make_recommendation(maren)
    fake_ehr.app_context = {"patient": maren.pk, "recommendation": rec.pk}
    browser = Client()
    started, back = launch(browser, fake_ehr)

    asked = parse_qs(urlsplit(started["Location"]).query)
    assert started["Location"].startswith(f"{fake_ehr.base}/authorize?")
    assert asked["launch"] == ["xyz123"] and asked["aud"] == [fake_ehr.fhir]
    assert asked["code_challenge_method"] == ["S256"] and asked["client_id"] == [CLIENT_ID]
    assert asked["scope"] == ["launch openid fhirUser patient/Patient.rs"]
    assert asked["response_type"] == ["code"] and len(asked["state"][0]) >= 32
    # confidential client: the secret by HTTP Basic, the PKCE verifier that matches
    assert fake_ehr.token_requests[0]["form"]["grant_type"] == "authorization_code"
    assert "client_secret" not in fake_ehr.token_requests[0]["form"]
    assert fake_ehr.patient_reads == ["fx-1001"]  # read with the EHR's access token

    review = back["Location"]
    assert review.startswith("/smart/review/")
    anonymous = browser.get(review)  # the EHR's session is not ours
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/portal/login/")
    assert f"next={review}" in anonymous["Location"].replace("%2F", "/")

    sign_in(browser, clinician)
    shown = browser.get(review)
    assert shown.status_code == 302
    assert shown["Location"] == f"/portal/patients/{maren.pk}/#rec-{rec.pk}"
    assert browser.get(shown["Location"]).status_code == 200
    assert browser.get(review).status_code == 404  # shown once
    details = [e["step"] for e in steps("any") if "step" in e]
    assert details == ["started", "completed", "shown"]
    completed = steps("update")[0]
    assert completed["fhir_user"] == "Practitioner/example-clinician-1"
    assert completed["recommendation"] == rec.pk


def test_unknown_iss_is_400_and_journalled(fake_ehr, smart_ehr):
    answer = Client().get("/smart/launch", {"iss": "https://other.example.org/fhir", "launch": "x"})
    assert answer.status_code == 400
    assert b"not registered" in answer.content
    refusal = AuditEvent.objects.get(action="refused", object_type="smart_launch")
    assert refusal.detail["field"] == "iss" and refusal.detail["status"] == 400


@pytest.mark.parametrize("state", ["", "forged-state"])
def test_bad_or_missing_state_is_400(fake_ehr, smart_ehr, state):
    answer = Client().get("/smart/callback", {"code": "c", "state": state})
    assert answer.status_code == 400
    assert AuditEvent.objects.filter(action="refused", object_type="smart_launch").count() == 1


def test_state_of_another_browser_or_reused_is_400(fake_ehr, smart_ehr, maren):
    browser = Client()
    started = browser.get("/smart/launch", {"iss": fake_ehr.fhir, "launch": "l"})
    back = urlsplit(fake_ehr.authorize(started["Location"]))
    callback = f"{back.path}?{back.query}"
    assert Client().get(callback).status_code == 400  # another browser session
    assert browser.get(callback).status_code == 302
    assert browser.get(callback).status_code == 400  # replayed
    assert len(fake_ehr.token_requests) == 1


def test_clinician_who_cannot_reach_the_patient_gets_404(fake_ehr, smart_ehr, maren, team_b):
    fake_ehr.fhir_user = "Practitioner/unregistered"
    browser = Client()
    _, back = launch(browser, fake_ehr)
    sign_in(browser, ClinicianFactory(care_team=team_b))
    assert browser.get(back["Location"]).status_code == 404
    refusal = AuditEvent.objects.filter(action="refused", object_type="smart_launch").get()
    assert refusal.patient_ids == [maren.pk]


def test_ehr_user_registered_as_another_clinician_is_403(fake_ehr, smart_ehr, maren, team_a):
    browser = Client()
    _, back = launch(browser, fake_ehr)
    sign_in(browser, ClinicianFactory(care_team=team_a))
    assert browser.get(back["Location"]).status_code == 403


def test_id_token_with_another_nonce_is_refused(fake_ehr, smart_ehr, maren):
    fake_ehr.nonce_override = "not-this-launch"
    _, back = launch(Client(), fake_ehr)
    assert back.status_code == 400
    assert b"nonce" in back.content


def test_card_of_another_patient_is_refused(fake_ehr, smart_ehr, maren):
    fake_ehr.app_context = {"patient": maren.pk + 999}
    _, back = launch(Client(), fake_ehr)
    assert back.status_code == 409


def test_command_registers_the_smart_client_without_the_secret_on_the_command_line(
    admin_user, team_a, tmp_path
):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from clinaiops.cds_hooks.models import CdsClient

    keys = tmp_path / "ehr.jwks.json"
    keys.write_text(json.dumps({"keys": [json.loads(new_key().export_public())]}))
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    common = ["--admin", admin_user.username, "--jwks", str(keys), "--care-team", team_a.name]
    with pytest.raises(CommandError, match="--fhir-server"):  # a launch needs the iss
        call_command(
            "register_cds_client", *common, "--name", "x", "--issuer", "https://x.example.org",
            "--smart-client-id", CLIENT_ID,
        )  # fmt: skip
    call_command(
        "register_cds_client", *common, "--name", "County EHR",
        "--issuer", "https://ehr.example.org", "--fhir-server", "https://ehr.example.org/fhir/",
        "--smart-client-id", CLIENT_ID, "--smart-client-secret-file", str(secret),
        "--smart-scope", "launch  openid fhirUser patient/Patient.rs",
    )  # fmt: skip
    client = CdsClient.objects.get()
    assert (client.smart_client_id, client.smart_client_secret) == (CLIENT_ID, SECRET)
    assert client.fhir_server == "https://ehr.example.org/fhir"
    assert client.smart_scope == "launch openid fhirUser patient/Patient.rs"
    journalled = AuditEvent.objects.get(object_type="cds_client").detail
    assert journalled["smart_confidential"] is True and SECRET not in json.dumps(journalled)


def test_public_client_sends_its_client_id_and_pkce_only(fake_ehr, smart_ehr, maren, clinician):
    fake_ehr.public_client = True
    smart_ehr.smart_client_secret = ""
    smart_ehr.save(update_fields=["smart_client_secret"])
    browser = Client()
    _, back = launch(browser, fake_ehr)
    assert back.status_code == 302
    sent = fake_ehr.token_requests[0]
    assert sent["authorization"] is None and "code_verifier" in sent["form"]
    sign_in(browser, clinician)
    assert browser.get(back["Location"])["Location"] == f"/portal/patients/{maren.pk}/"


def test_token_endpoint_refusing_the_code_is_journalled(fake_ehr, smart_ehr, maren):
    smart_ehr.smart_client_secret = "wrong"
    smart_ehr.save(update_fields=["smart_client_secret"])
    _, back = launch(Client(), fake_ehr)
    assert back.status_code == 502 and b"invalid_grant" in back.content
    assert AuditEvent.objects.filter(action="refused", object_type="smart_launch").count() == 1
