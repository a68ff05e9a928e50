"""Set up the load run's clinic in its own database: ``python -m bench.load.setup_clinic``.

Run by the harness as a child process with the stack's environment (PostgreSQL, Redis). Builds
through the product's services, as ``seed_demo`` does: two care teams with a clinician each, an
auditor, a model owner (and, with ``--model``, the demo model trained, gated and promoted by
them), then ``--patients`` patients per cohort enrolled with a regimen and clinician-confirmed
bounds (``seed_demo._enrol_course``) and ``--history-hours`` of home readings recorded through
ingestion (heart rate every minute, blood pressure every 30 minutes, hourly steps). Access
tokens are issued directly (``accounts.identity.tokens.issue``, the token endpoint's own
machinery) instead of signing in N times: a password hash per login would take minutes.

Writes JSON to ``--out``: tokens per cohort, with each patient's id and baseline for the phones.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import timedelta


def history(patient_key: str, baseline: tuple[float, float, float], start, end) -> list[dict]:
    """Home readings of one patient between ``start`` and ``end`` (aware datetimes)."""
    rng = random.Random(patient_key)
    systolic, diastolic, heart = baseline
    items: list[dict] = []
    minute = 0
    moment = start
    while moment < end:
        items.append(
            {
                "client_id": f"{patient_key}-hist-hr-{minute}",
                "type": "heart_rate",
                "value": round(heart + rng.gauss(0, 6)),
                "unit": "/min",
                "measured_at": moment.isoformat(),
                "device_id": f"{patient_key}-watch",
            }
        )
        if minute % 30 == 0:
            items.append(
                {
                    "client_id": f"{patient_key}-hist-bp-{minute}",
                    "type": "blood_pressure",
                    "systolic": min(170, round(systolic + rng.gauss(0, 8))),
                    "diastolic": min(105, round(diastolic + rng.gauss(0, 5))),
                    "unit": "mm[Hg]",
                    "measured_at": moment.isoformat(),
                    "device_id": f"{patient_key}-watch",
                }
            )
        if minute % 60 == 0:
            items.append(
                {
                    "client_id": f"{patient_key}-hist-steps-{minute}",
                    "type": "steps",
                    "value": rng.randint(0, 900),
                    "unit": "{steps}",
                    "measured_at": moment.isoformat(),
                    "device_id": f"{patient_key}-watch",
                }
            )
        minute += 1
        moment += timedelta(minutes=1)
    return items


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, required=True, help="phones of the measure phase")
    parser.add_argument("--check-patients", type=int, required=True, help="phones of the check")
    parser.add_argument("--history-hours", type=float, default=24.0)
    parser.add_argument("--history-end", required=True, help="ISO time the history ends at")
    parser.add_argument("--model", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import django

    django.setup()
    from datetime import datetime

    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from accounts.identity.tokens import issue
    from accounts.models import Role
    from accounts.services import add_team_member, create_care_team, create_clinician, create_user
    from clinaiops.management.commands.seed_demo import _enrol_course, _zone, demo_model
    from core.authz import System
    from models_ml.simulator.population import generate_cohort
    from patients.ingestion import READINGS_IMPORT, record_readings
    from patients.services import register_patient

    started = time.monotonic()
    actor = System("bench.load")
    hashed = make_password("load-bench-password")
    endpoint = "http://127.0.0.1/api/v1/auth/token/"
    teams = [create_care_team(name=f"Load team {k + 1}", actor=actor) for k in range(2)]
    clinicians = []
    for k, team in enumerate(teams):
        clinician = create_clinician(
            username=f"load-clinician-{k + 1}",
            password=None,
            password_hash=hashed,
            display_name=f"Load clinician {k + 1}",
            actor=actor,
        )
        add_team_member(care_team=team, user=clinician, is_on_call=True, actor=actor)
        clinicians.append(clinician)
    auditor = create_user(
        username="load-auditor", password=None, password_hash=hashed, role=Role.AUDITOR, actor=actor
    )
    admin = create_user(
        username="load-admin", password=None, password_hash=hashed, role=Role.ADMIN, actor=actor
    )
    owner = create_user(
        username="load-modelowner",
        password=None,
        password_hash=hashed,
        role=Role.MODEL_OWNER,
        actor=actor,
    )
    model_version = None
    if args.model:
        model_version = demo_model(owner=owner, seed=2023, say=lambda line: print(line))
    history_end = datetime.fromisoformat(args.history_end)
    history_start = history_end - timedelta(hours=args.history_hours)
    sizes = (args.patients, args.check_patients)
    total = sum(sizes)
    virtuals = generate_cohort(total, seed=2023, id_prefix="load")
    cohorts: list[list[dict]] = [[], []]
    stored = 0
    for index, virtual in enumerate(virtuals):
        with transaction.atomic():
            user = create_user(
                username=f"load-patient-{index:05d}",
                password=None,
                password_hash=hashed,
                role=Role.PATIENT,
                actor=actor,
            )
            patient = register_patient(
                given_name="Load",
                family_name=f"Patient {index}",
                birth_year=2026 - virtual.demographics.age_years,
                sex=virtual.demographics.sex,
                race=virtual.demographics.race,
                ethnicity=virtual.demographics.ethnicity,
                care_team=teams[index % 2],
                user=user,
                mrn=f"LOAD-{index:06d}",
                time_zone=_zone(virtual.utc_offset_hours),
                actor=actor,
            )
            # Half the patients may take a step on their own, half send every change to review.
            _enrol_course(patient, virtual, index, admin=admin, clinician=clinicians[index % 2])
        baseline = (
            min(165.0, virtual.baseline_systolic_mmhg - 5),
            min(100.0, virtual.baseline_diastolic_mmhg - 3),
            virtual.resting_heart_rate_bpm,
        )
        key = f"p{index}"
        items: list[object] = list(history(key, baseline, history_start, history_end))
        for offset in range(0, len(items), 5000):
            stored += record_readings(
                patient=patient, items=items[offset : offset + 5000], actor=READINGS_IMPORT
            ).accepted
        token = issue(user, amr=["pwd"], token_endpoint=endpoint)["access_token"]
        cohorts[0 if index < sizes[0] else 1].append(
            {"patient": patient.pk, "key": key, "token": token, "baseline": baseline}
        )
        if (index + 1) % 100 == 0:
            print(f"{index + 1}/{total} patients, {time.monotonic() - started:.0f} s", flush=True)
    staff = {
        "clinicians": [
            issue(c, amr=["pwd", "otp"], token_endpoint=endpoint)["access_token"]
            for c in clinicians
        ],
        "auditor": issue(auditor, amr=["pwd", "otp"], token_endpoint=endpoint)["access_token"],
    }
    with open(args.out, "w") as handle:
        json.dump(
            {
                "cohorts": cohorts,
                "staff": staff,
                "model_version": model_version,
                "history_readings": stored,
                "history_hours": args.history_hours,
                "setup_seconds": round(time.monotonic() - started, 1),
            },
            handle,
        )
    print(f"set-up done: {total} patients, {stored} readings, {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
