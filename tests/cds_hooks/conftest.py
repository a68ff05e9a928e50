"""An EHR registered as a CDS Client (its own ES384 key pair, as the specification's example),
its JWTs, and the patient and clinician it names."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from jwcrypto import jwk, jwt

from clinaiops.cds_hooks.registration import link_practitioner, register_cds_client
from core.authz import System
from tests.factories import ClinicianFactory, PatientFactory

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "cds-hooks"
BASE = "http://testserver"
EHR_ISSUER = "https://ehr.example.org/"
EHR_ORIGIN = "https://ehr.example.org"
PRACTITIONER = "Practitioner/example-clinician-1"
PATIENT_VIEW = "clinaiops-patient-view"
ORDER_SIGN = "clinaiops-order-sign"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


class Ehr:
    """The EHR: signs a fresh JWT for every call, as the specification requires."""

    def __init__(self, client_row, key: jwk.JWK, issuer: str = EHR_ISSUER):
        self.row, self.key, self.issuer = client_row, key, issuer
        self.http = Client()

    def token(self, audience: str, *, key: jwk.JWK | None = None, **claims) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": audience,
            "exp": now + 60,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "tenant": "north-clinic",
        } | claims
        payload = {name: value for name, value in payload.items() if value is not None}
        signing_key = key or self.key
        header = {"alg": signing_key.get("alg", "ES384"), "typ": "JWT", "kid": signing_key.kid}
        token = jwt.JWT(header=header, claims=payload)
        token.make_signed_token(signing_key)
        return token.serialize()

    def call(self, service_id: str, body: Any, *, token: str | None = None, **headers):
        token = token or self.token(f"{BASE}/cds-services/{service_id}")
        return self.http.post(
            f"/cds-services/{service_id}",
            data=body if isinstance(body, str | bytes) else json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
            **headers,
        )

    def feedback(self, service_id: str, items: list[dict[str, Any]], *, token: str | None = None):
        token = token or self.token(f"{BASE}/cds-services/{service_id}/feedback")
        return self.http.post(
            f"/cds-services/{service_id}/feedback",
            data=json.dumps({"feedback": items}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )


def new_key(kid: str = "ehr-es384-1") -> jwk.JWK:
    return jwk.JWK.generate(kty="EC", crv="P-384", kid=kid, alg="ES384", use="sig")


@pytest.fixture
def ehr_key() -> jwk.JWK:
    return new_key()


@pytest.fixture
def clinician(team_a):
    return ClinicianFactory(care_team=team_a)


@pytest.fixture
def registered(team_a, clinician, ehr_key):
    """The EHR of the committed request (fixtures/cds-hooks/patient-view-request.json)."""
    row = register_cds_client(
        name="Example EHR",
        issuer=EHR_ISSUER,
        jwks={"keys": [json.loads(ehr_key.export_public())]},
        care_teams=[team_a],
        allowed_origins=EHR_ORIGIN,
        mrn_system="urn:example:ehr:mrn",
        actor=System("tests"),
    )
    link_practitioner(client=row, reference=PRACTITIONER, user=clinician, actor=System("tests"))
    return row


@pytest.fixture
def ehr(registered, ehr_key) -> Ehr:
    return Ehr(registered, ehr_key)


@pytest.fixture
def maren(team_a):
    """The enrolment row FX-1001 as ClinAIOps knows her."""
    from datetime import date

    patient = PatientFactory(
        care_team=team_a,
        given_name="Maren",
        family_name="Okafor-Lind",
        birth_year=1956,
        sex="female",
    )
    patient.mrn, patient.birth_date = "FX-1001", date(1956, 4, 12)
    patient.save(update_fields=["mrn", "birth_date"])
    return patient


def patient_view_request(**changes) -> dict[str, Any]:
    body = fixture("patient-view-request.json")
    body["hookInstance"] = str(uuid.uuid4())
    return body | changes
