"""``manage.py seed_demo``: a deterministic demo clinic from the in-silico patient simulator.

Three clinicians in two care teams, one admin, one auditor, one model owner, and N simulated
patients enrolled as a clinic enrols them: demographics, an MRN, a time zone, the regimen they
arrive with and safety bounds. The bounds are confirmed by a clinician of the team — except for
every tenth patient, whose bounds the admin entered and no clinician has confirmed yet (the
"needs set-up" case). Half the confirmed bounds let the patient take a dose step on their own,
half send every change to review, so the demo has proposals in all three tiers.

Nothing is written around the product's loops: the simulator's week of readings and dose
intakes goes through ingestion, the evaluation runs the safety rules, the model (or the
protocol), SHAP and the gate; a few patients acknowledge their proposal on the phone and a
clinician decides a few reviews (signed with the demo password); the safety rules open the
crisis, hypotension and stale-data alerts from readings that call for them. The same ``--seed``
always gives the same people, names and physiology; dates are relative to today.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

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
from clinicians.services import propose_safety_bounds, set_safety_bounds
from core.authz import System
from models_ml.simulator.population import VirtualPatient, generate_cohort
from models_ml.simulator.readings import cohort_readings
from patients.formulary import FORMULARY
from patients.ingestion import INTAKES_IMPORT, READINGS_IMPORT, record_intakes, record_readings
from patients.models import Patient
from patients.services import register_patient, start_regimen

logger = logging.getLogger(__name__)
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
    model_owners: list[dict]

    def as_json(self) -> dict:
        return {
            "clinicians": self.clinicians,
            "patients": self.patients,
            "admins": self.admins,
            "auditors": self.auditors,
            "model_owners": self.model_owners,
            "password": self.password,
        }


class Command(BaseCommand):
    help = (
        "Seed a deterministic demo clinic (simulated patients with regimens and bounds, "
        "clinicians, admin, auditor, model owner) by running the product's own loops."
    )

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
        on_call_named: set[int] = set()
        for username, display_name, qualification, team_index in CLINICIANS:
            clinician = create_clinician(
                username=username,
                password=None,
                password_hash=hashed,
                display_name=display_name,
                qualification=qualification,
                actor=SEED,
            )
            # The first clinician of each team is on call: unacknowledged urgent alerts escalate
            # to them (the default ladder: the team at 5 minutes, the on-call at 15).
            add_team_member(
                care_team=teams[team_index],
                user=clinician,
                is_on_call=team_index not in on_call_named,
                actor=SEED,
            )
            on_call_named.add(team_index)
        admin = create_user(
            username="admin", password=None, password_hash=hashed, role=Role.ADMIN, actor=SEED
        )
        create_user(
            username="auditor", password=None, password_hash=hashed, role=Role.AUDITOR, actor=SEED
        )
        owner = create_user(
            username="modelowner",
            password=None,
            password_hash=hashed,
            role=Role.MODEL_OWNER,
            actor=SEED,
        )
        if model:
            # Before the readings: their evaluations then come from the model, not the protocol.
            demo_model(owner=owner, seed=seed, say=say or (lambda line: None))
        patients: list[Patient] = []
        for index, virtual in enumerate(cohort):
            user = create_user(
                username=f"patient{index + 1:03d}",
                password=None,
                password_hash=hashed,
                role=Role.PATIENT,
                actor=SEED,
            )
            patient = register_patient(
                given_name=GIVEN_NAMES[names[index, 0]],
                family_name=FAMILY_NAMES[names[index, 1]],
                birth_year=today.year - virtual.demographics.age_years,
                sex=virtual.demographics.sex,
                race=virtual.demographics.race,
                ethnicity=virtual.demographics.ethnicity,
                care_team=teams[index % len(teams)],
                user=user,
                mrn=f"DEMO-{index + 1:05d}",
                time_zone=_zone(virtual.utc_offset_hours),
                actor=SEED,
            )
            patients.append(patient)
            _enrol_course(patient, virtual, index, admin=admin, clinician=_team_lead(teams, index))
        readings = cohort_readings(
            cohort, start_date=today - timedelta(days=DEMO_DAYS), days=DEMO_DAYS, seed=seed
        )
        by_virtual_id = _readings_by_patient(cohort, patients, readings)
        intakes = _intakes_by_patient(cohort, patients, today, seed)
        stored = 0
        for (patient, rows), (_, taken) in zip(by_virtual_id, intakes, strict=True):
            if taken:
                record_intakes(patient=patient, items=taken, actor=INTAKES_IMPORT)
            stored += record_readings(
                patient=patient, items=_with_scenario(patient, rows, today), actor=READINGS_IMPORT
            ).accepted
        # After the evaluations the readings queue on commit: each patient's next visit, as the
        # daily cadence run would propose it (the demo runs no Celery beat); then the people in
        # the loop act on a few of the proposals.
        transaction.on_commit(
            lambda: [plan_next_visit(patient.pk, actor=CADENCE) for patient in patients]
        )
        transaction.on_commit(lambda: _people_act(patients, password))
        record_event(
            action=Action.CREATE,
            object_type="demo_cohort",
            detail={"patients": count, "readings": stored, "seed": seed},
            component="seed_demo",
        )
    return existing_logins(password)


def demo_model(*, owner, seed: int, say) -> str | None:
    """Train a candidate on simulated patients, run every gate, promote it as the model owner
    when they all pass. Returns the version in production, or None (the protocol serves)."""
    from models_ml import gate_evaluation, registry, training

    candidate = training.train_model(seed=seed, actor=owner)
    report = gate_evaluation.evaluate(candidate.version, actor=owner)
    if not report.passed:
        failed = ", ".join(result.name for result in report.failed())
        say(f"Demo model {candidate.version} failed gates ({failed}); the protocol serves.")
        return None
    registry.promote(candidate.version, actor=owner)
    say(f"Demo model {candidate.version} passed every gate and is in production.")
    return candidate.version


# Every tenth patient's bounds were entered by the admin and await a clinician's confirmation.
PENDING_EVERY = 10
# Scenario patients (by index): readings that call for each kind of safety alert.
CRISIS, HYPOTENSION, STALE = 0, 1, 2


def _zone(utc_offset_hours: int) -> str:
    """The simulator's fixed offset as an IANA zone (``Etc/GMT-1`` is UTC+1: POSIX signs)."""
    if utc_offset_hours == 0:
        return "UTC"
    return f"Etc/GMT{'-' if utc_offset_hours > 0 else '+'}{abs(utc_offset_hours)}"


def _team_lead(teams, index: int) -> User:
    team = teams[index % len(teams)]
    return team.memberships.select_related("user").order_by("pk").first().user


def _enrol_course(patient: Patient, virtual: VirtualPatient, index: int, *, admin, clinician):
    """The regimen the patient arrives with (taken for three months) and the bounds for every
    drug: entered by the admin and pending for every tenth patient, set by a clinician of the
    team otherwise — a generous step for even patients (a small change, or starting amlodipine,
    reaches the phone), no step for odd ones (every change is reviewed)."""
    regimen = dict(virtual.initial_regimen)
    if regimen:
        start_regimen(
            patient=patient,
            regimen=regimen,
            since=timezone.localdate() - timedelta(days=90),
            actor=SEED,
        )
    pending = index % PENDING_EVERY == PENDING_EVERY - 1
    for drug in FORMULARY.values():
        (propose_safety_bounds if pending else set_safety_bounds)(
            patient=patient,
            medication=drug.name,
            actor=admin if pending else clinician,
            min_dose_mg=Decimal(0),
            max_dose_mg=drug.max_dose_mg,
            # The generous step is the absolute limit (``clinicians.bounds_policy``), with a reason.
            max_auto_step_mg=drug.max_dose_mg / 2 if index % 2 == 0 else Decimal(0),
            reason="demo cohort: generous bounds show the patient tier" if index % 2 == 0 else "",
            # The generous half may also start the first-line drug from the app.
            may_start=index % 2 == 0 and drug.name == "amlodipine",
            target_systolic_mmhg=130,
            target_diastolic_mmhg=80,
        )


def _intakes_by_patient(cohort, patients, today, seed: int):
    """The simulator's dose intakes of the same week, for the patients' regimens."""
    from models_ml.simulator.readings import simulate_trace

    trace = simulate_trace(
        cohort, start_date=today - timedelta(days=DEMO_DAYS), days=DEMO_DAYS, seed=seed
    )
    now = timezone.now()
    return [
        (patient, [_jsonable(i) for i in trace.intakes(index) if i["taken_at"] <= now])
        for index, patient in enumerate(patients)
    ]


def _jsonable(item: dict) -> dict:
    return {
        key: value.isoformat() if hasattr(value, "isoformat") else value
        for key, value in item.items()
    }


def _with_scenario(patient: Patient, rows: list[Any], today) -> list[object]:
    """Make the first three patients the alert scenarios: a confirmed crisis this morning,
    sustained hypotension, and a cuff that stopped uploading three days ago."""
    index = int(patient.mrn.rsplit("-", 1)[1]) - 1 if patient.mrn else -1
    now = timezone.now()
    if index == STALE:
        return [r for r in rows if _measured(r) < now - timedelta(days=3)]
    pressures = {CRISIS: [(194, 124), (191, 122)], HYPOTENSION: [(84, 52), (86, 54), (83, 50)]}
    if index not in pressures:
        return rows
    extra = [
        {
            "client_id": f"{patient.mrn}-scenario-{n}",
            "type": "blood_pressure",
            "systolic": systolic,
            "diastolic": diastolic,
            "unit": "mm[Hg]",
            "measured_at": (now - timedelta(minutes=30 - 5 * n)).isoformat(),
            "device_id": rows[0]["device_id"] if rows else "demo-cuff",
        }
        for n, (systolic, diastolic) in enumerate(pressures[index])
    ]
    return [*rows, *extra]


def _measured(row: dict):
    from datetime import datetime

    value = row["measured_at"]
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _people_act(patients: list[Patient], password: str) -> None:
    """The loop's people act on some of what the evaluation proposed: a few patients
    acknowledge their change on the phone; the team's clinician approves one review and
    rejects another with a note for the patient. The rest stay open, so every tier shows."""
    from clinicians.decisions import acknowledge_recommendation, decide_recommendation
    from clinicians.models import Recommendation, RecommendationStatus

    open_recs = Recommendation.objects.filter(
        patient__in=patients,
        status__in=[RecommendationStatus.PENDING_REVIEW, RecommendationStatus.DELIVERED],
    ).select_related("patient__user")
    delivered = [r for r in open_recs if r.tier == "patient" and r.proposed_dose_mg is not None]
    for rec in delivered[: max(1, len(delivered) // 3)]:
        if rec.patient.user is None:
            continue
        try:
            acknowledge_recommendation(recommendation=rec, actor=rec.patient.user)
        except Exception as error:  # the demo shows what the product refused, nothing breaks
            logger.info("demo acknowledgement refused: %s", error)
    from clinicians.loop.goals import set_goal
    from clinicians.loop.messages import send_message

    for patient in patients[3:6]:  # a few shared goals and a question from the patient
        lead = User.objects.filter(
            care_team_memberships__care_team__assignments__patient=patient
        ).first()
        try:
            if lead is not None:
                set_goal(patient=patient, actor=lead, kind="blood_pressure")
            if patient.user is not None:
                send_message(
                    patient=patient,
                    actor=patient.user,
                    body="My evening readings are higher than my morning ones. Should I worry?",
                )
        except Exception as error:
            logger.info("demo goal or message refused: %s", error)
    reviews = [r for r in open_recs if r.tier == "clinician"]
    for rec, action in zip(reviews[:2], ("approve", "reject"), strict=False):
        clinician = User.objects.filter(
            care_team_memberships__care_team__assignments__patient=rec.patient
        ).first()
        if clinician is None:
            continue
        try:
            decide_recommendation(
                recommendation=rec,
                actor=clinician,
                action=action,
                reason="Demo: home readings reviewed with the patient.",
                patient_note="We looked at your readings together.",
                password=password,
            )
        except Exception as error:
            logger.info("demo decision refused: %s", error)


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
        model_owners=[
            {"username": u, "totp_key": _demo_totp_key(u)} for u in _usernames(Role.MODEL_OWNER)
        ],
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
    lines.append(f"  model owner: {', '.join(row['username'] for row in logins.model_owners)}")
    lines.append("")
    lines.append(
        "Portal: /portal/ (clinicians, admin, auditor, model owner: the password, then a code"
        " from the"
        " authenticator key below)"
    )
    lines.append("Staff authenticator keys (demo only; codes: oathtool --totp -b KEY):")
    for row in [*logins.clinicians, *logins.admins, *logins.auditors, *logins.model_owners]:
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
