"""Audit test fixtures: an isolated data directory (signing key), journal helpers, tampering."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from audit import keys
from audit.services import record_event
from audit.triggers import install_sql, uninstall_sql


@pytest.fixture(autouse=True)
def _isolated_signing_key(settings, tmp_path):
    """Each test gets its own data directory, so a generated key never lands in ./var."""
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    settings.AUDIT_SIGNING_KEY = None
    keys.clear_cache()
    yield
    keys.clear_cache()


@pytest.fixture(autouse=True)
def _one_chain(settings):
    """One chain unless a test asks for ``chains``: the journal-wide sequence is then gapless
    on PostgreSQL too (a database sequence is not rolled back with a test's transaction)."""
    settings.AUDIT_CHAINS = 1


@pytest.fixture
def chains(settings):
    """Sixteen chains, as production runs on PostgreSQL (docs/audit.md, "Chains")."""
    settings.AUDIT_CHAINS = 16
    return 16


def append_events(count: int, **overrides) -> list:
    events = []
    for number in range(count):
        with transaction.atomic():
            fields = {
                "action": "update",
                "component": "tests",
                "object_type": "regimen",
                "object_id": number,
                "patient_id": number % 5 + 1,
                "changes": {"dose_mg": {"old": number, "new": number + 1}},
            }
            events.append(record_event(**(fields | overrides)))
    return events


@pytest.fixture
def journal(db):
    """Twenty events, sequence 1-20."""
    return append_events(20)


def sql(statement: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


@pytest.fixture
def triggers_dropped(db):
    """What an attacker with DDL rights does first. The test transaction rolls the DDL back
    on both databases; the triggers are reinstalled anyway for transactional tests."""
    for statement in uninstall_sql(connection.vendor):
        sql(statement)
    yield
    for statement in uninstall_sql(connection.vendor) + install_sql(connection.vendor):
        sql(statement)


is_postgres = connection.vendor == "postgresql"
