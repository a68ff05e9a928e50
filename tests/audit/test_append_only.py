"""The journal refuses UPDATE, DELETE and TRUNCATE in the ORM and in the database itself."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from audit.canonical import GENESIS_HASH
from audit.models import AppendOnlyError, AuditEvent, ChainHead, Checkpoint
from tests.audit.conftest import is_postgres, sql

pytestmark = pytest.mark.django_db


def refused(statement: str) -> bool:
    try:
        with transaction.atomic():
            sql(statement)
    except DatabaseError:
        return True
    return False


def test_orm_updates_and_deletes_raise(journal):
    event = journal[3]
    event.action = "delete"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(sequence=4).update(action="delete")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.bulk_update([event], ["action"])
    with pytest.raises(AppendOnlyError):
        ChainHead.objects.update(last_sequence=0)
    assert AuditEvent.objects.get(sequence=4).action == "update"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET action = 'delete' WHERE sequence = 4",
        "UPDATE audit_auditevent SET entry = entry || ' ' WHERE sequence = 4",
        "DELETE FROM audit_auditevent WHERE sequence = 4",
        "DELETE FROM audit_auditevent",
        "DELETE FROM audit_chainhead",
        "UPDATE audit_chainhead SET last_sequence = 3",
        "UPDATE audit_chainhead SET last_sequence = 30",
    ],
)
def test_raw_sql_changes_are_refused_by_the_database(journal, statement):
    assert refused(statement)
    assert AuditEvent.objects.count() == 20


@pytest.mark.skipif(not is_postgres, reason="TRUNCATE exists on PostgreSQL only")
def test_truncate_is_refused_on_postgresql(journal):
    assert refused("TRUNCATE audit_auditevent")
    assert refused("TRUNCATE audit_chainhead")
    assert refused("TRUNCATE audit_checkpoint")


def test_raw_inserts_must_extend_the_chain_head(journal):
    columns = (
        "(sequence, occurred_at, actor_role, action, object_type, object_id, "
        "patient_ids, outcome, prev_hash, hash, entry)"
    )
    values = (
        "VALUES ({}, '2026-01-01 00:00:00', '', 'read', '', '', '[]', 'success', '{}', 'x', '{{}}')"
    )
    assert refused(f"INSERT INTO audit_auditevent {columns} " + values.format(10, journal[8].hash))
    assert refused(f"INSERT INTO audit_auditevent {columns} " + values.format(21, GENESIS_HASH))
    assert refused(f"INSERT INTO audit_auditevent {columns} " + values.format(22, journal[-1].hash))


def test_checkpoints_are_append_only(db, settings):
    settings.AUDIT_CHECKPOINT_EVERY = 5
    from audit.services import seal_checkpoints
    from tests.audit.conftest import append_events

    append_events(5)
    seal_checkpoints()
    assert refused("UPDATE audit_checkpoint SET merkle_root = 'x'")
    assert refused("DELETE FROM audit_checkpoint")
    with pytest.raises(AppendOnlyError):
        Checkpoint.objects.all().delete()


def test_flush_outside_a_test_run_is_refused(monkeypatch):
    from audit.management.commands import flush

    monkeypatch.setattr(flush, "_in_test_environment", lambda: False)
    with pytest.raises(CommandError, match="append-only audit journal"):
        call_command("flush", interactive=False, verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_transactional_tests_can_still_flush_the_journal(journal):
    """pytest-django empties the database with ``flush`` after this test; it must succeed
    (the journal is purged only under journal_purge_allowed, used by our flush in tests)."""
    assert connection.vendor in ("sqlite", "postgresql")
    assert AuditEvent.objects.count() == 20
