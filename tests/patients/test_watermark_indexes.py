"""An evaluation's watermark — MAX(id) of one patient's blood-pressure readings, intakes and lab
results — is one index lookup on PostgreSQL, however many rows other patients have (issue 17:
"``MAX(id) … WHERE patient_id = X`` scans backwards for 1.7–2.6 s on quiet patients"); and the
migration that adds the indexes applies and reverts (``patients/migrations/0012``)."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Max
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from patients.models import LabResult, MedicationIntake, Reading, ReadingType
from tests.factories import DeviceFactory, PatientFactory

BUSY_ROWS = 3000
INDEXES = {
    "reading_watermark": Reading,
    "intake_watermark": MedicationIntake,
    "lab_watermark": LabResult,
}


def _watermark_queries(patient):
    return {
        "reading_watermark": Reading.objects.filter(
            patient=patient, reading_type=ReadingType.BLOOD_PRESSURE
        ),
        "intake_watermark": MedicationIntake.objects.filter(patient=patient),
        "lab_watermark": LabResult.objects.filter(patient=patient),
    }


def _rows(patient, count: int, start: int) -> None:
    now = timezone.now()
    device = DeviceFactory(patient=patient)
    Reading.objects.bulk_create(
        Reading(
            patient=patient,
            device=device,
            client_id=f"r-{start + i}",
            reading_type=ReadingType.BLOOD_PRESSURE if i % 4 == 0 else ReadingType.HEART_RATE,
            systolic_mmhg=130 if i % 4 == 0 else None,
            diastolic_mmhg=80 if i % 4 == 0 else None,
            value=None if i % 4 == 0 else 70,
            measured_at=now - timedelta(minutes=i),
            received_at=now,
        )
        for i in range(count)
    )
    MedicationIntake.objects.bulk_create(
        MedicationIntake(
            patient=patient,
            client_id=f"i-{start + i}",
            medication="amlodipine",
            dose_mg=Decimal("5"),
            taken_at=now - timedelta(hours=i),
            received_at=now,
        )
        for i in range(count)
    )
    LabResult.objects.bulk_create(
        LabResult(
            patient=patient,
            client_id=f"l-{start + i}",
            code="2823-3",
            value=Decimal("4.2"),
            unit="mmol/L",
            original_value=Decimal("4.2"),
            original_unit="mmol/L",
            observed_at=now - timedelta(days=i),
            received_at=now,
        )
        for i in range(count)
    )


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _plan(queryset) -> list[dict]:
    """The executed plan (EXPLAIN ANALYZE) of the watermark query, as Django sends it."""
    with CaptureQueriesContext(connection) as captured:
        queryset.aggregate(top=Max("id"))
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {captured.captured_queries[-1]['sql']}")
        (plan,) = cursor.fetchone()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    return list(_nodes(plan[0]["Plan"]))


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
@pytest.mark.django_db
def test_each_watermark_is_one_index_range_of_the_patient_whatever_the_table_holds():
    quiet, busy = PatientFactory(), PatientFactory()
    _rows(quiet, 5, start=0)
    _rows(busy, BUSY_ROWS, start=10)  # newer ids: a backward scan of the key meets them first
    with connection.cursor() as cursor:
        for model in INDEXES.values():
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
    for index, queryset in _watermark_queries(quiet).items():
        nodes = _plan(queryset)
        scans = [node for node in nodes if "Scan" in node["Node Type"]]
        # One scan, of the watermark index, within the quiet patient's own few entries (before:
        # the primary key backwards, through every newer row of the busy patient).
        assert [(node["Node Type"], node.get("Index Name")) for node in scans] in (
            [("Index Only Scan", index)],
            [("Index Scan", index)],
        ), nodes
        assert "patient_id" in scans[0]["Index Cond"]
        assert scans[0]["Actual Rows"] <= 5, nodes
    for queryset in _watermark_queries(busy).values():
        # The busy patient's newest row is found first, whichever index the planner takes.
        scans = [node for node in _plan(queryset) if "Scan" in node["Node Type"]]
        assert [node["Actual Rows"] for node in scans] == [1], scans


def _indexes_of(model) -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.get_constraints(cursor, model._meta.db_table))


@pytest.mark.django_db(transaction=True)
def test_the_watermark_migration_applies_and_reverts():
    assert all(name in _indexes_of(model) for name, model in INDEXES.items())
    call_command("migrate", "patients", "0011", verbosity=0)
    assert not any(name in _indexes_of(model) for name, model in INDEXES.items())
    call_command("migrate", "patients", "0012", verbosity=0)
    assert all(name in _indexes_of(model) for name, model in INDEXES.items())
