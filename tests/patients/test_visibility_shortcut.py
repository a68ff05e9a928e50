"""A patient's own record is seen without a query (``patients.rules.reaches_own_record``, issue
17): the upload path asked the database twice per batch whether a patient reaches their own
record. The shortcut only ever says yes where the rows say yes; everyone else is still decided
by the rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core import authz
from patients.rules import reached_patients, reaches_own_record
from tests.conftest import bearer_client
from tests.patients.test_ingestion import bp

pytestmark = pytest.mark.django_db


def _visibility_queries(queries) -> list[str]:
    return [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith('SELECT 1 AS "a" FROM')
    ]


def test_the_shortcut_says_yes_only_where_the_rows_do(
    patient_a, patient_b, clinician_a, clinician_b, admin_user, auditor
):
    users = [patient_a.user, patient_b.user, clinician_a, clinician_b, admin_user, auditor]
    said_yes = 0
    for user in users:
        for patient in (patient_a, patient_b):
            if reaches_own_record(user, patient):
                said_yes += 1
                assert reached_patients(user).filter(pk=patient.pk).exists()
            # Whatever the shortcut says, the decision is the rows' decision.
            assert authz.can(user, "patients.view_own_screens", patient) is (
                user.pk == patient.user_id
            )
    assert said_yes == 2  # each patient, their own record


def test_a_launch_narrowed_to_another_patient_is_not_shortcut(patient_a, patient_b):
    user = patient_a.user
    user.compartment_patient_id = patient_b.pk
    assert not reaches_own_record(user, patient_a)
    assert not reached_patients(user).filter(pk=patient_a.pk).exists()


def test_a_patients_upload_asks_no_visibility_query(patient_a):
    client = bearer_client(patient_a.user)
    with CaptureQueriesContext(connection) as queries:
        response = client.post("/api/v1/readings/", {"readings": [bp("bp-1")]}, format="json")
    assert response.status_code == 201
    assert not [sql for sql in _visibility_queries(queries) if "patients_patient" in sql]


def test_someone_else_uploading_is_still_refused(patient_a, clinician_a):
    response = bearer_client(clinician_a).post(
        "/api/v1/readings/", {"readings": [{"client_id": "x"}]}, format="json"
    )
    assert response.status_code == 403
    assert patient_a.readings.count() == 0


def test_only_a_patient_row_is_shortcut(patient_a):
    """Another row that happens to carry the user's id is left to the rows."""
    from types import SimpleNamespace

    lookalike = SimpleNamespace(pk=patient_a.pk, user_id=patient_a.user.pk, discharged_at=None)
    assert not reaches_own_record(patient_a.user, lookalike)
    assert reaches_own_record(patient_a.user, patient_a)
