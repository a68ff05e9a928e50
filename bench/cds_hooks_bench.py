"""CDS Hooks ``patient-view`` latency with prefetch (issue 15): one EHR call as the EHR makes
it — its JWT verified against the registered JWKS (and its ``jti`` stored), the request and
prefetch checked, the patient matched by MRN, the practitioner mapped, the read journalled, a
critical and a warning card built in words and stored for feedback — against a reference
measured in the same run on the same patient: the FHIR facade's ``GET /fhir/Patient/{id}`` by
the same clinician (bearer token, read journalled). Goal: p95 < 200 ms.

Both in-process through Django's test client (no socket: the difference between the two is
the application's), interleaved, on SQLite in a fresh data directory. The EHR's signing of
its JWTs is done beforehand and not timed (it is the EHR's cost, not ours).

``python -m bench.cds_hooks_bench [--quick]`` writes the ``cds_hooks`` section of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bench import embedded_django, machine_facts, percentile, row, write_rows, write_section

HOST = "localhost"
SERVICE = "clinaiops-patient-view"
ISSUER = "https://ehr.bench.example/"
PRACTITIONER = "Practitioner/example-clinician-1"  # as the committed request names them
REQUEST_FIXTURE = (
    Path(__file__).resolve().parents[1] / "fixtures/cds-hooks/patient-view-request.json"
)


def _world():
    """A care team, its clinician (known to the EHR), the fixture's patient with a week of
    readings, bounds, a proposal waiting for review and an open crisis; the EHR registered."""
    from django.db import transaction
    from django.utils import timezone
    from jwcrypto import jwk

    from accounts.models import CareTeam, CareTeamMembership, ClinicianProfile, Role, User
    from clinaiops.cds_hooks.registration import link_practitioner, register_cds_client
    from clinicians.models import Alert, AlertKind, Recommendation, SafetyBounds
    from core.authz import System
    from patients.models import CareTeamAssignment, Device, Patient, Prescription, Reading

    now = timezone.now()
    key = jwk.JWK.generate(kty="EC", crv="P-384", kid="bench-1", alg="ES384", use="sig")
    with transaction.atomic():
        team = CareTeam.objects.create(name="Bench clinic")
        clinician = User.objects.create_user(username="bench-doctor", role=Role.CLINICIAN)
        ClinicianProfile.objects.create(user=clinician, display_name="Dr Bench")
        CareTeamMembership.objects.create(care_team=team, user=clinician)
        patient = Patient.objects.create(
            given_name="Maren",
            family_name="Okafor-Lind",
            birth_year=1956,
            birth_date=date(1956, 4, 12),
            sex="female",
            mrn="FX-1001",
        )
        CareTeamAssignment.objects.create(patient=patient, care_team=team)
        Prescription.objects.create(
            patient=patient,
            medication="amlodipine",
            dose_mg=Decimal("2.5"),
            started_at=now - timedelta(days=30),
            source="import",
        )
        SafetyBounds.objects.create(
            patient=patient,
            medication="amlodipine",
            min_dose_mg=Decimal("2.5"),
            max_dose_mg=Decimal("10"),
            max_auto_step_mg=Decimal("2.5"),
            target_systolic_mmhg=130,
            target_diastolic_mmhg=80,
            set_by=clinician,
            confirmed_by=clinician,
            confirmed_at=now,
        )
        device = Device.objects.create(patient=patient, device_id="cuff-1")
        Reading.objects.bulk_create(
            Reading(
                patient=patient,
                device=device,
                client_id=f"bench-{i}",
                reading_type="blood_pressure",
                systolic_mmhg=148,
                diastolic_mmhg=92,
                measured_at=now - timedelta(hours=11 * i + 1),
                received_at=now,
            )
            for i in range(14)
        )
        Recommendation.objects.create(
            patient=patient,
            kind="titrate",
            medication="amlodipine",
            current_dose_mg=Decimal("2.5"),
            proposed_dose_mg=Decimal("5"),
            tier="clinician",
            status="pending_review",
            reason="Home systolic above target for 7 days",
            model_version="bench-model-1",
            expected_effect={"systolic_mmhg": -6.5, "diastolic_mmhg": -3.0, "uncertainty_mmhg": 4},
            explanation=[
                {
                    "key": "mean_systolic_7d",
                    "feature": "Home systolic, 7-day mean",
                    "value": 148,
                    "unit": "mmHg",
                    "shap_mmhg": -4.2,
                },
                {
                    "key": "dose_amlodipine_mg",
                    "feature": "Amlodipine dose",
                    "value": 2.5,
                    "unit": "mg",
                    "shap_mmhg": -1.3,
                },
            ],
            evidence={"mean_systolic_7d": 148, "mean_diastolic_7d": 92, "bp_count_7d": 14},
            created_at=now - timedelta(hours=2),
        )
        Alert.objects.create(
            patient=patient,
            kind=AlertKind.CRISIS,
            message="184/122 mmHg at 07:58, confirmed by a second reading",
            opened_at=now - timedelta(minutes=20),
        )
    client_row = register_cds_client(
        name="Bench EHR",
        issuer=ISSUER,
        jwks={"keys": [json.loads(key.export_public())]},
        care_teams=[team],
        mrn_system="urn:example:ehr:mrn",
        actor=System("bench"),
    )
    link_practitioner(
        client=client_row, reference=PRACTITIONER, user=clinician, actor=System("bench")
    )
    return key, clinician, patient


def _jwt(key) -> str:
    from jwcrypto import jwt

    now = int(time.time())
    token = jwt.JWT(
        header={"alg": "ES384", "typ": "JWT", "kid": key.kid},
        claims={
            "iss": ISSUER,
            "aud": f"http://{HOST}/cds-services/{SERVICE}",
            "exp": now + 240,
            "iat": now,
            "jti": str(uuid.uuid4()),
        },
    )
    token.make_signed_token(key)
    return token.serialize()


def run(quick: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="clinaiops-cds-bench-") as data_dir:
        # The reference's reads are not throttled.
        embedded_django(data_dir, THROTTLE_USER="1000000/minute")
        from django.test import Client

        from accounts.identity.tokens import issue

        key, clinician, patient = _world()
        samples = 60 if quick else 300
        body = json.loads(REQUEST_FIXTURE.read_text())
        access = issue(
            clinician, amr=["pwd", "otp"], token_endpoint=f"http://{HOST}/api/v1/auth/token/"
        )["access_token"]
        http = Client(HTTP_HOST=HOST)
        tokens = [_jwt(key) for _ in range(samples + 5)]
        bodies = [json.dumps(body | {"hookInstance": str(uuid.uuid4())}) for _ in tokens]

        def hook(index: int) -> None:
            response = http.post(
                f"/cds-services/{SERVICE}",
                data=bodies[index],
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {tokens[index]}",
            )
            assert response.status_code == 200, response.content
            assert len(response.json()["cards"]) == 2

        def fhir_read() -> None:
            response = http.get(
                f"/fhir/Patient/{patient.pk}",
                HTTP_AUTHORIZATION=f"Bearer {access}",
                HTTP_ACCEPT="application/fhir+json",
            )
            assert response.status_code == 200, response.content

        for index in range(5):  # warm: imports, query plans, the key set parsed once
            hook(samples + index)
            fhir_read()
        hook_ms, read_ms = [], []
        for index in range(samples):  # interleaved: the same machine state for both
            started = time.perf_counter()
            hook(index)
            hook_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            fhir_read()
            read_ms.append((time.perf_counter() - started) * 1000)
    return {
        "samples": samples,
        "hook_p50": statistics.median(hook_ms),
        "hook_p95": percentile(hook_ms, 0.95),
        "read_p50": statistics.median(read_ms),
        "read_p95": percentile(read_ms, 0.95),
        "load": os.getloadavg()[0],
    }


def render(result: dict, command: str) -> str:
    facts = machine_facts()
    goal = "met" if result["hook_p95"] < 200 else "**not met**"
    ratio = result["hook_p95"] / result["read_p95"]
    hook = f"{result['hook_p50']:.1f} | {result['hook_p95']:.1f}"
    read = f"{result['read_p50']:.1f} | {result['read_p95']:.1f}"
    return f"""## CDS Hooks `patient-view` latency (issue 15)

- Command: `{command}`
- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {facts["nproc"]} cores ({facts["cpu"]}),
  {facts["os"]}, Python {facts["python"]}; SQLite; 1-minute load average after {result["load"]:.2f}.
- In-process (Django test client, no socket), {result["samples"]} interleaved samples each. The
  hook: the committed request (`fixtures/cds-hooks/patient-view-request.json`, patient and
  blood-pressure prefetch) with a fresh EHR-signed ES384 JWT per call (signed beforehand, not
  timed) → JWT verified against the stored JWKS and its `jti` stored, prefetch checked, MRN
  matched, practitioner mapped, read journalled, 2 cards (a crisis, a proposal with its
  suggestion) built and stored. The reference: `GET /fhir/Patient/{{id}}` by the same clinician
  with a bearer token (read journalled).

| row | p50 ms | p95 ms | goal |
|---|---:|---:|---|
| CDS Hooks `patient-view` p95 (goal < 200 ms with prefetch) | {hook} | < 200 ms: {goal} |
| reference: FHIR `GET /fhir/Patient/{{id}}` | {read} | hook ÷ reference, p95: {ratio:.1f}× |
"""


def result_rows(result: dict) -> list[dict]:
    """The rows of results.json: the hook's p95 against the FHIR read's, same run."""
    return [
        row(
            "CDS Hooks `patient-view` p95 (with prefetch)",
            round(result["hook_p95"], 1),
            "ms",
            reference=round(result["read_p95"], 1),
            reference_what="`GET /fhir/Patient/{id}` p95, same clinician, interleaved",
            goal="< 200 ms",
            met=result["hook_p95"] < 200,
            detail={"samples": result["samples"], "p50_ms": round(result["hook_p50"], 1)},
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    print(result)
    command = shlex.join(
        ["python", "-m", "bench.cds_hooks_bench", *(argv if argv is not None else sys.argv[1:])]
    )
    write_section("cds_hooks", render(result, command))
    write_rows("cds_hooks", result_rows(result), command=command)


if __name__ == "__main__":
    main()
