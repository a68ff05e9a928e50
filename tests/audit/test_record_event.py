"""record_event / record_read: what an entry holds; it lives in the caller's transaction."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.db import transaction

from audit.canonical import GENESIS_HASH, canonical_text, entry_hash
from audit.models import AuditEvent, ChainHead
from audit.services import AuditUsageError, record_event, record_read
from core.context import request_context
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_event_records_actor_role_context_and_old_and_new_values():
    clinician = UserFactory(role="clinician")
    when = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
    with (
        request_context(request_id="req-12345678", client_address="::ffff:10.0.0.7"),
        transaction.atomic(),
    ):
        event = record_event(
            action="update",
            actor=clinician,
            object_type="regimen",
            object_id=42,
            patient_id=7,
            changes={
                "dose_mg": {"old": Decimal("5.0"), "new": Decimal("10.0")},
                "starts_on": {"old": when, "new": None},
            },
        )
    entry = json.loads(event.entry)
    assert entry["actor_id"] == clinician.pk and entry["actor_role"] == "clinician"
    assert entry["changes"] == {
        "dose_mg": {"old": "5.0", "new": "10.0"},
        "starts_on": {"old": "2026-03-01T09:30:00.000000Z", "new": None},
    }
    assert (event.request_id, event.client_address) == ("req-12345678", "::ffff:a00:7")
    assert (event.object_type, event.object_id, event.patient_id, event.patient_ids) == (
        "regimen",
        "42",
        7,
        [7],
    )
    assert event.entry == canonical_text(entry) and event.hash == entry_hash(event.entry)


def test_first_event_links_to_genesis_and_each_next_to_its_predecessor():
    with transaction.atomic():
        first = record_event(action="create", component="tests")
        second = record_event(action="create", component="tests")
    assert (first.sequence, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.sequence, second.prev_hash) == (2, first.hash)
    assert ChainHead.objects.get().last_sequence == 2
    assert ChainHead.objects.get().last_hash == second.hash


def test_event_rolls_back_with_the_change_and_its_sequence_is_reused():
    with transaction.atomic():
        record_event(action="create", component="tests")
    with pytest.raises(RuntimeError), transaction.atomic():
        record_event(action="update", component="tests")
        raise RuntimeError("the change failed")
    with transaction.atomic():
        again = record_event(action="update", component="tests")
    assert again.sequence == 2
    assert list(AuditEvent.objects.values_list("sequence", flat=True)) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_recording_outside_a_transaction_is_a_programming_error():
    with pytest.raises(AuditUsageError, match=r"transaction\.atomic"):
        record_event(action="create", component="tests")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"action": "Create!", "component": "tests"},
        {"action": "created", "component": "tests"},  # a verb outside audit.models.Action
        {"action": "create", "component": "tests", "outcome": "succeeded"},
        {"action": "create"},  # no actor and no component
        {"action": "update", "component": "t", "changes": {"dose_mg": 5}},
        {"action": "read", "component": "t", "patient_ids": ["7"]},
        {"action": "create", "component": "t", "detail": {"x": float("nan")}},
    ],
)
def test_malformed_events_are_refused(kwargs):
    with pytest.raises(ValueError if "detail" in kwargs else AuditUsageError), transaction.atomic():
        record_event(**kwargs)


def test_system_events_name_their_component():
    with transaction.atomic():
        event = record_event(action="model_promoted", component="celery:promote_model")
    assert (event.actor_id, event.actor_role, event.component) == (None, "", "celery:promote_model")


def test_a_read_by_a_clinician_is_one_event_listing_every_patient():
    clinician = UserFactory(role="clinician")
    with transaction.atomic():
        event = record_read(actor=clinician, object_type="reading", patient_ids=[9, 3, 9])
    assert (event.action, event.patient_ids, event.patient_id) == ("read", [3, 9], None)
    assert AuditEvent.objects.count() == 1


def test_a_read_that_showed_no_patient_records_nothing():
    with transaction.atomic():
        assert (
            record_read(actor=UserFactory(role="auditor"), object_type="patient", patient_ids=[])
            is None
        )
    assert not AuditEvent.objects.exists()


def test_a_patient_reading_their_own_data_is_not_journalled():
    with transaction.atomic():
        assert (
            record_read(actor=UserFactory(role="patient"), object_type="reading", patient_ids=[1])
            is None
        )
