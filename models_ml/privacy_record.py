"""What the privacy gate and the model card read from a model's privacy record and metrics —
kept apart from ``models_ml.privacy`` so that reading a record does not import torch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PUBLIC, MODEL_OWNERS = "public", "model_owners"


def is_private_record(privacy: dict[str, Any]) -> bool:
    """Whether a model's privacy record is a private run's: it says so (``"private"``), or —
    written before that key — it states an ε. ``{}`` (simulated data only) and
    ``{"private": False, …}`` are non-private."""
    return bool(privacy.get("private", "epsilon" in privacy))


def lifetime_privacy_failures(privacy: dict[str, Any]) -> tuple[str, ...]:
    """What the privacy gate refuses beyond a run's own figures (ε, δ, unit, randomness):

    * a model trained without DP on real patients (``real_patients`` > 0) and no waiver with a
      reason — ``models_ml.training`` refuses to train one, so no such record is written by it;
    * a private run that took a real patient past their lifetime budget (refused likewise).
    """
    failures = []
    if not is_private_record(privacy):
        waiver = privacy.get("waiver") or {}
        if privacy.get("real_patients", 0) and not str(waiver.get("reason", "")).strip():
            failures.append(
                "trained without differential privacy on real patients and no waiver recorded"
            )
        return tuple(failures)
    ledger = privacy.get("patient_ledger") or {}
    if ledger.get("max_cumulative_epsilon_rdp", 0.0) > ledger.get("budget_epsilon", float("inf")):
        failures.append("a patient's lifetime ε is over budget")
    return tuple(failures)


def public_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics a model card or an API may show beyond the model owners: those that
    ``metrics["visibility"]`` marks :data:`PUBLIC`. A metric it does not mark — or a record
    without the map — is the owners' (fail closed)."""
    visibility = metrics.get("visibility") or {}
    return {
        key: value
        for key, value in metrics.items()
        if key != "visibility" and visibility.get(key) == PUBLIC
    }


def metrics_visibility(metrics: dict[str, Any], *, model_owners: Iterable[str]) -> dict[str, str]:
    """The visibility map for ``metrics``: :data:`MODEL_OWNERS` for the keys in
    ``model_owners`` (figures computed from real patients' rows without noise, outside ε),
    :data:`PUBLIC` for the rest."""
    owners = set(model_owners)
    return {
        key: MODEL_OWNERS if key in owners else PUBLIC for key in metrics if key != "visibility"
    }
