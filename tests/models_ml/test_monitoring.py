"""Monitoring of the production model: drift on a shifted population but not on other patients
of the same population served by the model; override rate; an alert sends the model's proposals
to a clinician (tests/models_ml/test_monitoring_integrity.py has the rest)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from django.utils import timezone

from clinicians.models import Recommendation, RecommendationStatus, Tier
from clinicians.tasks import monitor_models
from models_ml import loaders, monitoring
from models_ml.features import STATE_FEATURES
from models_ml.models import ModelAlert
from models_ml.monitoring import assess
from models_ml.serving import serving_producer

pytestmark = pytest.mark.django_db


@pytest.fixture
def simulated(simulated_training):
    return simulated_training


@pytest.fixture
def production(production_version):
    return production_version


def _frame(version, rows: np.ndarray) -> pd.DataFrame:
    columns = version.reference_sample["columns"]
    frame = pd.DataFrame(rows, columns=columns)[list(STATE_FEATURES)]
    frame["prediction"] = loaders.load(version).predict(rows)[:, 0]
    return frame


def test_other_patients_served_by_the_model_raise_no_drift(production):
    """The same population under the same selection as the reference: the model's proposals
    to other simulated patients (a resample of the *training* rows is another selection —
    exploration at every decision day — and is no longer the reference)."""
    served = monitoring.simulate_serving(
        loaders.load(production), production.version, n_patients=200, seed=21
    )
    report = assess(
        production, window="weekly", current=served, decided=0, overridden=0, outcomes=[]
    )
    assert report.verdicts["drift"] == "ok", report.drift["summary"]
    assert report.alerts == []
    assert not ModelAlert.objects.exists()


def test_population_shift_raises_a_drift_alert_and_proposals_go_to_a_clinician(
    production, simulated
):
    from models_ml.dataset import simulated_training_set

    older = simulated_training_set(
        n_patients=160, seed=11, include=lambda p: p.demographics.age_years >= 65
    )
    report = assess(
        production,
        window="weekly",
        current=_frame(production, older.features),
        decided=0,
        overridden=0,
        outcomes=[],
    )
    assert report.alerts == ["drift"]
    assert "age_years" in ModelAlert.objects.get(kind="drift").evidence["drifted"]
    producer = serving_producer()
    assert producer.is_healthy is True  # it loads; its proposals go to a clinician instead
    assert [alert.kind for alert in producer.open_alerts] == ["drift"]
    # One open alert per kind: the next window does not pile up.
    assess(
        production,
        window="weekly",
        current=_frame(production, older.features),
        decided=0,
        overridden=0,
        outcomes=[],
    )
    assert ModelAlert.objects.filter(kind="drift").count() == 1


def test_override_rate_alert_through_the_beat_task(production, patient_a):
    now = timezone.now()
    for index in range(24):
        Recommendation.objects.create(
            patient=patient_a,
            kind="titrate",
            medication="amlodipine",
            current_dose_mg=Decimal("5"),
            proposed_dose_mg=Decimal("10"),
            tier=Tier.CLINICIAN,
            status=RecommendationStatus.REJECTED if index % 4 else RecommendationStatus.APPROVED,
            reason="test",
            model_version=production.version,
            created_at=now,
            decided_at=now,
        )
    assert "overrides" in monitor_models("daily")
    alert = ModelAlert.objects.get(kind="overrides")
    assert alert.evidence["decisions"] == 24 and alert.evidence["override_rate"] == 18 / 24
