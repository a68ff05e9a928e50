"""An evaluation reads what serving needs of the model's record, not the record (issue 17: "the
219 kB model-version row is decoded twice per evaluation"): the version, the artifact's hash,
the course rules and the input ranges; the evidence columns — parameters, metrics, fairness,
privacy, gate results, the drift reference sample — only when the artifact is loaded, once per
process and version."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clinicians.evaluation import evaluate_patient
from models_ml.models import ModelVersion, ShadowComparison, Stage
from tests.clinicians.conftest import course_ready

pytestmark = pytest.mark.django_db

EVIDENCE = (
    "parameters",
    "metrics",
    "fairness_report",
    "privacy",
    "gate_results",
    "reference_sample",
)
TABLE = ModelVersion._meta.db_table


@pytest.fixture
def production_and_shadow(production_version):
    """A trained model in production, and the same artifact registered again in shadow."""
    production = production_version
    shadow = ModelVersion.objects.get(pk=production.pk)
    shadow.pk = None
    shadow.version = f"{production.version}-shadow"
    shadow.stage = Stage.SHADOW
    shadow.save()
    return production, shadow


def _model_version_reads(queries: list[dict]) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith("SELECT") and f'"{TABLE}"' in q["sql"]]


def _evidence_read(sql: str) -> list[str]:
    selected = sql.split(" FROM ", 1)[0]
    return [name for name in EVIDENCE if re.search(rf'"{TABLE}"\."{name}"', selected)]


def test_an_evaluation_reads_no_evidence_column_of_the_served_models(
    production_and_shadow, clinician_a, patient_a, clinician_b, patient_b
):
    _production, shadow = production_and_shadow
    course_ready(patient_a, clinician_a)
    course_ready(patient_b, clinician_b)
    with CaptureQueriesContext(connection) as first:
        evaluate_patient(patient_a.pk)  # loads both artifacts: their records are read once
    loading = [sql for sql in _model_version_reads(first.captured_queries) if _evidence_read(sql)]
    assert len(loading) <= 2

    with CaptureQueriesContext(connection) as second:
        evaluate_patient(patient_b.pk)
    reads = _model_version_reads(second.captured_queries)
    assert len(reads) == 2, reads  # production and shadow were served
    assert ShadowComparison.objects.filter(model_version=shadow, patient_id=patient_b.pk).exists()
    assert {sql: _evidence_read(sql) for sql in reads} == {sql: [] for sql in reads}
