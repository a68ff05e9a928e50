"""Verification binds every indexed column to the hashed text (docs/audit.md, "The canonical form
and the hash"): the scan compares the columns with the entry's own spelling of them, without
parsing it. These tests hold that comparison to what the exact one (parse and compare) would
say — every column edited is named, and awkward but legitimate values are not taken for edits.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from audit import verification
from audit.services import record_event
from audit.verification import verify_journal
from core.context import request_context
from tests.audit.conftest import append_events, is_postgres, sql
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

# A value that differs from what was recorded, for every column the entry's text also holds.
EDITS = {
    "occurred_at": "2020-01-01 00:00:00",
    "actor_id": 5,
    "actor_role": "admin",
    "action": "read",
    "object_type": "patient",
    "object_id": "8 ",
    "patient_id": 99,
    "patient_ids": "[5, 4]",
    "outcome": "failure",
    "prev_hash": "f" * 64,
}


def verified():
    return verify_journal(full=True)


@pytest.mark.parametrize("column", sorted(EDITS))
def test_every_indexed_column_edited_alone_is_named_as_a_column_edit(
    journal, triggers_dropped, column
):
    sql(f"UPDATE audit_auditevent SET {column} = %s WHERE sequence = 9", [EDITS[column]])  # noqa: S608
    result = verified()
    assert result.failure.sequence == 9
    assert "indexed columns differ" in result.failure.reason


@pytest.mark.parametrize(
    "column, value",
    [("patient_id", None), ("patient_ids", "[]"), ("patient_ids", '["4"]'), ("object_id", "")],
)
def test_emptied_or_retyped_columns_are_named(journal, triggers_dropped, column, value):
    sql(f"UPDATE audit_auditevent SET {column} = %s WHERE sequence = 9", [value])  # noqa: S608
    assert verified().failure.sequence == 9


def test_a_time_one_microsecond_off_is_named(journal, triggers_dropped):
    later = journal[8].occurred_at + dt.timedelta(microseconds=1)
    sql("UPDATE audit_auditevent SET occurred_at = %s WHERE sequence = 9", [later])
    assert verified().failure.sequence == 9


def test_the_chain_and_position_columns_are_bound_to_the_text(journal, triggers_dropped):
    sql("UPDATE audit_auditevent SET chain = 2 WHERE sequence = 9")
    assert verified().failure.sequence == 9


def test_a_position_column_edited_is_named(journal, triggers_dropped):
    sql("UPDATE audit_auditevent SET chain_sequence = 1000 WHERE sequence = 9")
    assert verified().failure.sequence == 9


def test_a_journal_order_column_edited_is_named_as_a_column_edit(journal, triggers_dropped):
    sql("UPDATE audit_auditevent SET sequence = 1000 WHERE sequence = 9")
    result = verified()
    assert not result.ok and "indexed columns differ" in result.failure.reason


@pytest.mark.skipif(is_postgres, reason="only SQLite stores text in an integer column")
@pytest.mark.parametrize("column", ["actor_id", "patient_id"])
def test_the_word_null_in_an_id_column_is_not_null(without_patient, triggers_dropped, column):
    """SQLite keeps ``'null'`` as text in an integer column: its spelling is ``null`` too, but
    it is not what the entry says."""
    sql(f"UPDATE audit_auditevent SET {column} = 'null' WHERE sequence = 2")  # noqa: S608
    assert verified().failure.sequence == 2


def test_a_column_forged_to_spell_more_keys_is_named(journal, triggers_dropped):
    """A string that would close its own value and carry on with the next keys, if it were
    not escaped."""
    sql(
        "UPDATE audit_auditevent SET object_type = %s WHERE sequence = 9",
        ['regimen","occurred_at":"2020-01-01T00:00:00.000000Z'],
    )
    assert verified().failure.sequence == 9


AWKWARD = [
    'quote " and backslash \\ inside',
    "line\nbreak, tab\t and \x01 control",
    "accents é, CJK 漢字, emoji 🩺",
    '","object_id":"forged',
    "",
]


@pytest.fixture
def without_patient(db):
    return append_events(3, patient_id=None)


@pytest.fixture
def awkward(db) -> list:
    clinician = UserFactory(role="clinician")
    events = []
    for number, text in enumerate(AWKWARD):
        context = request_context(request_id=f'req "{number}" \\', client_address="10.0.0.1")
        with context, transaction.atomic():
            events.append(
                record_event(
                    action="update",
                    actor=clinician,
                    object_type=text,
                    object_id=text,
                    patient_id=number + 1,
                    patient_ids=[7, 3],
                    changes={"object_id": {"old": text, "new": "x"}},
                    detail={"object_id": "decoy", "request_id": "decoy", "note": text},
                )
            )
    return events


def test_awkward_but_legitimate_values_verify_without_the_exact_comparison(awkward, monkeypatch):
    """Quotes, escapes, non-ASCII text, nested keys named like the columns, several patients:
    the scan's spelling agrees with the text by itself (the exact comparison, which would
    hide a spelling mistake, is never asked)."""
    monkeypatch.setattr(verification, "_row_mismatch", lambda sequence: pytest.fail(sequence))
    assert verified().ok


@pytest.mark.parametrize(
    "instant",
    [
        dt.datetime(2026, 3, 1, 9, 30, 0, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 1, 9, 30, 0, 250000, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 1, 9, 30, 0, 120, tzinfo=dt.UTC),
    ],
    ids=["no-fraction", "trailing-zeros", "leading-zeros"],
)
def test_times_the_database_spells_shorter_still_agree(db, monkeypatch, instant):
    """PostgreSQL drops trailing zeros of the fraction, Django a zero fraction on SQLite."""
    with time_machine.travel(instant, tick=False):
        append_events(2)
    monkeypatch.setattr(verification, "_row_mismatch", lambda sequence: pytest.fail(sequence))
    assert verified().ok


def test_an_awkward_value_edited_is_named(awkward, triggers_dropped):
    target = awkward[1].sequence
    sql(
        "UPDATE audit_auditevent SET object_id = 'decoy' WHERE sequence = %s",
        [target],
    )
    assert verified().failure.sequence == target


def test_a_patient_list_edited_among_several_is_named(awkward, triggers_dropped):
    target = awkward[2].sequence
    sql("UPDATE audit_auditevent SET patient_ids = '[3, 3, 7]' WHERE sequence = %s", [target])
    assert verified().failure.sequence == target


def test_the_statements_verification_runs_do_not_grow_with_the_journal(journal):
    """One read of the rows plus a fixed few statements, not one per row or per chain."""

    def statements() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert verified().ok
        return len(captured)

    before = statements()
    append_events(30)
    assert statements() == before <= 4


@pytest.fixture
def several_chains(chains, db):
    """Entries written with several chains configured: version 2 entries on PostgreSQL (chain
    and position in the text), version 1 on SQLite, which keeps one chain."""
    return append_events(5)


def test_a_journal_order_edit_that_keeps_the_order_is_named(several_chains, triggers_dropped):
    """The newest entry renumbered further on: every chain still links in the same order, so
    only the text's own ``sequence`` tells."""
    newest = several_chains[-1].sequence
    sql("UPDATE audit_auditevent SET sequence = %s WHERE sequence = %s", [newest + 5, newest])
    result = verified()
    assert result.failure.sequence == newest + 5
    assert "indexed columns differ" in result.failure.reason
