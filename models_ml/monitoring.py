"""Watching the production model: feature and prediction drift against its training
reference (PSI and KS, daily and weekly windows), clinician override rate, and realised versus
expected blood-pressure response once outcomes arrive. Thresholds open a :class:`ModelAlert`
for administrators (an open alert marks the model unhealthy: its proposals stop reaching
patients) and may queue retraining of a new candidate — never its promotion. The inputs
(recent recommendations, decisions, outcomes) are gathered by ``clinicians``, which owns them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import record_event
from models_ml.drift import drift_report
from models_ml.features import FEATURE_NAMES, STATE_FEATURES
from models_ml.models import ModelAlert, ModelVersion, Stage

logger = logging.getLogger("models_ml.monitoring")

# PSI 0.1 for these features: a 6 mmHg device offset gives PSI ≈ 0.16 and must be seen
# (bench/tests of models_ml.drift); KS p-values are Holm-corrected across columns.
PSI_THRESHOLD = 0.1
OVERRIDE_RATE_LIMIT = 0.5  # more than half of the decided proposals modified or rejected
MIN_DECISIONS = 20
OUTCOME_DECAY_FACTOR = 2.0  # realised-vs-expected error above twice the held-out MAE
WINDOWS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}


@dataclass
class MonitoringReport:
    version: str
    window: str
    drift: dict = field(default_factory=dict)
    override_rate: float | None = None
    decisions: int = 0
    outcome_error_mmhg: float | None = None
    outcomes: int = 0
    alerts: list[str] = field(default_factory=list)


def _reference_frame(model_version: ModelVersion) -> pd.DataFrame:
    sample = model_version.reference_sample or {}
    columns = sample.get("columns", list(FEATURE_NAMES))
    frame = pd.DataFrame(sample.get("features", []), columns=columns)
    frame["prediction"] = sample.get("predictions", [])
    return frame[[*STATE_FEATURES, "prediction"]]


def current_frame(rows: list[tuple[dict, dict]]) -> pd.DataFrame:
    """(evidence, expected_effect) pairs of recent recommendations → the drift frame."""
    records = []
    for evidence, effect in rows:
        features = (evidence or {}).get("features")
        if features and (effect or {}).get("systolic_mmhg") is not None:
            records.append(
                {
                    **{k: features.get(k, np.nan) for k in STATE_FEATURES},
                    "prediction": effect["systolic_mmhg"],
                }
            )
    return pd.DataFrame(records, columns=[*STATE_FEATURES, "prediction"])


def assess(
    model_version: ModelVersion,
    *,
    window: str,
    current: pd.DataFrame,
    decided: int,
    overridden: int,
    outcomes: list[tuple[float, float]],
    now: datetime | None = None,
) -> MonitoringReport:
    """Judge one window and open alerts for what crosses a threshold (one open alert per kind
    and model). ``outcomes`` are (expected, realised) systolic changes in mmHg."""
    now = now or timezone.now()
    report = MonitoringReport(
        model_version.version, window, decisions=decided, outcomes=len(outcomes)
    )
    drift = drift_report(
        _reference_frame(model_version),
        current,
        features=list(STATE_FEATURES),
        predictions=["prediction"],
        psi_threshold=PSI_THRESHOLD,
    )
    report.drift = drift.to_dict()
    findings: dict[str, tuple[str, dict]] = {}
    if drift.has_drift:
        findings["drift"] = (
            f"{window} drift in {', '.join(drift.drifted_columns)}",
            {"drifted": drift.drifted_columns},
        )
    if decided:
        report.override_rate = overridden / decided
        if decided >= MIN_DECISIONS and report.override_rate > OVERRIDE_RATE_LIMIT:
            findings["overrides"] = (
                f"clinicians modified or rejected {report.override_rate:.0%} "
                f"of {decided} proposals",
                {"override_rate": report.override_rate, "decisions": decided},
            )
    if outcomes:
        errors = [abs(expected - realised) for expected, realised in outcomes]
        report.outcome_error_mmhg = float(np.mean(errors))
        limit = OUTCOME_DECAY_FACTOR * model_version.metrics.get("held_out_mae_systolic_mmhg", 5.0)
        if len(outcomes) >= MIN_DECISIONS and report.outcome_error_mmhg > limit:
            findings["outcome_decay"] = (
                f"realised response differs from expected by {report.outcome_error_mmhg:.1f} mmHg",
                {"mean_abs_error_mmhg": report.outcome_error_mmhg, "limit_mmhg": limit},
            )
    with transaction.atomic():
        for kind, (message, evidence) in findings.items():
            if ModelAlert.objects.filter(
                model_version=model_version, kind=kind, is_open=True
            ).exists():
                continue
            alert = ModelAlert.objects.create(
                model_version=model_version, kind=kind, message=message[:300], evidence=evidence
            )
            report.alerts.append(kind)
            record_event(
                action="create",
                object_type="model_alert",
                object_id=alert.pk,
                component="models_ml.monitoring",
                detail={"version": model_version.version, "kind": kind, "window": window},
            )
    if report.alerts and getattr(settings, "MODEL_RETRAIN_ON_ALERT", False):
        from models_ml.tasks import train_candidate

        transaction.on_commit(lambda: train_candidate.delay())
    logger.info(
        "model_monitored",
        extra={"model_version": model_version.version, "count": len(report.alerts)},
    )
    return report


def production_model() -> ModelVersion | None:
    return ModelVersion.objects.filter(stage=Stage.PRODUCTION).first()
