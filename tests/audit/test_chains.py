"""Several chains (docs/audit.md, "Chains"): writers on different connections append to
different chains, each chain stays gapless and linked, the signed checkpoints anchor them all,
and both verifiers (database and offline export) name what was tampered with.

PostgreSQL only: SQLite has one writer and so one chain.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import defaultdict

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction

from audit.models import AuditEvent, ChainHead, Checkpoint
from audit.offline import ExportInvalid, verify_export
from audit.services import record_event, seal_checkpoints
from audit.triggers import install_sql, uninstall_sql
from audit.verification import verify_journal
from tests.audit.conftest import is_postgres, sql

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not is_postgres, reason="needs DATABASE_URL pointing at PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]
THREADS, EACH = 8, 12


def write_from_threads(threads: int = THREADS, each: int = EACH) -> None:
    """``threads`` writers, one connection each, appending at the same time."""
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            start.wait()
            for item in range(each):
                with transaction.atomic():
                    record_event(
                        action="update",
                        component=f"writer-{number}",
                        object_type="regimen",
                        object_id=item,
                        patient_id=number + 1,
                        changes={"dose_mg": {"old": item, "new": item + 1}},
                    )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors


def by_chain() -> dict[int, list[AuditEvent]]:
    chains: dict[int, list[AuditEvent]] = defaultdict(list)
    for event in AuditEvent.objects.order_by("sequence"):
        chains[event.chain].append(event)
    return chains


@pytest.fixture
def spread(chains, settings):
    settings.AUDIT_CHECKPOINT_EVERY = 4
    write_from_threads()
    seal_checkpoints()
    return by_chain()


def test_writers_on_several_connections_fill_several_gapless_linked_chains(spread):
    assert len(spread) > 1, "eight connections all landed on one chain"
    assert sum(len(events) for events in spread.values()) == THREADS * EACH
    heads = dict(ChainHead.objects.values_list("id", "last_sequence"))
    for chain, events in spread.items():
        assert [e.chain_sequence for e in events] == list(range(1, len(events) + 1))
        assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(events))
        assert heads[chain] == len(events)
        assert json.loads(events[-1].entry)["chain"] == chain
    sequences = sorted(e.sequence for events in spread.values() for e in events)
    assert len(set(sequences)) == THREADS * EACH


def test_checkpoints_seal_each_chain_in_one_signed_list(spread):
    checkpoints = list(Checkpoint.objects.order_by("index"))
    assert {c.chain for c in checkpoints} == {c for c, ev in spread.items() if len(ev) >= 4}
    assert [c.index for c in checkpoints] == list(range(1, len(checkpoints) + 1))
    for earlier, later in itertools.pairwise(checkpoints):
        assert later.prev_checkpoint == earlier.statement().digest()
    result = verify_journal(full=True)
    assert result.ok, result.line()
    assert result.verified == THREADS * EACH
    assert verify_journal().ok


def test_a_rolled_back_append_leaves_no_gap_in_its_chain(chains):
    with transaction.atomic():
        record_event(action="update", component="tests", object_id=1)
    with pytest.raises(RuntimeError), transaction.atomic():
        record_event(action="update", component="tests", object_id=2)
        raise RuntimeError("the change failed")
    with transaction.atomic():
        last = record_event(action="update", component="tests", object_id=3)
    first = AuditEvent.objects.order_by("sequence").first()
    assert (last.chain, last.chain_sequence) == (first.chain, 2)
    assert last.sequence > first.sequence + 1  # the journal-wide order may skip a number
    assert verify_journal(full=True).ok


def tamper(statement: str, params=None) -> None:
    for drop in uninstall_sql(connection.vendor):
        sql(drop)
    try:
        sql(statement, params)
    finally:
        for install in install_sql(connection.vendor):
            sql(install)


def test_an_edited_entry_in_one_chain_is_named_by_its_sequence(spread):
    _chain, events = max(spread.items(), key=lambda item: len(item[1]))
    target = events[len(events) // 2]
    tamper(
        "UPDATE audit_auditevent SET entry = replace(entry, '\"old\":', '\"was\":') "
        "WHERE sequence = %s",
        [target.sequence],
    )
    result = verify_journal(full=True)
    assert not result.ok and result.failure.sequence == target.sequence


def test_the_newest_entry_of_one_chain_deleted_is_named(spread):
    chain, events = max(spread.items(), key=lambda item: len(item[1]))
    tamper("DELETE FROM audit_auditevent WHERE sequence = %s", [events[-1].sequence])
    result = verify_journal(full=True)
    assert not result.ok
    assert result.failure.chain == chain and result.failure.sequence == len(events)
    assert "deleted from the end" in str(result.failure)


def test_an_entry_moved_to_another_chain_is_named(spread):
    (_, events_a), (chain_b, events_b) = sorted(spread.items())[:2]
    moved = events_a[-1]
    tamper(
        "UPDATE audit_auditevent SET chain = %s, chain_sequence = %s, prev_hash = %s "
        "WHERE sequence = %s",
        [chain_b, len(events_b) + 1, events_b[-1].hash, moved.sequence],
    )
    result = verify_journal(full=True)
    assert not result.ok and result.failure.sequence == moved.sequence, result.line()


def test_an_export_of_several_chains_verifies_offline_and_names_a_removed_line(spread, tmp_path):
    out = tmp_path / "export"
    call_command("audit_export", "--out", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["version"] == 2
    assert set(manifest["chain_heads"]) == {str(chain) for chain in spread}
    summary = verify_export(out)
    assert summary.events == THREADS * EACH  # the export's own event is journalled after it
    assert summary.checkpoints == Checkpoint.objects.count()
    lines = (out / "events.jsonl").read_text().splitlines(keepends=True)
    _chain, events = max(spread.items(), key=lambda item: len(item[1]))
    victim = next(
        n for n, line in enumerate(lines) if json.loads(line)["sequence"] == events[1].sequence
    )
    (out / "events.jsonl").write_text("".join(lines[:victim] + lines[victim + 1 :]))
    with pytest.raises(ExportInvalid):
        verify_export(out)


def test_the_journal_order_follows_every_chain_under_contention(settings):
    """Two chains, eight writers: writers queue on each head, and the journal-wide number is
    drawn only once the head is locked, so it increases along each chain."""
    settings.AUDIT_CHAINS = 2
    write_from_threads(threads=8, each=15)
    for events in by_chain().values():
        assert [e.chain_sequence for e in events] == list(range(1, len(events) + 1))
    result = verify_journal(full=True)
    assert result.ok, result.line()
