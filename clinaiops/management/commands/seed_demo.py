"""``manage.py seed_demo``: a deterministic demo cohort from the in-silico patient simulator.

Three clinicians in two care teams, N simulated patients with their demographics and a week of
wearable readings, one admin, one auditor. The same ``--seed`` always gives the same people,
names and physiology; reading dates are relative to today so the demo is always fresh.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import CareTeamMembership, Role, User
from accounts.services import add_team_member, create_care_team, create_clinician, create_user
from audit.models import Action
from audit.services import record_event
from clinicians.loop.visits import CADENCE, plan_next_visit
from core.authz import System
from models_ml.simulator.population import VirtualPatient, generate_cohort
from models_ml.simulator.readings import cohort_readings
from patients.ingestion import READINGS_IMPORT, record_readings
from patients.models import Patient
from patients.services import register_patient

SEED = System("seed_demo")  # the demo is set up by the system, not by a person
CARE_TEAMS = ("North clinic", "South clinic")
CLINICIANS = (
    ("clinician1", "Dr. Ada Okafor", "MD", 0),
    ("clinician2", "Nurse Ben Lindqvist", "RN", 0),
    ("clinician3", "Dr. Chen Wei", "MD", 1),
)
# Synthetic names; no real person is meant.
GIVEN_NAMES = (
    "Alex",
    "Blair",
    "Casey",
    "Dana",
    "Eli",
    "Frankie",
    "Gray",
    "Harper",
    "Indra",
    "Jun",
    "Kai",
    "Lee",
    "Morgan",
    "Noor",
    "Oda",
    "Parker",
    "Quinn",
    "Rae",
    "Sam",
    "Teo",
)
FAMILY_NAMES = (
    "Abara",
    "Brandt",
    "Costa",
    "Dubois",
    "Eklund",
    "Fujita",
    "Garcia",
    "Haddad",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Larsen",
    "Moreau",
    "Nakamura",
    "Okoye",
    "Petrov",
    "Quispe",
    "Rossi",
    "Silva",
    "Tanaka",
    "Uddin",
    "Varga",
    "Wright",
    "Yilmaz",
    "Zhou",
)
DEMO_DAYS = 7


@dataclass
class Logins:
    password: str
    clinicians: list[dict]
    patients: list[dict]
    admins: list[dict]
    auditors: list[dict]

    def as_json(self) -> dict:
        return {
            "clinicians": self.clinicians,
            "patients": self.patients,
            "admins": self.admins,
            "auditors": self.auditors,
            "password": self.password,
        }


class Command(BaseCommand):
    help = "Seed a deterministic demo cohort (simulated patients, clinicians, admin, auditor)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patients", type=int, default=60, help="number of patients (1-2000)")
        parser.add_argument("--password", default="clinaiops-demo", help="password for every login")
        parser.add_argument("--seed", type=int, default=2023, help="simulator seed")
        parser.add_argument("--json", action="store_true", help="print the logins as JSON only")
        parser.add_argument(
            "--model",
            action="store_true",
            help="also train a dose-response model on simulated data, run its gates and promote "
            "it as the demo admin when they pass (about two minutes), so that the demo's "
            "proposals come from a model with a model card",
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="when the database already has users, print their logins instead of failing",
        )

    def handle(self, *args, **options) -> None:
        count, password = options["patients"], options["password"]
        if not 1 <= count <= 2000:
            raise CommandError("--patients must be between 1 and 2000.")
        if len(password) < 8:
            raise CommandError("--password must be at least 8 characters.")
        if User.objects.exists():
            if not options["if_empty"]:
                raise CommandError(
                    "The database already has users; seed_demo only seeds an empty database "
                    "(use --if-empty to print the existing logins)."
                )
            logins = existing_logins(password)
        else:
            logins = seed(
                count=count,
                password=password,
                seed=options["seed"],
                model=options["model"],
                say=self.stdout.write,
            )
        if options["json"]:
            self.stdout.write(json.dumps(logins.as_json(), indent=2))
        else:
            self.stdout.write(render_logins(logins))


def seed(*, count: int, password: str, seed: int, model: bool = False, say=None) -> Logins:
    hashed = make_password(password)  # one hash for every demo login keeps seeding fast
    cohort = generate_cohort(count, seed=seed, id_prefix="demo")
    names = np.random.default_rng(seed).integers(
        0, [len(GIVEN_NAMES), len(FAMILY_NAMES)], size=(count, 2)
    )
    today = timezone.now().date()
    with transaction.atomic():
        teams = [create_care_team(name=name, actor=SEED) for name in CARE_TEAMS]
        for username, display_name, qualification, team_index in CLINICIANS:
            clinician = create_clinician(
                username=username,
                password=None,
                password_hash=hashed,
                display_name=display_name,
                qualification=qualification,
                actor=SEED,
            )
            add_team_member(care_team=teams[team_index], user=clinician, actor=SEED)
        admin = create_user(
            username="admin", password=None, password_hash=hashed, role=Role.ADMIN, actor=SEED
        )
        create_user(
            username="auditor", password=None, password_hash=hashed, role=Role.AUDITOR, actor=SEED
        )
        if model:
            # Before the readings: their evaluations then come from the model, not the protocol.
            demo_model(admin=admin, seed=seed, say=say or (lambda line: None))
        patients: list[Patient] = []
        for index, virtual in enumerate(cohort):
            user = create_user(
                username=f"patient{index + 1:03d}",
                password=None,
                password_hash=hashed,
                role=Role.PATIENT,
                actor=SEED,
            )
            patients.append(
                register_patient(
                    given_name=GIVEN_NAMES[names[index, 0]],
                    family_name=FAMILY_NAMES[names[index, 1]],
                    birth_year=today.year - virtual.demographics.age_years,
                    sex=virtual.demographics.sex,
                    race=virtual.demographics.race,
                    ethnicity=virtual.demographics.ethnicity,
                    care_team=teams[index % len(teams)],
                    user=user,
                    actor=SEED,
                )
            )
        readings = cohort_readings(
            cohort, start_date=today - timedelta(days=DEMO_DAYS), days=DEMO_DAYS, seed=seed
        )
        by_virtual_id = _readings_by_patient(cohort, patients, readings)
        stored = sum(
            record_readings(patient=patient, items=rows, actor=READINGS_IMPORT).accepted
            for patient, rows in by_virtual_id
        )
        # After the evaluations the readings queue on commit: each patient's next visit, as the
        # daily cadence run would propose it (the demo runs no Celery beat).
        transaction.on_commit(
            lambda: [plan_next_visit(patient.pk, actor=CADENCE) for patient in patients]
        )
        record_event(
            action=Action.CREATE,
            object_type="demo_cohort",
            detail={"patients": count, "readings": stored, "seed": seed},
            component="seed_demo",
        )
    return existing_logins(password)


def demo_model(*, admin, seed: int, say) -> str | None:
    """Train a candidate on simulated patients, run every gate, promote it as ``admin`` when
    they all pass. Returns the version in production, or None (the protocol serves)."""
    from models_ml import gate_evaluation, registry, training

    candidate = training.train_model(seed=seed, actor=admin)
    report = gate_evaluation.evaluate(candidate.version, actor=admin)
    if not report.passed:
        failed = ", ".join(result.name for result in report.failed())
        say(f"Demo model {candidate.version} failed gates ({failed}); the protocol serves.")
        return None
    registry.promote(candidate.version, actor=admin)
    say(f"Demo model {candidate.version} passed every gate and is in production.")
    return candidate.version


def _readings_by_patient(
    cohort: list[VirtualPatient], patients: list[Patient], readings
) -> list[tuple[Patient, list[object]]]:
    device_to_patient = {
        virtual.device_id: patient for virtual, patient in zip(cohort, patients, strict=True)
    }
    grouped: dict[int, list[object]] = {patient.pk: [] for patient in patients}
    for reading in readings:
        grouped[device_to_patient[reading["device_id"]].pk].append(reading)
    return [(patient, grouped[patient.pk]) for patient in patients]


def existing_logins(password: str) -> Logins:
    memberships = CareTeamMembership.objects.select_related("care_team", "user")
    team_of_clinician = {m.user.username: m.care_team.name for m in memberships}
    patients = Patient.objects.select_related("user").prefetch_related("care_teams")
    return Logins(
        password=password,
        clinicians=[
            {"username": username, "care_team": team, "totp_key": _demo_totp_key(username)}
            for username, team in sorted(team_of_clinician.items())
        ],
        patients=[
            {
                "username": patient.user.username,
                "patient_id": patient.pk,
                "care_team": ", ".join(team.name for team in patient.care_teams.all()),
            }
            for patient in patients.filter(user__isnull=False).order_by("user__username")
            if patient.user is not None  # as filtered: narrows the type
        ],
        admins=[{"username": u, "totp_key": _demo_totp_key(u)} for u in _usernames(Role.ADMIN)],
        auditors=[{"username": u, "totp_key": _demo_totp_key(u)} for u in _usernames(Role.AUDITOR)],
    )


def _demo_totp_key(username: str) -> str:
    """The demo staff member's authenticator key (base32), enrolled here if they have none:
    staff sign in with password and TOTP everywhere, and demo scripts need the key. Demo data
    only — a real account enrols its own authenticator and its key is never shown again."""
    user = User.objects.get(username=username)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="demo authenticator", confirmed=True)
    return base64.b32encode(device.bin_key).decode()


def _usernames(role: str) -> list[str]:
    return list(
        User.objects.filter(role=role).order_by("username").values_list("username", flat=True)
    )


def render_logins(logins: Logins) -> str:
    teams = sorted(
        {row["care_team"] for row in logins.clinicians}
        | {row["care_team"] for row in logins.patients}
    )
    lines = [f"Demo logins (password: {logins.password})", ""]
    for team in teams:
        clinicians = [row["username"] for row in logins.clinicians if row["care_team"] == team]
        panel = [row["username"] for row in logins.patients if row["care_team"] == team]
        lines.append(f"  {team}: clinicians {', '.join(clinicians) or '-'}")
        if panel:
            lines.append(f"    patients {panel[0]} … {panel[-1]} ({len(panel)})")
    lines.append(f"  admin: {', '.join(row['username'] for row in logins.admins)}")
    lines.append(f"  auditor: {', '.join(row['username'] for row in logins.auditors)}")
    lines.append("")
    lines.append(
        "Portal: /portal/ (clinicians, admin, auditor: the password, then a code from the"
        " authenticator key below)"
    )
    lines.append("Staff authenticator keys (demo only; codes: oathtool --totp -b KEY):")
    for row in [*logins.clinicians, *logins.admins, *logins.auditors]:
        lines.append(f"  {row['username']}: {row['totp_key']}")
    lines.append("")
    lines.append(
        "Phone app: authorization code + PKCE at /oauth/authorize/ (client_id clinaiops-app,"
        " redirect org.clinaiops.app:/oauth/callback); or POST /api/v1/auth/token/ with a"
        ' patient\'s username and the password (staff add "otp")'
    )
    lines.append(
        "SMART app: manage.py register_client --admin admin --kind smart_app --name NAME"
        ' --scopes "openid fhirUser launch/patient patient/*.rs" --redirect-uri URL; then'
        " launch against /fhir (discovery: /fhir/.well-known/smart-configuration)"
    )
    return "\n".join(lines) + "\n"
