"""Observations per second through a FHIR ``transaction`` Bundle (issue 15) against the mobile
API, same run, same machine, same readings: ``POST /fhir/`` with N Observation entries vs
``POST /api/v1/readings/`` with the same N readings.

Both go through the same ingestion (``patients.ingestion.record_readings``: validation,
de-duplication, bulk insert, the batch's audit event, the evaluation once it commits); the FHIR
side adds parsing each entry as an R4 Observation (fhir.resources), its FHIR checks and the
``transaction-response`` Bundle. The difference between the two rows is the FHIR facade's cost.

Workload: one simulated patient's watch (``bench.ingest_bench.simulated_items``, fixed seed;
hourly heart rate and steps, a few blood pressures a day), only valid readings with distinct
``client_id``\\ s so that both sides store every one. Each repeat posts the same batches for two
fresh patients (one per side), each batch once per side, interleaved, so that a growing table
or a busy neighbour weighs on both alike; Observations/s counts readings stored. Both in-process
through Django's test client (no socket), bearer tokens, SQLite in a fresh data directory, the
embedded stack (evaluation runs eagerly after each batch). After the run the bench checks that
both sides stored the same values.

``python -m bench.fhir_ingest_bench [--quick]`` writes the ``fhir_ingest`` section of
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
from datetime import UTC, datetime

from bench import embedded_django, machine_facts, row, write_rows, write_section

HOST = "localhost"
BATCH = 1000  # readings per request, each side
FULL = {"batches": 5, "repeats": 5}
QUICK = {"batches": 2, "repeats": 3}
LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"
CLIENT_ID_SYSTEM = "urn:clinaiops:reading-client-id"


def readings(count: int) -> list[dict]:
    """``count`` valid readings with distinct client ids, in the mobile API's shape."""
    from pydantic import ValidationError

    from bench.ingest_bench import simulated_items
    from patients.ingestion import READING_ADAPTER

    kept, seen = [], set()
    for item in simulated_items(count + count // 5):
        try:
            READING_ADAPTER.validate_python(item)
        except ValidationError:
            continue
        if item["client_id"] not in seen:
            seen.add(item["client_id"])
            kept.append(item)
        if len(kept) == count:
            return kept
    raise RuntimeError(f"the simulator gave {len(kept)} valid readings, {count} needed")


def _quantity(value: int, unit: str) -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def observation(item: dict, patient_id: int) -> dict:
    """The reading as the Observation an EHR or a FHIR-speaking app would post."""
    resource: dict = {
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{"system": CLIENT_ID_SYSTEM, "value": item["client_id"]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": item["measured_at"],
        "device": {"identifier": {"value": item["device_id"]}},
    }
    if item["type"] == "blood_pressure":
        resource["code"] = {"coding": [{"system": LOINC, "code": "85354-9"}]}
        resource["component"] = [
            {
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": _quantity(item[name], "mm[Hg]"),
            }
            for code, name in (("8480-6", "systolic"), ("8462-4", "diastolic"))
        ]
    else:
        code = "8867-4" if item["type"] == "heart_rate" else "55423-8"
        resource["code"] = {"coding": [{"system": LOINC, "code": code}]}
        resource["valueQuantity"] = _quantity(item["value"], item["unit"])
    return resource


def transaction_body(items: list[dict], patient_id: int) -> str:
    return json.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{index:012d}",
                    "resource": observation(item, patient_id),
                    "request": {"method": "POST", "url": "Observation"},
                }
                for index, item in enumerate(items)
            ],
        }
    )


def _patient_with_token(number: int):
    from accounts.identity.tokens import issue
    from accounts.models import Role, User
    from patients.models import Patient

    user = User.objects.create_user(username=f"bench-patient-{number}", role=Role.PATIENT)
    patient = Patient.objects.create(
        user=user,
        given_name="Bench",
        family_name=f"Patient {number}",
        birth_year=1958,
        sex="female",
    )
    token = issue(user, amr=["pwd"], token_endpoint=f"http://{HOST}/api/v1/auth/token/")
    return patient, token["access_token"]


def _stored(patient) -> list[tuple]:
    from patients.models import Reading

    return sorted(
        Reading.objects.filter(patient=patient).values_list(
            "client_id", "reading_type", "systolic_mmhg", "diastolic_mmhg", "value", "measured_at"
        )
    )


def run(quick: bool = False) -> dict:
    plan = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="clinaiops-fhir-ingest-bench-") as data_dir:
        embedded_django(data_dir, THROTTLE_USER="1000000/minute")
        from django.test import Client

        http = Client(HTTP_HOST=HOST)
        workload = readings(BATCH * plan["batches"])
        batches = [workload[i : i + BATCH] for i in range(0, len(workload), BATCH)]
        fhir_rates, api_rates, ratios = [], [], []
        for repeat in range(plan["repeats"] + 1):  # the first repeat warms up, not counted
            fhir_patient, fhir_token = _patient_with_token(2 * repeat)
            api_patient, api_token = _patient_with_token(2 * repeat + 1)
            fhir_seconds = api_seconds = 0.0
            for batch in batches:
                body = transaction_body(
                    [item | {"device_id": f"fhir-{fhir_patient.pk}"} for item in batch],
                    fhir_patient.pk,
                )
                started = time.perf_counter()
                response = http.post(
                    "/fhir/",
                    data=body,
                    content_type="application/fhir+json",
                    HTTP_ACCEPT="application/fhir+json",
                    HTTP_AUTHORIZATION=f"Bearer {fhir_token}",
                )
                fhir_seconds += time.perf_counter() - started
                assert response.status_code == 200, response.content[:500]
                assert len(response.json()["entry"]) == len(batch)

                body = json.dumps(
                    {"readings": [item | {"device_id": f"api-{api_patient.pk}"} for item in batch]}
                )
                started = time.perf_counter()
                response = http.post(
                    "/api/v1/readings/",
                    data=body,
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {api_token}",
                )
                api_seconds += time.perf_counter() - started
                assert response.status_code in (200, 201), response.content[:500]
                assert response.json()["accepted"] == len(batch), response.content[:500]
            fhir_rows, api_rows = _stored(fhir_patient), _stored(api_patient)
            assert fhir_rows == api_rows and len(fhir_rows) == len(workload)
            if repeat == 0:
                continue
            fhir_rates.append(len(workload) / fhir_seconds)
            api_rates.append(len(workload) / api_seconds)
            ratios.append(fhir_rates[-1] / api_rates[-1])
            print(
                f"repeat {repeat}: FHIR {fhir_rates[-1]:,.0f}/s, API {api_rates[-1]:,.0f}/s",
                flush=True,
            )
    return {
        "batch": BATCH,
        "batches": plan["batches"],
        "repeats": plan["repeats"],
        "fhir": fhir_rates,
        "api": api_rates,
        "ratios": ratios,
        "load": os.getloadavg()[0],
    }


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def render(result: dict, command: str) -> str:
    facts = machine_facts()
    per_repeat = result["batch"] * result["batches"]
    ratios = result["ratios"]
    fhir_what = (
        f"{result['batch']:,} Observation entries: R4 parse and FHIR checks of each, then the "
        "ingestion, `transaction-response`"
    )
    api_what = f"the same {result['batch']:,} readings as items: the ingestion"
    ratio = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
    return f"""## FHIR transaction Bundle vs mobile API: Observations/s (issue 15)

- Command: `{command}`
- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {facts["nproc"]} cores ({facts["cpu"]}),
  {facts["os"]}, Python {facts["python"]}; SQLite; 1-minute load average after {result["load"]:.2f}
  (a shared machine: read the ratio, measured within each repeat, rather than the rates).
- In-process (Django test client, no socket), bearer tokens, embedded stack. Each repeat posts
  the same {per_repeat:,} readings of a simulated watch (heart rate, steps, blood pressure; all
  valid, distinct identifiers) in {result["batches"]} requests of {result["batch"]:,} to each side,
  interleaved, for two fresh patients; median of {result["repeats"]} repeats after a warm-up
  (min–max). Both sides stored the same rows (checked).

| row | what is timed | Observations/s, median (min–max) |
|---|---|---:|
| FHIR `POST /fhir/` transaction Bundle | {fhir_what} | {_spread(result["fhir"])} |
| mobile API `POST /api/v1/readings/` | {api_what} | {_spread(result["api"])} |
| ratio FHIR ÷ API (within each repeat) | | {ratio} |
"""


def result_rows(result: dict) -> list[dict]:
    """The rows of results.json: FHIR Observations/s against the mobile API's, same run; the
    ratio is the median of the ratios within each repeat (as the section's). No goal is set."""
    ratios = result["ratios"]
    return [
        row(
            "FHIR transaction Bundle: Observations/s stored",
            round(statistics.median(result["fhir"])),
            "Observations/s",
            reference=round(statistics.median(result["api"])),
            reference_what="mobile API `POST /api/v1/readings/`, same readings, interleaved",
            ratio=round(statistics.median(ratios), 3),
            detail={
                "ratio_within_a_repeat": [round(min(ratios), 3), round(max(ratios), 3)],
                "repeats": result["repeats"],
                "readings_per_repeat": result["batch"] * result["batches"],
            },
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    print(result)
    command = shlex.join(
        ["python", "-m", "bench.fhir_ingest_bench", *(argv if argv is not None else sys.argv[1:])]
    )
    write_section("fhir_ingest", render(result, command))
    write_rows("fhir_ingest", result_rows(result), command=command)


if __name__ == "__main__":
    main()
