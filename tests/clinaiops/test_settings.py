"""The settings module as operators meet it: defaults, production checks, generated secrets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

import clinaiops.settings as project_settings

ROOT = Path(__file__).resolve().parents[2]


def run_manage(args: list[str], env_overrides: dict[str, str], tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}}
    env.update({"CLINAIOPS_DATA_DIR": str(tmp_path), **env_overrides})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    result = run_manage(
        ["check", "--deploy", "--fail-level", "WARNING"],
        {
            "SECRET_KEY": "x" * 20 + "-production-secret-with-enough-entropy-0123456789",
            "ALLOWED_HOSTS": "clinaiops.hospital.example",
            "SECURE_SSL_REDIRECT": "1",
            "DEBUG": "0",
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_check_deploy_flags_debug_in_production(tmp_path):
    result = run_manage(
        ["check", "--deploy", "--fail-level", "WARNING"],
        {"DEBUG": "1", "SECRET_KEY": "y" * 60, "SECURE_SSL_REDIRECT": "1"},
        tmp_path,
    )
    assert result.returncode != 0
    assert "security.W018" in result.stderr + result.stdout


def test_embedded_defaults_sqlite_wal_eager_tasks_in_memory_layer(tmp_path):
    probe = (
        "import django, json; django.setup();"
        "from django.conf import settings; from django.db import connection;"
        "c = connection.cursor(); c.execute('PRAGMA journal_mode');"
        "print(json.dumps({'journal': c.fetchone()[0], 'eager': settings.CELERY_TASK_ALWAYS_EAGER,"
        " 'layer': settings.CHANNEL_LAYERS['default']['BACKEND'], 'debug': settings.DEBUG,"
        " 'db': str(settings.DATABASES['default']['NAME'])}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}}
    env.update(
        {"CLINAIOPS_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "clinaiops.settings"}
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["journal"] == "wal"
    assert facts["eager"] is True
    assert facts["layer"] == "channels.layers.InMemoryChannelLayer"
    assert facts["debug"] is False
    assert facts["db"].startswith(str(tmp_path))


def test_generated_secret_key_is_private_and_stable(tmp_path):
    env = {"SECRET_KEY": ""}
    command = [
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.SECRET_KEY)",
    ]
    first = run_manage(command, env, tmp_path)
    second = run_manage(command, env, tmp_path)
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.stdout.strip() == second.stdout.strip() == key_file.read_text().strip()
    assert len(first.stdout.strip()) >= 50


def test_production_password_hasher_is_argon2():
    assert project_settings.PASSWORD_HASHERS[0].endswith("Argon2PasswordHasher")


@pytest.mark.django_db
def test_new_passwords_are_stored_with_argon2(settings):
    from accounts.services import create_user
    from core.authz import System

    settings.PASSWORD_HASHERS = project_settings.PASSWORD_HASHERS
    user = create_user(
        username="hash-check",
        password="s3cret-enough-pass",
        role="clinician",
        actor=System("tests"),
    )
    assert user.password.startswith("argon2$")


def test_redis_url_switches_the_stack(tmp_path):
    probe = (
        "import django, json; django.setup(); from django.conf import settings;"
        "print(json.dumps([settings.CELERY_TASK_ALWAYS_EAGER, settings.CELERY_BROKER_URL,"
        " settings.CHANNEL_LAYERS['default']['BACKEND'], settings.DATABASES['default']['ENGINE']]))"
    )
    env = dict(
        {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"},  # one Redis db each
        CLINAIOPS_DATA_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="clinaiops.settings",
        REDIS_URL="redis://127.0.0.1:6390/3",
        DATABASE_URL="postgres://u:p@127.0.0.1:5499/db",
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    eager, broker, layer, engine = json.loads(out.stdout.strip().splitlines()[-1])
    assert eager is False
    assert broker == "redis://127.0.0.1:6390/3"
    assert layer == "channels_redis.core.RedisChannelLayer"
    assert engine == "clinaiops.postgresql"  # Django's, with our pool check


def test_the_suite_runs_on_the_configured_database():
    """CI runs the suite twice; this proves which stack each run really used."""
    expected = (
        "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite3"
    )
    assert settings.DATABASES["default"]["ENGINE"].endswith(expected)
