"""An attacker with database access drops the triggers and rewrites history; ``audit_verify``
names the first bad entry's sequence number, exactly, and exits non-zero."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.canonical import canonical_text, entry_hash
from audit.verification import verify_journal
from tests.audit.conftest import sql

pytestmark = pytest.mark.django_db

SHIFT = 1_000_000  # renumber through a distant range so the primary key never collides


def verify_line(*args: str) -> str:
    with pytest.raises(CommandError) as failure:
        call_command("audit_verify", *args)
    return str(failure.value)


def renumber(from_sequence: int, by: int) -> None:
    """Shift the entries from ``from_sequence`` on, as a forger would: in the journal order and
    in their chain (one chain here, so the two numbers move together)."""
    sql(
        "UPDATE audit_auditevent SET sequence = sequence + %s, "
        "chain_sequence = chain_sequence + %s WHERE sequence >= %s",
        [SHIFT, SHIFT, from_sequence],
    )
    sql(
        "UPDATE audit_auditevent SET sequence = sequence - %s, "
        "chain_sequence = chain_sequence - %s WHERE sequence >= %s",
        [SHIFT - by, SHIFT - by, SHIFT],
    )


def move(from_sequence: int, to_sequence: int) -> None:
    sql(
        "UPDATE audit_auditevent SET sequence = %s, chain_sequence = %s WHERE sequence = %s",
        [to_sequence, to_sequence, from_sequence],
    )


def test_an_untouched_chain_verifies(journal, capsys):
    call_command("audit_verify")
    call_command("audit_verify", "--full")
    assert "audit chain intact: 20 events" in capsys.readouterr().out


def test_an_empty_journal_verifies(db, capsys):
    call_command("audit_verify")
    assert "journal is empty" in capsys.readouterr().out


def test_a_field_edited_in_the_hashed_entry_is_named(journal, triggers_dropped):
    sql(
        "UPDATE audit_auditevent SET entry = replace(entry, '\"new\":11', '\"new\":99') "
        "WHERE sequence = 11"
    )
    assert (
        verify_line() == "audit chain broken at sequence 11: entry does not match its hash (edited)"
    )


def test_a_field_edited_in_its_indexed_column_is_named(journal, triggers_dropped):
    sql("UPDATE audit_auditevent SET action = 'read', patient_id = 99 WHERE sequence = 7")
    assert "sequence 7: indexed columns differ" in verify_line("--full")


@pytest.mark.parametrize("column", ["occurred_at", "patient_ids", "actor_id", "outcome"])
def test_every_indexed_column_is_compared_with_the_entry(journal, triggers_dropped, column):
    value = {
        "occurred_at": "2020-01-01 00:00:00",
        "patient_ids": "[1, 2]",
        "actor_id": 5,
        "outcome": "failure",
    }[column]
    sql(f"UPDATE audit_auditevent SET {column} = %s WHERE sequence = 9", [value])  # noqa: S608
    assert "sequence 9:" in verify_line()


def test_an_edit_with_recomputed_hashes_breaks_the_link_at_that_entry(journal, triggers_dropped):
    event = journal[4]
    forged_text = event.entry.replace('"new":5', '"new":50')
    sql(
        "UPDATE audit_auditevent SET entry = %s, hash = %s WHERE sequence = 5",
        [forged_text, entry_hash(forged_text)],
    )
    assert verify_line().startswith("audit chain broken at sequence 6: prev_hash does not link")


def test_a_deleted_event_is_named(journal, triggers_dropped):
    sql("DELETE FROM audit_auditevent WHERE sequence = 8")
    assert verify_line() == "audit chain broken at sequence 8: entry missing (deleted)"


def test_a_deleted_event_with_the_rest_renumbered_is_named(journal, triggers_dropped):
    sql("DELETE FROM audit_auditevent WHERE sequence = 8")
    renumber(9, -1)
    assert verify_line().startswith("audit chain broken at sequence 8: entry missing")


def test_the_newest_event_deleted_is_named_from_the_chain_head(journal, triggers_dropped):
    sql("DELETE FROM audit_auditevent WHERE sequence = 20")
    assert (
        verify_line() == "audit chain broken at sequence 20: entry missing (deleted from the end)"
    )


def test_a_forged_event_inserted_between_is_named(journal, triggers_dropped):
    """The forger even computes a valid hash and link (the algorithm is public)."""
    renumber(12, +1)
    entry = {
        **journal[11].payload,
        "sequence": 12,
        "prev_hash": journal[10].hash,
        "action": "delete",
        "detail": {"note": "nothing to see"},
    }
    text = canonical_text(entry)
    sql(
        "INSERT INTO audit_auditevent (sequence, chain, chain_sequence, occurred_at, actor_role, "
        "action, object_type, object_id, patient_id, patient_ids, outcome, prev_hash, hash, entry) "
        "VALUES (12, 1, 12, %s, '', 'delete', 'regimen', '11', 2, '[2]', 'success', %s, %s, %s)",
        [journal[11].occurred_at, journal[10].hash, entry_hash(text), text],
    )
    assert verify_line().startswith("audit chain broken at sequence 12: entry inserted")


def test_a_forged_event_appended_without_the_head_is_named(journal, triggers_dropped):
    entry = {**journal[-1].payload, "sequence": 21, "prev_hash": journal[-1].hash}
    text = canonical_text(entry)
    sql(
        "INSERT INTO audit_auditevent (sequence, chain, chain_sequence, occurred_at, actor_role, "
        "action, object_type, object_id, patient_id, patient_ids, outcome, prev_hash, hash, entry) "
        "VALUES (21, 1, 21, %s, '', 'update', 'regimen', '19', 5, '[5]', 'success', %s, %s, %s)",
        [journal[-1].occurred_at, journal[-1].hash, entry_hash(text), text],
    )
    assert "sequence 21: entry beyond the recorded chain head" in verify_line()


def test_two_swapped_events_are_named_at_the_first(journal, triggers_dropped):
    move(6, SHIFT)
    move(14, 6)
    move(SHIFT, 14)
    assert verify_line().startswith(
        "audit chain broken at sequence 6: entry moved here from sequence 14"
    )


def test_two_adjacent_swapped_events_are_named_at_the_first(journal, triggers_dropped):
    move(6, SHIFT)
    move(7, 6)
    move(SHIFT, 7)
    assert verify_line().startswith("audit chain broken at sequence 6:")


def test_the_result_object_names_the_sequence_for_callers(journal, triggers_dropped):
    sql("DELETE FROM audit_auditevent WHERE sequence = 3")
    result = verify_journal(full=True)
    assert not result.ok and result.failure.sequence == 3


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_column_check_runs_alongside_and_still_names_the_entry():
    """Outside an atomic block the column check runs on a second connection in a thread."""
    from django.db import connection

    from audit.triggers import install_sql, uninstall_sql
    from tests.audit.conftest import append_events

    append_events(12)
    for statement in uninstall_sql(connection.vendor):
        sql(statement)
    try:
        sql("UPDATE audit_auditevent SET object_id = 'other' WHERE sequence = 10")
        result = verify_journal()
    finally:
        for statement in install_sql(connection.vendor):
            sql(statement)
    assert result.failure.sequence == 10 and "indexed columns" in result.failure.reason


def test_events_swapped_in_the_journal_order_only_are_named(journal, triggers_dropped):
    """Their chain positions left alone, the chain still links: the hashed text names the
    sequence it was written at, so the columns no longer say what the entry says."""
    sql("UPDATE audit_auditevent SET sequence = %s WHERE sequence = 6", [SHIFT])
    sql("UPDATE audit_auditevent SET sequence = 6 WHERE sequence = 14")
    sql("UPDATE audit_auditevent SET sequence = 14 WHERE sequence = %s", [SHIFT])
    assert verify_line().startswith("audit chain broken at sequence 6:")
