"""Evaluating a model version through every gate (``models_ml.gates``) and keeping the evidence
on its record, with what it was judged against: production's version and SHA-256, the protocol,
the cohorts, the code version and the set of gates (``gate_references``). The registry's
promotion asks :func:`stale_because` whether that record still judges the candidate against what
is true now, and runs :func:`evaluate` again when it does not.

An evaluation changes no stage; it is journalled (``model_evaluated``) in the transaction that
stores its results.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from audit.models import Action
from audit.services import record_event
from core.errors import DomainError
from models_ml import dataset_store, gates
from models_ml.dataset import TrainingSet
from models_ml.lineage import code_version
from models_ml.loaders import load
from models_ml.models import ModelVersion, Stage
from models_ml.selectors import get_version

# The gates ``evaluate`` runs; a record made under another set is re-run at promotion.
GATE_SET = "gates-2: paired policy by subgroup, first-line, representativeness, clustered fairness"


def identity(model_version: ModelVersion | None) -> dict | None:
    """A version as a gate record names it (version and artifact SHA-256), None for none."""
    if model_version is None:
        return None
    return {"version": model_version.version, "sha256": model_version.artifact_sha256}


def gate_references(production: ModelVersion | None) -> dict:
    """What a gate record was judged against: the references and the gates' configuration.
    Promotion compares it with the present one (``stale_because``)."""
    return {
        "gate_set": GATE_SET,
        "protocol": gates.PROTOCOL_VERSION,
        "production": identity(production),
        "policy_cohort": gates.cohort_specification(),
        "evaluation_cohort": dict(dataset_store.EVALUATION_COHORT),
        "code_version": code_version(),
    }


def current_production(model_version: ModelVersion) -> ModelVersion | None:
    """The production model ``model_version`` is judged against (itself excluded)."""
    return ModelVersion.objects.filter(stage=Stage.PRODUCTION).exclude(pk=model_version.pk).first()


def _training_data(model_version: ModelVersion) -> TrainingSet | None:
    """The candidate's training snapshot, or None when its arrays are gone (the
    representativeness gate then fails closed)."""
    try:
        return dataset_store.load_training_set(model_version.dataset.content_hash)
    except DomainError:
        return None


def evaluate(version: str, *, actor=None, reason: str = "") -> gates.GateReport:
    """Run every gate against the protocol and the current production model, and store the
    evidence with what it was judged against (``gate_results["references"]``). ``reason``
    says why when it is not a plain evaluation (a re-run at promotion)."""
    model_version = get_version(version)
    candidate = load(model_version)
    production_version = current_production(model_version)
    production = load(production_version) if production_version is not None else None
    references = gate_references(production_version)
    evaluation = dataset_store.evaluation_set()
    runs = gates.run_policies(
        candidate,
        version,
        production,
        production_version.version if production_version is not None else "",
    )
    fairness_result, fairness_report = gates.fairness_gate(candidate, evaluation)
    results = [
        gates.held_out_error_gate(
            candidate,
            evaluation,
            production,
            production_version.version if production_version is not None else "",
        ),
        gates.simulated_policy_gate(runs),
        gates.first_line_gate(runs),
        gates.training_representativeness_gate(_training_data(model_version), evaluation),
        fairness_result,
        gates.privacy_gate(model_version.privacy),
    ]
    report = gates.GateReport(results)
    with transaction.atomic():
        model_version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        previous = model_version.gate_results or {}
        record = {
            **report.to_dict(),
            "references": references,
            "evaluated_at": timezone.now().isoformat(),
            "reason": reason or "evaluation",
        }
        if previous:
            record["previous"] = {
                "passed": previous.get("passed"),
                "references": previous.get("references"),
                "evaluated_at": previous.get("evaluated_at"),
            }
        model_version.gate_results = record
        model_version.fairness_report = fairness_report
        model_version.course_rules = results[1].detail.get("course_rules", {})
        model_version.save(update_fields=["gate_results", "fairness_report", "course_rules"])
        record_event(
            action=Action.MODEL_EVALUATED,
            actor=actor,
            object_type="model_version",
            object_id=model_version.pk,
            component="" if actor else "models_ml.evaluate",
            detail={
                "version": version,
                "passed": report.passed,
                "failed": [r.name for r in report.failed()],
                "production": references["production"],
                "reason": reason or "evaluation",
            },
        )
    return report


def stale_because(model_version: ModelVersion) -> str:
    """Why the stored gate record no longer judges the candidate against what is true now
    ("" when it still does): production changed, or the gates, their cohorts or the code."""
    references = (model_version.gate_results or {}).get("references")
    if not references or references.get("gate_set") != GATE_SET:
        return "the record was made by an earlier set of gates"
    now = gate_references(current_production(model_version))
    if references.get("production") != now["production"]:
        before = (references.get("production") or {}).get("version", "the protocol alone")
        after = (now["production"] or {}).get("version", "no model")
        return f"production is now {after}; the record compared against {before}"
    for key, what in (
        ("policy_cohort", "the simulated cohort"),
        ("evaluation_cohort", "the evaluation cohort"),
        ("protocol", "the protocol"),
        ("code_version", "the code"),
    ):
        if references.get(key) != now[key]:
            return f"{what} changed since the evaluation"
    return ""
