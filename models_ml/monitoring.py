"""Watching the production model so that an administrator can act on what is found.

Three monitors run daily and weekly (Celery beat, ``clinicians.tasks.monitor_models``, which
gathers the inputs ``clinicians`` owns). Each run writes one ``DriftReport`` row per monitor —
``drift``, ``outcome``, ``overrides`` — with its verdict (``ok``, ``alarm``, or ``insufficient``:
too little data to judge, with the counts), its window and its statistics, so a version's
monitoring history can be read (``GET /api/v1/models/<version>/drift-reports/``). An ``alarm``
opens a ``ModelAlert`` (``models_ml.alerts``); while one is in force the model's proposals go to
a clinician instead of the patient (``models_ml.serving``), and with
``MODEL_RETRAIN_ON_ALERT=1`` a new candidate is trained (never promoted by itself).

Same selection on both sides (drift)
    The live window holds the model's inputs and predicted systolic change at the moments it
    proposed a dose change — the recommendations it made; holds leave no row. The reference
    must be selected the same way, or a resample of the very same population alarms: the
    training rows come from an *exploration* policy (random steps at every decision day,
    patients at target included), while the model proposes to patients above target or
    overtreated, at higher pressures. So the reference (``serving_reference``) is the model
    *serving* simulated patients: ``REFERENCE_COHORT`` (1,000 patients, 182 days, decisions
    every 14 days under the course rules, as the policy gate runs it) and, at each decision,
    the row the model would have put on a recommendation — its own dose change, not a hold
    and not a step down the course rules substituted. Built once per version and artifact, at
    the first monitoring run, kept in ``ModelVersion.reference_sample["serving"]`` with how it
    was made (audited as ``model_reference_built``). Patients are the unit: a simulated patient
    decides several times, a clinic's patient may be proposed to twice in a month, and a
    patient's rows are not independent (``models_ml.drift``).

    Limits: the reference describes a clinic in steady state, its patients followed up to six
    months; a clinic that enrolled everyone last week proposes at higher pressures (first
    decisions: mean systolic 139 against 132 over six months) and may alarm, rightly, on
    a population unlike the validated one. A model trained on real records is still compared
    with the simulated population the gates validated it on.

Windows that adapt to the data
    The daily run looks at the last day, the weekly run at the last week; a monitor that has
    too little data there (``MIN_WINDOW_ROWS`` patients for drift, ``MIN_OUTCOMES`` outcomes,
    ``MIN_DECISIONS`` decisions) looks further back — 7, 28, then 91 days — before it reports
    ``insufficient``. A small clinic is judged on a longer window instead of never.

Thresholds: ``models_ml.drift`` (PSI beyond sampling noise and Holm-corrected KS; a +8 mmHg
systolic shift detected 99 % of the time from 50 patients), ``models_ml.outcome_monitor`` (mean
realised-minus-expected response beyond ±3 mmHg; a model biased by 8 mmHg on every predicted
fall caught from 50 outcomes), overrides (more than half of at least 20 decided proposals
modified or rejected by clinicians).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import Action
from audit.services import record_event
from models_ml import alerts
from models_ml.dataset import MIN_OUTCOME_READINGS, OUTCOME_WINDOW_DAYS, measured_bp
from models_ml.drift import MIN_WINDOW_ROWS, drift_report, effective_size
from models_ml.features import STATE_FEATURES, features_from_simulated_state
from models_ml.models import DriftReport, ModelVersion, Stage
from models_ml.outcome_monitor import MIN_OUTCOMES, outcome_report
from models_ml.policy import applied, course_checked, model_producer, titration_state
from models_ml.simulator import generate_cohort, run_policy

logger = logging.getLogger("models_ml.monitoring")

PREDICTION = "prediction"
UNIT = "patient"
DRIFT_COLUMNS = (*STATE_FEATURES, PREDICTION)


class ServingCohort(TypedDict):
    """The keyword arguments of :func:`simulate_serving` that fix its cohort."""

    n_patients: int
    days: int
    seed: int
    interval_days: int


REFERENCE_COHORT: ServingCohort = {
    "n_patients": 1000,
    "days": 182,
    "seed": 9090,  # not a seed of the training, evaluation or gate cohorts
    "interval_days": 14,
}
REFERENCE_SELECTION = (
    "the model's own dose change at each decision day of simulated patients it serves under "
    "the course rules (holds and substituted step-downs left out)"
)
OVERRIDE_RATE_LIMIT = 0.5  # more than half of the decided proposals modified or rejected
MIN_DECISIONS = 20
WINDOWS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}
LOOKBACK_DAYS = {"daily": (1, 7, 28, 91), "weekly": (7, 28, 91)}
ALERT_KINDS = {
    "drift": "drift",
    "outcome_bias": "outcome",
    "outcome_decay": "outcome",
    "overrides": "overrides",
}

Gather = Callable[[datetime, datetime], Mapping[str, Any]]


# --- the serving reference ---------------------------------------------------------------------


def simulate_serving(
    model,
    version: str,
    *,
    n_patients: int,
    seed: int,
    days: int = 182,
    interval_days: int = 14,
    systolic_offset_mmhg: float = 0.0,
    with_outcomes: bool = False,
) -> pd.DataFrame:
    """The rows a model would put on recommendations while serving a simulated cohort: at each
    decision day, when the model itself proposes a dose change the course rules let through,
    the state features, the predicted systolic change (``prediction``), the patient and the
    day. ``systolic_offset_mmhg`` makes every systolic reading that much higher, as a
    miscalibrated device would, *before* the model decides (so it also changes who is
    proposed to). ``with_outcomes`` adds ``realised``: the mean measured systolic 7-13 days
    after the decision minus the 7-day mean it was made on (the label's definition; NaN with
    fewer than three readings or past the horizon)."""
    produce = model_producer(model, version, explain=False)
    rows: list[dict[str, Any]] = []
    cohort = generate_cohort(n_patients, seed=seed)
    index = {patient.patient_id: i for i, patient in enumerate(cohort)}

    def policy(observed):
        if systolic_offset_mmhg:
            systolic = observed.bp_systolic_mmhg + systolic_offset_mmhg
            observed = dataclasses.replace(
                observed,
                bp_systolic_mmhg=systolic,
                mean_systolic_7d_mmhg=float(systolic.mean()) if len(systolic) else None,
            )
        features = features_from_simulated_state(observed)
        state = titration_state(observed)
        systolic = observed.bp_systolic_mmhg
        lowest = float(np.min(systolic)) if len(systolic) else None
        proposal = produce(features, state)
        final = course_checked(proposal, state, lowest)
        if final is proposal and final.kind == "titrate" and final.proposed_dose_mg is not None:
            rows.append(
                {
                    **{name: features[name] for name in STATE_FEATURES},
                    PREDICTION: final.expected_systolic_change_mmhg,
                    UNIT: observed.patient_id,
                    "day": observed.day,
                    "_index": index[observed.patient_id],
                }
            )
        return applied(observed.regimen, final)

    result = run_policy(
        cohort,
        policy,
        days=days,
        seed=seed,
        interval_days=interval_days,
        keep_trace=with_outcomes,
    )
    frame = pd.DataFrame(rows, columns=[*DRIFT_COLUMNS, UNIT, "day", "_index"])
    if with_outcomes:
        frame["realised"] = _realised_changes(result.trace, frame, days, systolic_offset_mmhg)
    return frame.drop(columns="_index")


def _realised_changes(trace, frame: pd.DataFrame, days: int, offset: float) -> np.ndarray:
    systolic, _, valid = measured_bp(trace)
    first, last = OUTCOME_WINDOW_DAYS
    realised = np.full(len(frame), np.nan)
    for k, (i, day, before) in enumerate(
        zip(frame["_index"], frame["day"], frame["mean_systolic_7d"], strict=True)
    ):
        if day + last > days:
            continue
        mask = valid[i, day + first : day + last]
        if mask.sum() >= MIN_OUTCOME_READINGS:
            realised[k] = systolic[i, day + first : day + last][mask].mean() + offset - before
    return realised


def serving_reference(model_version: ModelVersion) -> pd.DataFrame:
    """The drift reference of a version (module docstring): read from its record, or built by
    simulation (about 20 s for ``REFERENCE_COHORT``) and recorded."""
    from models_ml.loaders import load

    stored = (model_version.reference_sample or {}).get("serving") or {}
    if (
        stored.get("cohort") == REFERENCE_COHORT
        and stored.get("artifact_sha256") == model_version.artifact_sha256
    ):
        return pd.DataFrame(stored["rows"], columns=stored["columns"])
    frame = simulate_serving(load(model_version), model_version.version, **REFERENCE_COHORT)
    return record_serving_reference(model_version, frame)


def record_serving_reference(model_version: ModelVersion, frame: pd.DataFrame) -> pd.DataFrame:
    """Keep ``frame`` (``simulate_serving`` of ``REFERENCE_COHORT``) as the version's drift
    reference, with how it was made, and journal it (``model_reference_built``). Derived
    data, rebuilt whenever the cohort or the artifact changes; nothing else of the record is
    touched."""
    columns = [*DRIFT_COLUMNS, UNIT]
    sample = dict(model_version.reference_sample or {})
    sample["serving"] = {
        "cohort": dict(REFERENCE_COHORT),
        "artifact_sha256": model_version.artifact_sha256,
        "selection": REFERENCE_SELECTION,
        "columns": columns,
        "rows": [
            # Full precision: a rounded 6/7 would no longer equal the live window's 6/7.
            [float(value) for value in row[:-1]] + [row[-1]]
            for row in frame[columns].itertuples(index=False)
        ],
    }
    with transaction.atomic():
        ModelVersion.objects.filter(pk=model_version.pk).update(reference_sample=sample)
        record_event(
            action=Action.MODEL_REFERENCE_BUILT,
            object_type="model_version",
            object_id=model_version.pk,
            component="models_ml.monitoring",
            detail={
                "version": model_version.version,
                "cohort": dict(REFERENCE_COHORT),
                "rows": len(frame),
                "patients": effective_size(frame, UNIT),
            },
        )
    model_version.reference_sample = sample
    return pd.DataFrame(sample["serving"]["rows"], columns=columns)


def current_frame(rows) -> pd.DataFrame:
    """Recent recommendations → the live drift frame: ``(evidence, expected_effect)`` pairs,
    or ``(evidence, expected_effect, patient_id)`` triples (then patients are the unit). Rows
    without features or without a predicted systolic change (reminders) are left out."""
    records: list[dict[str, Any]] = []
    for row in rows:
        evidence, effect = row[0] or {}, row[1] or {}
        features = evidence.get("features")
        if features and effect.get("systolic_mmhg") is not None:
            records.append(
                {
                    **{name: features.get(name, np.nan) for name in STATE_FEATURES},
                    PREDICTION: effect["systolic_mmhg"],
                    UNIT: row[2] if len(row) > 2 else len(records),
                }
            )
    return pd.DataFrame(records, columns=[*DRIFT_COLUMNS, UNIT])


# --- judging a window --------------------------------------------------------------------------


@dataclass
class MonitoringReport:
    version: str
    window: str
    drift: dict = field(default_factory=dict)
    outcome: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)
    override_rate: float | None = None
    decisions: int = 0
    outcome_error_mmhg: float | None = None
    outcomes: int = 0
    alerts: list[str] = field(default_factory=list)
    reports: list[int] = field(default_factory=list)  # DriftReport ids written


@dataclass(frozen=True)
class Span:
    start: datetime | None
    end: datetime


def override_report(decided: int, overridden: int) -> dict[str, Any]:
    """Clinicians' overrides of the model's proposals, as a verdict with its numbers."""
    rate = overridden / decided if decided else None
    if decided < MIN_DECISIONS:
        verdict = "insufficient"
        summary = (
            f"Too little data to judge: {decided} decided proposals; at least {MIN_DECISIONS} "
            f"are needed."
        )
    elif rate is not None and rate > OVERRIDE_RATE_LIMIT:
        verdict = "alarm"
        summary = f"Clinicians modified or rejected {rate:.0%} of {decided} proposals."
    else:
        verdict = "ok"
        summary = f"Clinicians modified or rejected {rate:.0%} of {decided} proposals."
    return {
        "verdict": verdict,
        "summary": summary,
        "decisions": decided,
        "overridden": overridden,
        "override_rate": rate,
        "limit": OVERRIDE_RATE_LIMIT,
        "min_decisions": MIN_DECISIONS,
    }


def assess(
    model_version: ModelVersion,
    *,
    window: str,
    current: pd.DataFrame,
    decided: int,
    overridden: int,
    outcomes: list[tuple[float, float]],
    now: datetime | None = None,
    spans: Mapping[str, Span] | None = None,
) -> MonitoringReport:
    """Judge one window: write a ``DriftReport`` per monitor and open an alert for each alarm
    (one in force per kind and version). ``current`` is the live drift frame
    (``current_frame``), ``outcomes`` (expected, realised) systolic changes in mmHg; ``spans``
    the window each monitor looked at (default: the run's window ending ``now``)."""
    now = now or timezone.now()
    default = Span(now - WINDOWS[window] if window in WINDOWS else None, now)
    spans = {name: (spans or {}).get(name, default) for name in ("drift", "outcome", "overrides")}
    report = MonitoringReport(
        model_version.version, window, decisions=decided, outcomes=len(outcomes)
    )
    reference = serving_reference(model_version)
    drift = drift_report(
        reference,
        current,
        features=list(STATE_FEATURES),
        predictions=[PREDICTION],
        unit_column=UNIT,  # a window without patient ids counts its rows
        window_start=_iso(spans["drift"].start),
        window_end=_iso(spans["drift"].end),
    )
    outcome = outcome_report(
        outcomes, held_out_mae_mmhg=model_version.metrics.get("held_out_mae_systolic_mmhg")
    )
    overrides = override_report(decided, overridden)
    report.drift, report.outcome, report.overrides = drift.to_dict(), outcome.to_dict(), overrides
    report.verdicts = {
        "drift": drift.verdict,
        "outcome": outcome.verdict,
        "overrides": overrides["verdict"],
    }
    report.override_rate = overrides["override_rate"]
    report.outcome_error_mmhg = outcome.stratum("all").mean_abs_error_mmhg

    findings: dict[str, tuple[str, dict]] = {}
    if drift.verdict == "alarm":
        findings["drift"] = (
            f"{window} drift in {', '.join(drift.drifted_columns)}",
            {"drifted": drift.drifted_columns, "summary": drift.summary},
        )
    if outcome.verdict == "alarm" and outcome.has_bias:
        findings["outcome_bias"] = (
            outcome.summary,
            {
                "biased_strata": outcome.biased_strata,
                "mean_error_mmhg": {
                    s.name: s.mean_error_mmhg
                    for s in outcome.strata
                    if s.mean_error_mmhg is not None
                },
                "tolerance_mmhg": outcome.tolerance_mmhg,
                "outcomes": outcome.n_outcomes,
            },
        )
    if outcome.verdict == "alarm" and outcome.has_decay:
        findings["outcome_decay"] = (
            f"realised response differs from expected by {report.outcome_error_mmhg:.1f} mmHg",
            {
                "mean_abs_error_mmhg": report.outcome_error_mmhg,
                "limit_mmhg": outcome.decay_limit_mmhg,
            },
        )
    if overrides["verdict"] == "alarm":
        findings["overrides"] = (
            overrides["summary"],
            {"override_rate": overrides["override_rate"], "decisions": decided},
        )
    counts = {
        "drift": (drift.n_current_effective, drift.n_reference_effective),
        "outcome": (outcome.n_outcomes, 0),
        "overrides": (decided, 0),
    }
    documents = {"drift": report.drift, "outcome": report.outcome, "overrides": overrides}
    with transaction.atomic():
        for monitor, document in documents.items():
            row = DriftReport.objects.create(
                model_version=model_version,
                monitor=monitor,
                verdict=report.verdicts[monitor],
                window_start=spans[monitor].start,
                window_end=spans[monitor].end,
                live_rows=counts[monitor][0],
                reference_rows=counts[monitor][1],
                report={**document, "window": window},
            )
            report.reports.append(row.pk)
        for kind, (message, evidence) in findings.items():
            monitor = ALERT_KINDS[kind]
            evidence = {**evidence, "drift_report": report.reports[list(documents).index(monitor)]}
            if alerts.raise_alert(
                model_version, kind=kind, message=message, evidence=evidence, window=window
            ):
                report.alerts.append(kind)
    if report.alerts and getattr(settings, "MODEL_RETRAIN_ON_ALERT", False):
        from models_ml.tasks import train_candidate

        transaction.on_commit(lambda: train_candidate.delay())
    logger.info(
        "model_monitored",
        extra={"model_version": model_version.version, "count": len(report.alerts)},
    )
    return report


def monitor(
    model_version: ModelVersion, *, window: str, gather: Gather, now: datetime | None = None
) -> MonitoringReport:
    """One scheduled run: each monitor is judged on the shortest look-back (``LOOKBACK_DAYS``)
    that holds enough data for it, the longest when none does. ``gather(since, until)``
    returns the ``clinicians.selectors.monitoring_inputs`` mapping (rows, decided,
    overridden, outcomes)."""
    now = now or timezone.now()
    chosen: dict[str, tuple[Span, Mapping[str, Any], pd.DataFrame]] = {}
    for days in LOOKBACK_DAYS[window]:
        start = now - timedelta(days=days)
        span = Span(start, now)
        inputs = gather(start, now)
        frame = current_frame(inputs["rows"])
        enough = {
            "drift": effective_size(frame, UNIT) >= MIN_WINDOW_ROWS,
            "outcome": len(inputs["outcomes"]) >= MIN_OUTCOMES,
            "overrides": inputs["decided"] >= MIN_DECISIONS,
        }
        last = days == LOOKBACK_DAYS[window][-1]
        for monitor_name, is_enough in enough.items():
            if monitor_name not in chosen and (is_enough or last):
                chosen[monitor_name] = (span, inputs, frame)
        if len(chosen) == len(enough):
            break
    drift_span, _, frame = chosen["drift"]
    outcome_span, outcome_inputs, _ = chosen["outcome"]
    overrides_span, override_inputs, _ = chosen["overrides"]
    return assess(
        model_version,
        window=window,
        current=frame,
        decided=override_inputs["decided"],
        overridden=override_inputs["overridden"],
        outcomes=list(outcome_inputs["outcomes"]),
        now=now,
        spans={"drift": drift_span, "outcome": outcome_span, "overrides": overrides_span},
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def production_model() -> ModelVersion | None:
    return ModelVersion.objects.filter(stage=Stage.PRODUCTION).first()
