"""How the cost of one patient's operations grows with the clinic (issue 17, "Growth").

``python -m bench.growth_bench --database-url postgres://USER:PASS@HOST:5432/NAME [--quick]``

PostgreSQL only. The bench works in the database ``<NAME>_growth`` beside the one the URL names
(dropped and recreated at the start, dropped at the end unless ``--keep``); it never touches the
named database, and refuses to run if the database it would use is the app's (``clinaiops``).

Seeding, all through the product's own writes:

* **1×** is ``manage.py seed_demo`` (``seed_demo.seed``: 60 patients, two care teams, a week of
  simulated readings and intakes through ingestion and the evaluation, no model).
* **N×** adds copies of the demo cohort until the clinic has N × 60 patients: each copy is 60
  new simulated patients (its own simulator seed) in two new care teams of 30 with a clinician
  each, enrolled exactly as ``seed_demo`` enrols (``register_patient``, ``_enrol_course``:
  regimen and bounds), their week of readings stored by ``record_readings`` (the ingestion
  service; on PostgreSQL its bulk path is ``COPY``), intakes by ``record_intakes``, each upload
  followed by the inline safety check and the evaluation as on the embedded stack, then the
  visit plan and the people acting on a few proposals (``seed_demo._people_act``). New teams,
  not bigger ones: a clinician's panel stays the demo's 30 patients, so the figures show what a
  bigger *database* costs a patient's operation, not a bigger panel.

The seeding rate is the product's (~0.2 s per new patient on a quiet 2-core machine, ~1 s under
load: about 340 statements per patient, enrolment, safety check and evaluation); no step is
skipped or written around. 100× (6,000 patients, ~2.1 M readings) seeded in 19 minutes on
2026-12-03.

Measured at each size, in this process, interleaved over ``--repeats`` rounds on the same
sample of the 1× cohort's patients (the ones clinician1 cares for), median per operation:

* **upload**: ``record_readings`` of 10 new readings (8 heart rates, a blood pressure, steps) by
  the patient, with the inline safety check; the evaluation is queued, not run (as a web
  process with a broker does);
* **evaluation**: ``evaluate_patient`` right after that upload (new data: the full run);
* **sweep per patient**: ``evaluate_patient`` again with no new data — what the hourly sweep
  (``sweep_evaluations``) costs per patient;
* **worklist**: ``GET /portal/`` as clinician1 (password + TOTP session);
* **review queue**: ``GET /api/v1/recommendations/?status=pending_review`` as clinician1
  (bearer token);
* **FHIR search page**: ``GET /fhir/Observation?patient=…&_count=50`` as clinician1;
* **journal verification**: ``verify_journal(full=True)`` after sealing the checkpoints;
* **database size**: the readings table with its indexes, and the journal.

``ANALYZE`` runs after each seeding (autovacuum would in a clinic). Ratios are to the 1× figure
of the same run. Writes the ``growth`` section of bench/RESULTS.md, ``growth`` rows of
bench/results.json and the plot docs/growth.svg.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import machine_line, row, write_rows, write_section  # noqa: E402

SVG_PATH = REPO / "docs" / "growth.svg"
DEMO_PATIENTS = 60
SIZES = (1, 10, 100)
QUICK_SIZES = (1, 10)
REPEATS, QUICK_REPEATS = 15, 5
SAMPLE = 10  # patients of clinician1's team measured at every size
PASSWORD = "clinaiops-demo"
FLAT_LIMIT = 1.5  # a patient's operation may cost at most this many times its 1x figure

# (key, label, unit): the order of the table and of the plot's legend.
OPERATIONS: tuple[tuple[str, str, str], ...] = (
    ("evaluation", "evaluation of one patient", "ms"),
    ("upload", "upload of 10 readings", "ms"),
    ("sweep", "hourly sweep, per patient", "ms"),
    ("worklist", "worklist (GET /portal/)", "ms"),
    ("review_queue", "review queue (API)", "ms"),
    ("fhir", "FHIR search page (50)", "ms"),
    ("verification", "journal verification (full)", "s"),
    ("readings_bytes", "readings table + indexes", "MB"),
    ("journal_bytes", "journal table + indexes", "MB"),
)
PER_PATIENT = ("evaluation", "upload", "sweep", "worklist", "review_queue", "fhir")


# ---------------------------------------------------------------------------------------------
# The plot (matplotlib is not a dependency): log-log, one line per operation as ratio to 1x.

ATTRIBUTE = {'"': "&quot;"}  # escaped too inside an attribute's quotes
PALETTE = (
    "#1b6ca8",
    "#d1495b",
    "#2e8540",
    "#edae49",
    "#6a4c93",
    "#00798c",
    "#8c564b",
    "#e377c2",
    "#555555",
)


def growth_svg(
    series: Mapping[str, Mapping[int, float]],
    *,
    sizes: Sequence[int] = SIZES,
    title: str = "Cost at N× the demo cohort, as a ratio to 1×",
    note: str = "",
) -> str:
    """An SVG line chart: x is the cohort size (log scale, ticks at ``sizes``), y the ratio to
    the 1x figure (log scale), one line per entry of ``series`` ({label: {size: ratio}}), in
    the legend in the given order, with dashed references "flat" (ratio 1) and "linear"
    (ratio = size). Only finite, positive ratios are drawn."""
    width, height = 960, 480
    left, right, top, bottom = 70, 390, 50, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    ratios = [
        r for points in series.values() for r in points.values() if r > 0 and math.isfinite(r)
    ]
    low = min([1.0, *ratios])
    high = max([float(max(sizes)), *ratios])
    y_min = 10 ** math.floor(math.log10(low) + 1e-9)
    if y_min == low and low < 1:
        y_min = low
    y_max = 10 ** math.ceil(math.log10(high) - 1e-9)
    x_min, x_max = math.log10(min(sizes)), math.log10(max(sizes))

    def x_of(size: float) -> float:
        span = (x_max - x_min) or 1.0
        return left + (math.log10(size) - x_min) / span * plot_w

    def y_of(ratio: float) -> float:
        span = math.log10(y_max) - math.log10(y_min)
        return top + plot_h - (math.log10(ratio) - math.log10(y_min)) / span * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="24" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    # Grid and y ticks at each decade (and 2, 5 within it when there are few decades).
    decades = round(math.log10(y_max / y_min))
    ticks: list[float] = []
    decade = y_min
    while decade <= y_max * 1.0001:
        ticks.append(decade)
        if decades <= 3:
            ticks += [m * decade for m in (2, 5) if m * decade < y_max]
        decade *= 10
    for tick in sorted(set(ticks)):
        y = y_of(tick)
        major = math.isclose(math.log10(tick), round(math.log10(tick)))
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
            f'stroke="{"#cccccc" if major else "#eeeeee"}"/>'
        )
        out.append(
            f'<text class="y-tick" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">'
            f"{tick:g}×</text>"
        )
    for size in sizes:
        x = x_of(size)
        out.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#cccccc"/>'
        )
        out.append(
            f'<text class="x-tick" x="{x:.1f}" y="{top + plot_h + 18}" text-anchor="middle">'
            f"{size}×</text>"
        )
    out.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#333333"/>'
    )
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 18}" text-anchor="middle">'
        f"cohort size (× the demo: {DEMO_PATIENTS} patients)</text>"
    )
    out.append(
        f'<text x="18" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 18 {top + plot_h / 2:.1f})">cost ÷ cost at 1× (log)</text>'
    )
    # References: flat and linear.
    first, last = min(sizes), max(sizes)
    for name, end_ratio in (("flat", 1.0), ("linear", last / first)):
        out.append(
            f'<line class="reference" data-name="{name}" x1="{x_of(first):.1f}" '
            f'y1="{y_of(1.0):.1f}" x2="{x_of(last):.1f}" y2="{y_of(end_ratio):.1f}" '
            'stroke="#999999" stroke-dasharray="5,4"/>'
        )
        out.append(
            f'<text x="{x_of(last) - 4:.1f}" y="{y_of(end_ratio) - 6:.1f}" text-anchor="end" '
            f'fill="#777777">{name}</text>'
        )
    # One line per operation; the legend on the right names it with its last ratio.
    legend_x, legend_y = left + plot_w + 20, top + 8
    for index, (label, points) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        drawn = sorted(
            (size, ratio) for size, ratio in points.items() if ratio > 0 and math.isfinite(ratio)
        )
        coords = " ".join(f"{x_of(size):.1f},{y_of(ratio):.1f}" for size, ratio in drawn)
        out.append(
            f'<polyline class="series" data-name="{escape(label, ATTRIBUTE)}" points="{coords}" '
            f'fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        for size, ratio in drawn:
            out.append(
                f'<circle cx="{x_of(size):.1f}" cy="{y_of(ratio):.1f}" r="3.5" fill="{colour}"/>'
            )
        y = legend_y + index * 22
        final = f" ({drawn[-1][1]:.2g}× at {drawn[-1][0]}×)" if len(drawn) > 1 else ""
        out.append(
            f'<line x1="{legend_x}" y1="{y}" x2="{legend_x + 22}" y2="{y}" stroke="{colour}" '
            'stroke-width="3"/>'
        )
        out.append(
            f'<text class="legend" x="{legend_x + 28}" y="{y + 4}">{escape(label)}{final}</text>'
        )
    if note:
        out.append(
            f'<text x="{left}" y="{top - 10}" fill="#555555" font-size="11">{escape(note)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# The database and Django.


def growth_database_url(url: str) -> str:
    """``<name>_growth`` beside the database ``url`` names; refused if that is the app's."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    target = name if name.endswith("_growth") else f"{name}_growth"
    if target == "clinaiops":
        raise SystemExit("growth bench: refusing to use the database 'clinaiops' (the app's)")
    return urlunsplit(parts._replace(path=f"/{target}"))


def _admin_connection(url: str):
    import psycopg

    parts = urlsplit(url)
    return psycopg.connect(
        dbname="postgres",
        user=parts.username,
        password=parts.password,
        host=parts.hostname,
        port=parts.port or 5432,
        autocommit=True,
    )


def recreate_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with _admin_connection(url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with _admin_connection(url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_django(database_url: str, data_dir: str) -> None:
    os.environ.update(
        CLINAIOPS_DATA_DIR=data_dir,
        DATABASE_URL=database_url,
        ALLOWED_HOSTS="testserver,localhost,127.0.0.1",
        LOG_LEVEL="WARNING",
        THROTTLE_USER="1000000/minute",
        THROTTLE_ANON="1000000/minute",
    )
    for name in ("REDIS_URL", "CELERY_TASK_ALWAYS_EAGER", "OIDC_ISSUER"):
        os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinaiops.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@contextmanager
def evaluations_queued():
    """As a web process with a broker: uploads queue their evaluation instead of running it
    (the broker is Celery's in-memory transport, which nobody consumes here)."""
    from django.conf import settings

    from clinaiops.celery import app

    before = settings.CELERY_TASK_ALWAYS_EAGER, app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = app.conf.task_always_eager = False
    try:
        yield
    finally:
        settings.CELERY_TASK_ALWAYS_EAGER, app.conf.task_always_eager = before


# ---------------------------------------------------------------------------------------------
# Seeding.


def seed_demo_cohort() -> None:
    from clinaiops.management.commands.seed_demo import seed

    seed(count=DEMO_PATIENTS, password=PASSWORD, seed=2023, model=False)


def add_demo_copy(copy: int) -> int:
    """One more copy of the demo cohort (60 patients, two new teams), enrolled as ``seed_demo``
    enrols; returns the readings stored."""
    from django.contrib.auth.hashers import make_password
    from django.db import transaction
    from django.utils import timezone

    from accounts.models import Role
    from accounts.services import add_team_member, create_care_team, create_clinician, create_user
    from clinaiops.management.commands import seed_demo as demo
    from clinicians.loop.visits import CADENCE, plan_next_visit
    from models_ml.simulator.population import generate_cohort
    from models_ml.simulator.readings import cohort_readings
    from patients.ingestion import INTAKES_IMPORT, READINGS_IMPORT, record_intakes, record_readings
    from patients.services import register_patient

    seed = 2023 + copy
    hashed = _password_hash(make_password)
    cohort = generate_cohort(DEMO_PATIENTS, seed=seed, id_prefix=f"grow{copy:03d}")
    today = timezone.now().date()
    stored = 0
    with transaction.atomic():
        teams, leads = [], []
        for team_index in range(2):
            team = create_care_team(name=f"Clinic {copy:03d}-{team_index + 1}", actor=demo.SEED)
            lead = create_clinician(
                username=f"g{copy:03d}-clinician{team_index + 1}",
                password=None,
                password_hash=hashed,
                display_name=f"Dr. Growth {copy}-{team_index + 1}",
                qualification="MD",
                actor=demo.SEED,
            )
            add_team_member(care_team=team, user=lead, is_on_call=True, actor=demo.SEED)
            teams.append(team)
            leads.append(lead)
        admin = demo.User.objects.get(username="admin")
        patients = []
        for index, virtual in enumerate(cohort):
            user = create_user(
                username=f"g{copy:03d}-patient{index + 1:03d}",
                password=None,
                password_hash=hashed,
                role=Role.PATIENT,
                actor=demo.SEED,
            )
            patient = register_patient(
                given_name=demo.GIVEN_NAMES[index % len(demo.GIVEN_NAMES)],
                family_name=demo.FAMILY_NAMES[(index + copy) % len(demo.FAMILY_NAMES)],
                birth_year=today.year - virtual.demographics.age_years,
                sex=virtual.demographics.sex,
                race=virtual.demographics.race,
                ethnicity=virtual.demographics.ethnicity,
                care_team=teams[index % 2],
                user=user,
                mrn=f"GROW{copy:03d}-{index + 1:05d}",
                time_zone=demo._zone(virtual.utc_offset_hours),
                actor=demo.SEED,
            )
            patients.append(patient)
            demo._enrol_course(patient, virtual, index, admin=admin, clinician=leads[index % 2])
        readings = cohort_readings(
            cohort,
            start_date=today - timedelta(days=demo.DEMO_DAYS),
            days=demo.DEMO_DAYS,
            seed=seed,
        )
        by_patient = demo._readings_by_patient(cohort, patients, readings)
        intakes = demo._intakes_by_patient(cohort, patients, today, seed)
        for (patient, rows), (_, taken) in zip(by_patient, intakes, strict=True):
            if taken:
                record_intakes(patient=patient, items=taken, actor=INTAKES_IMPORT)
            stored += record_readings(patient=patient, items=rows, actor=READINGS_IMPORT).accepted
        transaction.on_commit(lambda: [plan_next_visit(p.pk, actor=CADENCE) for p in patients])
        transaction.on_commit(lambda: demo._people_act(patients, PASSWORD))
    return stored


_HASH: list[str] = []


def _password_hash(make_password: Callable[[str], str]) -> str:
    if not _HASH:
        _HASH.append(make_password(PASSWORD))
    return _HASH[0]


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def database_facts() -> dict[str, float]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_relation_size('patients_reading'), pg_indexes_size('patients_reading'), "
            "pg_total_relation_size('patients_reading'), "
            "pg_total_relation_size('audit_auditevent'), "
            "(SELECT count(*) FROM patients_reading), (SELECT count(*) FROM audit_auditevent), "
            "(SELECT count(*) FROM patients_patient)"
        )
        table, indexes, readings_total, journal_total, readings, events, patients = (
            cursor.fetchone()
        )
    return {
        "readings_table_bytes": table,
        "readings_index_bytes": indexes,
        "readings_bytes": readings_total,
        "journal_bytes": journal_total,
        "readings": readings,
        "events": events,
        "patients": patients,
    }


# ---------------------------------------------------------------------------------------------
# Measuring.


class Clinician:
    """clinician1 signed in twice: to the portal (password + TOTP) and with a bearer token."""

    def __init__(self) -> None:
        from django.test import Client
        from django_otp.oath import totp
        from django_otp.plugins.otp_totp.models import TOTPDevice

        from accounts.identity.tokens import issue
        from accounts.models import User

        self.user = User.objects.get(username="clinician1")
        self.portal = Client()
        response = self.portal.post(
            "/portal/login/", {"username": self.user.username, "password": PASSWORD}
        )
        assert response.status_code in (200, 302), response.status_code
        device = TOTPDevice.objects.get(user=self.user, confirmed=True)
        TOTPDevice.objects.filter(pk=device.pk).update(last_t=-1)
        code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"
        response = self.portal.post("/portal/login/verify/", {"code": code})
        assert response.status_code == 302, response.status_code
        token = issue(self.user, amr=["pwd", "otp"], token_endpoint="http://testserver/")
        self.api = Client(HTTP_AUTHORIZATION=f"Bearer {token['access_token']}")

    def get(self, client, path: str) -> float:
        began = time.perf_counter()
        response = client.get(path)
        elapsed = time.perf_counter() - began
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
        return elapsed


def sample_patients() -> list:
    """The first ``SAMPLE`` patients of clinician1's team from the 1x cohort (not the three
    alert scenarios), with their watch."""
    from patients.models import Device, Patient

    patients = list(
        Patient.objects.filter(mrn__startswith="DEMO-", care_teams__name="North clinic")
        .exclude(mrn__in=["DEMO-00001", "DEMO-00002", "DEMO-00003"])
        .select_related("user")
        .order_by("mrn")[:SAMPLE]
    )
    return [
        (p, Device.objects.filter(patient=p).order_by("pk").first().device_id) for p in patients
    ]


def upload_items(device_id: str, tag: str) -> list[dict]:
    from django.utils import timezone

    now = timezone.now()
    items: list[dict] = [
        {
            "client_id": f"{tag}-hr-{k}",
            "type": "heart_rate",
            "value": 64 + k,
            "unit": "/min",
            "measured_at": (now - timedelta(minutes=10 - k)).isoformat(),
            "device_id": device_id,
        }
        for k in range(8)
    ]
    items.append(
        {
            "client_id": f"{tag}-bp",
            "type": "blood_pressure",
            "systolic": 132,
            "diastolic": 84,
            "unit": "mm[Hg]",
            "measured_at": (now - timedelta(minutes=2)).isoformat(),
            "device_id": device_id,
        }
    )
    items.append(
        {
            "client_id": f"{tag}-steps",
            "type": "steps",
            "value": 420,
            "unit": "{steps}",
            "measured_at": (now - timedelta(minutes=1)).isoformat(),
            "device_id": device_id,
        }
    )
    return items


def measure(size: int, repeats: int, clinician: Clinician, sample: list) -> dict[str, list[float]]:
    from audit.services import seal_checkpoints
    from audit.verification import verify_journal
    from clinicians.evaluation import evaluate_patient
    from patients.ingestion import record_readings

    samples: dict[str, list[float]] = {key: [] for key in PER_PATIENT}
    # Round 0 warms caches (templates, the ORM's, PostgreSQL's buffers) and is not counted.
    for repeat in range(repeats + 1):
        patient, device_id = sample[repeat % len(sample)]
        items = upload_items(device_id, f"growth-{size}x-{repeat}")
        with evaluations_queued():
            began = time.perf_counter()
            result = record_readings(patient=patient, items=items, actor=patient.user)
            samples["upload"].append(time.perf_counter() - began)
        assert result.accepted == len(items), result
        began = time.perf_counter()
        outcome = evaluate_patient(patient.pk)
        samples["evaluation"].append(time.perf_counter() - began)
        assert not outcome.skipped
        began = time.perf_counter()
        evaluate_patient(patient.pk)
        samples["sweep"].append(time.perf_counter() - began)
        samples["worklist"].append(clinician.get(clinician.portal, "/portal/"))
        samples["review_queue"].append(
            clinician.get(clinician.api, "/api/v1/recommendations/?status=pending_review")
        )
        samples["fhir"].append(
            clinician.get(clinician.api, f"/fhir/Observation?patient={patient.pk}&_count=50")
        )
        if repeat == 0:
            for timings in samples.values():
                timings.clear()
    seal_checkpoints()
    samples["verification"] = []
    for _ in range(max(1, min(3, repeats // 3))):
        began = time.perf_counter()
        verdict = verify_journal(full=True)
        samples["verification"].append(time.perf_counter() - began)
        assert verdict.ok, verdict.line()
    return samples


# ---------------------------------------------------------------------------------------------
# Reporting.


def summarise(samples: dict[str, list[float]], facts: dict[str, float]) -> dict[str, float]:
    """Median per operation in its unit (ms, s, MB)."""
    figures = {key: statistics.median(samples[key]) * 1000 for key in PER_PATIENT}
    figures["verification"] = statistics.median(samples["verification"])
    figures["readings_bytes"] = facts["readings_bytes"] / 1e6
    figures["journal_bytes"] = facts["journal_bytes"] / 1e6
    return figures


def render(command: str, runs: dict[int, dict], quick: bool, started: float) -> str:
    sizes = sorted(runs)
    base = runs[sizes[0]]["figures"]
    header = "| operation | " + " | ".join(
        f"{size}× ({runs[size]['facts']['patients']:,} patients)" for size in sizes
    )
    lines = [
        "## Growth: cost at 1×, 10× and 100× the demo cohort (issue 17)",
        "",
        f"`{command}` — PostgreSQL {runs[sizes[0]]['server']}, in-process (Django test client "
        f"for the requests); machine: {machine_line()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; whole run "
        f"{(time.monotonic() - started) / 60:.1f} min.",
        "",
    ]
    if quick or tuple(sizes) != SIZES:
        lines += [
            f"**{'Quick' if quick else 'Partial'} run**: sizes "
            f"{', '.join(f'{s}×' for s in sizes)} and {runs[sizes[0]]['repeats']} repeats; not "
            "the full profile (1×, 10×, 100× with 15 repeats).",
            "",
        ]
    lines += [
        "Median over the repeats (the same sampled patients of clinician1's team at every size); "
        "in brackets the ratio to 1×. Per-patient operations should stay flat "
        f"(goal ≤ {FLAT_LIMIT}× the 1× figure); journal verification and sizes grow with the data.",
        "",
        header + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for key, label, unit in OPERATIONS:
        cells = []
        for size in sizes:
            value = runs[size]["figures"][key]
            ratio = "" if size == sizes[0] else f" ({value / base[key]:.2f}×)"
            cells.append(f"{figure(value)} {unit}{ratio}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| size | patients | readings | journal events | seeding | load average (start → end) |",
    ]
    lines.append("|---|---:|---:|---:|---:|---|")
    for size in sizes:
        run = runs[size]
        facts = run["facts"]
        lines.append(
            f"| {size}× | {facts['patients']:,} | {facts['readings']:,} | {facts['events']:,} | "
            f"{run['seed_seconds']:.0f} s ({run['seed_per_patient']:.2f} s per new patient) | "
            f"{run['load'][0]} → {run['load'][1]} |"
        )
    last = runs[sizes[-1]]["facts"]
    lines += [
        "",
        f"Readings at {sizes[-1]}×: {per_row(last, 'readings_table_bytes'):.0f} bytes per row in "
        f"the table, {per_row(last, 'readings_index_bytes'):.0f} in its indexes. Plot: "
        "docs/growth.svg. Numbers from a shared machine are noisy: compare ratios within this run.",
    ]
    return "\n".join(lines)


def per_row(facts: dict, key: str) -> float:
    return facts[key] / max(1, facts["readings"])


def figure(value: float) -> str:
    """Three significant digits at most, thousands separated: 0.123, 12.3, 1,234."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def rows_for(runs: dict[int, dict]) -> list[dict]:
    sizes = sorted(runs)
    base = runs[sizes[0]]
    out = []
    for key, label, unit in OPERATIONS:
        for size in sizes:
            run = runs[size]
            value = round(run["figures"][key], 4)
            detail = {
                "patients": run["facts"]["patients"],
                "readings": run["facts"]["readings"],
                "journal_events": run["facts"]["events"],
                "load_average": run["load"],
            }
            if key in run["samples"]:
                detail["samples"] = len(run["samples"][key])
                detail["spread"] = [
                    round(min(run["samples"][key]) * (1000 if unit == "ms" else 1), 3),
                    round(max(run["samples"][key]) * (1000 if unit == "ms" else 1), 3),
                ]
            if size == sizes[0]:
                out.append(row(f"growth: {label} at 1×", value, unit, detail=detail))
                continue
            reference = round(base["figures"][key], 4)
            flat = key in PER_PATIENT
            ratio = value / reference if reference else None
            out.append(
                row(
                    f"growth: {label} at {size}×",
                    value,
                    unit,
                    reference=reference,
                    reference_what=f"{label} at 1× ({base['facts']['patients']} patients), "
                    "same run",
                    goal=f"≤ {FLAT_LIMIT}× the 1× figure" if flat else None,
                    met=(ratio is not None and ratio <= FLAT_LIMIT) if flat else None,
                    detail=detail,
                )
            )
    return out


def load_average() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL server (the bench uses <name>_growth)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZES} only, fewer repeats")
    parser.add_argument("--sizes", help="comma-separated multiples of the demo cohort (1,10,100)")
    parser.add_argument("--repeats", type=int, help=f"rounds per size (default {REPEATS})")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-write", action="store_true", help="print; write no results or plot")
    args = parser.parse_args(argv)
    if not args.database_url or not args.database_url.startswith("postgres"):
        print("growth bench skipped: it needs PostgreSQL (--database-url)")
        return
    sizes = sorted({int(s) for s in args.sizes.split(",")}) if args.sizes else None
    sizes = sizes or list(QUICK_SIZES if args.quick else SIZES)
    if sizes[0] != 1:
        sizes.insert(0, 1)
    repeats = args.repeats or (QUICK_REPEATS if args.quick else REPEATS)
    from bench.ingest_bench import redact

    command = shlex.join(["python", "-m", "bench.growth_bench", *(redact(a) for a in argv)])
    database_url = growth_database_url(args.database_url)
    started = time.monotonic()
    print(f"growth bench: sizes {sizes}, {repeats} repeats, load average {load_average()}")
    recreate_database(database_url)
    try:
        with tempfile.TemporaryDirectory(prefix="growth-bench-") as data_dir:
            start_django(database_url, data_dir)
            runs = grow_and_measure(sizes, repeats)
            from django.db import connections

            connections.close_all()
    finally:
        if not args.keep:
            drop_database(database_url)
    body = render(command, runs, args.quick, started)
    print(body)
    if args.no_write:
        return
    write_section("growth", body)
    write_rows("growth", rows_for(runs), command=command)
    series = {
        label: {size: runs[size]["figures"][key] / runs[1]["figures"][key] for size in runs}
        for key, label, _ in OPERATIONS
    }
    note = (
        f"python -m bench.growth_bench, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"PostgreSQL; load average {runs[max(runs)]['load'][1]}; bench/RESULTS.md (growth)"
    )
    SVG_PATH.write_text(growth_svg(series, sizes=SIZES, note=note))
    print(f"Plot in {SVG_PATH}")


def grow_and_measure(sizes: list[int], repeats: int) -> dict[int, dict]:
    from django.db import connection

    version = connection.cursor().connection.info.server_version
    server = f"{version // 10000}.{version % 10000}"
    runs: dict[int, dict] = {}
    copies = 1
    clinician = sample = None
    for size in sizes:
        load_before = load_average()
        began = time.monotonic()
        if size == 1:
            seed_demo_cohort()
            new = DEMO_PATIENTS
        else:
            new = 0
            while copies < size:
                add_demo_copy(copies)
                copies += 1
                new += DEMO_PATIENTS
                if copies % 10 == 0:
                    print(
                        f"  {copies * DEMO_PATIENTS} patients, {time.monotonic() - began:.0f} s",
                        flush=True,
                    )
        seed_seconds = time.monotonic() - began
        analyze()
        if sample is None:
            sample = sample_patients()
        clinician = Clinician()  # signed in afresh: seeding a size outlasts an access token
        print(f"{size}×: seeded in {seed_seconds:.0f} s; measuring", flush=True)
        samples = measure(size, repeats, clinician, sample)
        facts = database_facts()
        runs[size] = {
            "samples": samples,
            "facts": facts,
            "figures": summarise(samples, facts),
            "seed_seconds": seed_seconds,
            "seed_per_patient": seed_seconds / max(1, new),
            "load": (load_before, load_average()),
            "repeats": repeats,
            "server": server,
        }
        print(
            f"{size}×: "
            + ", ".join(f"{k} {v:.1f}" for k, v in runs[size]["figures"].items())
            + f"; load {runs[size]['load']}",
            flush=True,
        )
    return runs


if __name__ == "__main__":
    main()
