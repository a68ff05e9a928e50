"""Fixtures shared by every test folder: users of each role, care teams, patients, API clients."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from tests.factories import (
    CareTeamFactory,
    ClinicianFactory,
    PatientFactory,
    UserFactory,
)

PASSWORD = "correct-horse-battery-staple"

# CI runs on shared 2-core hosts: how fast hypothesis generates inputs or runs an example says
# nothing about the code under test there, so neither is a failure (the properties still are).
hypothesis_settings.register_profile(
    "clinaiops", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("clinaiops")


@pytest.fixture(autouse=True, scope="session")
def _fixed_held_out_split():
    """Every run splits the same patients into training and held-out (the deployment's salt is
    generated per data directory): a model trained in a test is the same model on every
    machine."""
    from django.conf import settings

    settings.HELD_OUT_SPLIT_SALT = "clinaiops-test-suite"


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle counters and axes state live in the cache: isolate tests from each other."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _eager_tasks_unless_a_real_worker_runs(request, settings):
    """Tests run Celery tasks in-process, except those marked ``celery_worker``, which start a
    real worker against Redis (tests/integration)."""
    if request.node.get_closest_marker("celery_worker"):
        yield
        return
    from clinaiops.celery import app

    previous = app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Argon2 (the production hasher, see tests/clinaiops/test_settings.py) costs ~0.1 s per
    hash by design; tests that are not about hashing use a fast one."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def team_a(db):
    return CareTeamFactory(name="Team A")


@pytest.fixture
def team_b(db):
    return CareTeamFactory(name="Team B")


@pytest.fixture
def clinician_a(team_a):
    return ClinicianFactory(care_team=team_a)


@pytest.fixture
def clinician_b(team_b):
    return ClinicianFactory(care_team=team_b)


@pytest.fixture
def patient_a(team_a):
    return PatientFactory(care_team=team_a)


@pytest.fixture
def patient_b(team_b):
    return PatientFactory(care_team=team_b)


@pytest.fixture
def admin_user(db):
    return UserFactory(role="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def model_owner(db):
    return UserFactory(role="model_owner")


@pytest.fixture
def auditor(db):
    return UserFactory(role="auditor")


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def totp_code(user) -> str:
    """The current TOTP code of ``user``'s authenticator (enrolled here if they have none).
    django-otp refuses a code twice in one 30-second step (replay protection); tests sign the
    same person in several times a second, so the step last used is forgotten first."""
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    TOTPDevice.objects.filter(pk=device.pk).update(last_t=-1)
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def bearer_client(user, password: str = PASSWORD) -> APIClient:
    """A client signed in the way the mobile app is: token from the public endpoint (staff with
    their TOTP code, as they must)."""
    client = APIClient()
    credentials = {"username": user.username, "password": password}
    if user.role in ("clinician", "admin", "auditor", "model_owner"):
        credentials["otp"] = totp_code(user)
    response = client.post("/api/v1/auth/token/", credentials, format="json")
    assert response.status_code == 200, response.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    return client


@pytest.fixture
def as_user():
    return bearer_client


@pytest.fixture(scope="session")
def simulated_training():
    """A small simulated training set (160 patients, seed 5), made once per run."""
    from models_ml.dataset import simulated_training_set

    return simulated_training_set(n_patients=160, seed=5)


@pytest.fixture
def production_version(simulated_training, settings, tmp_path, monkeypatch):
    """A model trained on ``simulated_training`` and put in production (its serving reference
    from 300 simulated patients, not production's 1,000: time). The loaded-model cache is
    cleared before and after."""
    from models_ml import loaders, monitoring, training
    from models_ml.models import Stage

    settings.DATA_DIR = tmp_path
    monkeypatch.setattr(
        monitoring, "REFERENCE_COHORT", {**monitoring.REFERENCE_COHORT, "n_patients": 300}
    )
    loaders._cache.clear()
    version = training.train_model(seed=5, training=simulated_training)
    version.stage = Stage.PRODUCTION
    version.save()
    yield version
    loaders._cache.clear()


def journal_mark() -> int:
    """The journal's newest ``sequence`` (0 when empty): events recorded later have a greater
    one. (Not the count of events: on PostgreSQL sequences are not reused after a test's
    rollback, and several chains share the journal-wide number.)"""
    from django.db.models import Max

    from audit.models import AuditEvent

    return AuditEvent.objects.aggregate(m=Max("sequence"))["m"] or 0
