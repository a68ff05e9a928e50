"""Registry services: train and register, evaluate through the gates, promote, shadow, roll
back, load verified artifacts. Every stage change is an audit event in the same transaction.

Commands (``train``, ``evaluate``, ``promote``, ``rollback``, ``model_status``) and Celery tasks
are thin shells over these functions.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import record_event
from core.errors import Conflict, DomainError, NotFound
from models_ml import gates
from models_ml.dataset import (
    DEMOGRAPHIC_COLUMNS,
    TrainingSet,
    database_training_set,
    simulated_training_set,
)
from models_ml.dose_model import (
    MODEL_KIND,
    load_dose_model,
    save_dose_model,
    train_dose_model,
)
from models_ml.features import FEATURE_NAMES, FEATURE_SET_VERSION
from models_ml.model_card import library_versions
from models_ml.models import DatasetSnapshot, ModelVersion, Stage
from patients.course import is_at_least_as_strict, rules_record

logger = logging.getLogger("models_ml.registry")

MIN_TRAINING_ROWS = 500
MIN_TRAINING_PATIENTS = 50
# Large enough that the fairness gate has power in groups of a few percent (about 9,600 rows).
EVALUATION_COHORT = {"n_patients": 800, "days": 182, "seed": 4242}
# Deliberately unrepresentative training cohorts, to show that the gates stop what they should.
SKEWS = {
    "exclude-black": lambda p: p.demographics.race != "black_or_african_american",
    # Recruited from mild hypertension only (untreated baseline < 140 mmHg systolic).
    "mild-only": lambda p: p.baseline_systolic_mmhg < 140,
}
DEFAULT_PRIVACY_BUDGET_EPSILON = 6.0


class TrainingRefused(DomainError):
    code = "training_refused"


class PromotionRefused(Conflict):
    code = "promotion_refused"


def data_dir(kind: str) -> Path:
    path = Path(settings.DATA_DIR) / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def code_version() -> str:
    """The git commit of the running code when it runs from a checkout, else the package
    version (read from the files: no subprocess on the serving path)."""
    git = Path(settings.BASE_DIR) / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:40]
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()[:40]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0][:40]
    except OSError:
        pass
    from importlib.metadata import version

    return f"clinaiops-{version('clinaiops')}"


# --- datasets ---------------------------------------------------------------------------------


def save_training_set(training: TrainingSet) -> Path:
    """Content-addressed ``.npz`` (no pickle: strings are fixed-width unicode arrays)."""
    path = data_dir("datasets") / f"{training.content_hash}.npz"
    if not path.exists():
        columns = {
            f"demo_{c}": training.demographics[c].astype(str).to_numpy(dtype=str)
            for c in DEMOGRAPHIC_COLUMNS
        }
        np.savez_compressed(
            path,
            features=training.features,
            targets=training.targets,
            patient_ids=training.patient_ids.astype(str),
            **columns,
        )
    return path


def load_training_set(content_hash: str) -> TrainingSet:
    path = data_dir("datasets") / f"{content_hash}.npz"
    if not path.exists():
        raise NotFound(f"dataset {content_hash[:12]} is not in the data directory")
    with np.load(path, allow_pickle=False) as stored:
        demographics = pd.DataFrame({c: stored[f"demo_{c}"] for c in DEMOGRAPHIC_COLUMNS})
        demographics["age_years"] = demographics["age_years"].astype(int)
        training = TrainingSet(
            stored["features"],
            stored["targets"],
            stored["patient_ids"].astype(object),
            demographics,
        )
    if training.content_hash != content_hash:
        raise DomainError(f"dataset {content_hash[:12]} does not match its hash")
    return training


def evaluation_set() -> TrainingSet:
    """The fixed held-out population every candidate is judged on (cached on disk)."""
    marker = data_dir("datasets") / "evaluation.hash"
    if marker.exists():
        try:
            return load_training_set(marker.read_text().strip())
        except DomainError:
            logger.warning("evaluation_set_rebuilt")
    training = simulated_training_set(**EVALUATION_COHORT)
    save_training_set(training)
    marker.write_text(training.content_hash)
    return training


def build_training_set(*, n_patients: int, seed: int, skew: str | None = None) -> TrainingSet:
    if skew and skew not in SKEWS:
        raise DomainError(f"unknown skew {skew!r}", field="skew")
    include = SKEWS[skew] if skew else None
    simulated = simulated_training_set(n_patients=n_patients, seed=seed, include=include)
    training = TrainingSet.concatenate([simulated, database_training_set()])
    training.source = {
        "simulated": simulated.source,
        "database_rows": len(training) - len(simulated),
        "skew": skew,
    }
    return training


def snapshot(training: TrainingSet, *, budget_epsilon: float) -> DatasetSnapshot:
    from models_ml.privacy import real_patient_keys

    # δ ≤ 1/(10 U) for U the privacy units (patients) — 1/U itself is what publishing one
    # patient at random achieves. Every subset trained on has fewer patients, so it holds there.
    patients = len(np.unique(training.patient_ids))
    delta = 10 ** -int(np.ceil(np.log10(10 * max(patients, 1))))
    dataset, _ = DatasetSnapshot.objects.get_or_create(
        content_hash=training.content_hash,
        defaults={
            "row_count": len(training),
            "patient_count": patients,
            "feature_set": FEATURE_SET_VERSION,
            # How many of its patients are people (db-…), not simulated: their rows are
            # trained on only under DP or an admin's waiver.
            "source": {
                **training.source,
                "real_patients": len(real_patient_keys(training.patient_ids)),
            },
            "privacy_budget_epsilon": budget_epsilon,
            "delta": delta,
        },
    )
    return dataset


# --- training ---------------------------------------------------------------------------------


def _next_version(prefix: str) -> str:
    count = ModelVersion.objects.filter(version__startswith=prefix).count()
    return f"{prefix}-{count + 1:03d}"


def train_model(
    *,
    private: bool | None = False,
    epsilon: float | None = None,
    n_patients: int = 600,
    seed: int = 7,
    skew: str | None = None,
    actor=None,
    training: TrainingSet | None = None,
    non_private_waiver: str = "",
) -> ModelVersion:
    """Train, save and register a candidate. Refuses tiny data and privacy overruns before any
    work is spent, and leaves the production model untouched in every case.

    Real patients' rows (``db-…``) are trained on under DP-SGD only, within each patient's
    lifetime budget (``models_ml.private_model``), unless an admin records
    ``non_private_waiver``: a reason, journalled and kept in the model's privacy record.
    ``private=None`` trains privately whenever the data hold a real patient (what automatic
    retraining asks for)."""
    from models_ml.privacy import real_patient_keys
    from models_ml.privacy_record import metrics_visibility

    training = (
        training
        if training is not None
        else build_training_set(n_patients=n_patients, seed=seed, skew=skew)
    )
    patients = len(np.unique(training.patient_ids))
    if len(training) < MIN_TRAINING_ROWS or patients < MIN_TRAINING_PATIENTS:
        raise TrainingRefused(
            f"Training needs at least {MIN_TRAINING_ROWS} rows from {MIN_TRAINING_PATIENTS} "
            f"patients; this dataset has {len(training)} rows from {patients}."
        )
    real_patients = real_patient_keys(training.patient_ids)
    private = bool(real_patients) if private is None else private
    waiver = None
    if private and non_private_waiver.strip():
        raise TrainingRefused("A non-private waiver applies to non-private training only.")
    if not private and real_patients:
        from models_ml.private_model import nonprivate_waiver

        waiver = nonprivate_waiver(real_patients, non_private_waiver, actor)
    train, held_out = training.split_by_patient(0.2)
    if not len(train) or not len(held_out):
        raise TrainingRefused("The held-out split left no patients on one side; add patients.")
    dataset = snapshot(training, budget_epsilon=DEFAULT_PRIVACY_BUDGET_EPSILON)
    save_training_set(training)
    if private:
        from models_ml.private_model import train_private_candidate

        return train_private_candidate(
            training=training,
            train=train,
            held_out=held_out,
            dataset=dataset,
            epsilon=epsilon,
            seed=seed,
            actor=actor,
        )
    model = train_dose_model(train.features, train.targets, seed=seed)
    version = _next_version("dose-gbr")
    path = data_dir("models") / f"{version}.skops"
    sha256 = save_dose_model(model, path)
    held_mae = np.abs(model.predict(held_out.features) - held_out.targets).mean(axis=0)
    metrics = {
        "train_rows": len(train),
        "held_out_rows": len(held_out),
        "held_out_mae_systolic_mmhg": float(held_mae[0]),
        "held_out_mae_diastolic_mmhg": float(held_mae[1]),
    }
    # Computed on real patients' rows: for the model owners (privacy_record.public_metrics).
    metrics["visibility"] = metrics_visibility(
        metrics,
        model_owners=(
            ("held_out_mae_systolic_mmhg", "held_out_mae_diastolic_mmhg")
            if real_patient_keys(held_out.patient_ids)
            else ()
        ),
    )
    # Simulated data only: {} as before. On real patients (with a waiver, or it was refused
    # above) the record says so, and the privacy gate judges it
    # (privacy_record.lifetime_privacy_failures).
    privacy = (
        {"private": False, "real_patients": len(real_patients), "waiver": waiver}
        if real_patients
        else {}
    )
    with transaction.atomic():
        model_version = register(
            version=version,
            kind=MODEL_KIND,
            path=path,
            sha256=sha256,
            dataset=dataset,
            parameters={
                "n_estimators": 200,
                "max_depth": 3,
                "learning_rate": 0.05,
                "seed": seed,
                "held_out_fraction": 0.2,
            },
            metrics=metrics,
            reference=_reference_sample(train.features, model.predict(train.features)[:, 0]),
            input_ranges=input_ranges(train.features),
            privacy=privacy,
            actor=actor,
        )
        if waiver:
            record_event(
                action="nonprivate_training_waived",
                actor=actor,
                object_type="model_version",
                object_id=model_version.pk,
                patient_ids=real_patients,
                detail={
                    "version": version,
                    "real_patients": len(real_patients),
                    "reason": waiver["reason"],
                },
            )
    return model_version


def _reference_sample(features: np.ndarray, predictions: np.ndarray, size: int = 2000) -> dict:
    rng = np.random.default_rng(0)
    index = rng.choice(len(features), size=min(size, len(features)), replace=False)
    return {
        "columns": list(FEATURE_NAMES),
        "features": features[index].tolist(),
        "predictions": predictions[index].tolist(),
    }


def input_ranges(features: np.ndarray) -> dict:
    """Per feature, the range the model saw in training (its 0.5th to 99.5th percentile, so that
    one extreme row does not widen it): serving sends a proposal whose inputs fall outside to a
    clinician (``models_ml.serving``)."""
    if not len(features):
        return {}
    low = np.percentile(features, 0.5, axis=0)
    high = np.percentile(features, 99.5, axis=0)
    return {name: [float(a), float(b)] for name, a, b in zip(FEATURE_NAMES, low, high, strict=True)}


def register(
    *,
    version: str,
    kind: str,
    path: Path,
    sha256: str,
    dataset: DatasetSnapshot,
    parameters: dict,
    metrics: dict,
    reference: dict,
    privacy: dict,
    input_ranges: dict | None = None,
    actor=None,
) -> ModelVersion:
    with transaction.atomic():
        model_version = ModelVersion.objects.create(
            version=version,
            kind=kind,
            artifact_path=str(path),
            artifact_sha256=sha256,
            feature_set=FEATURE_SET_VERSION,
            feature_names=list(FEATURE_NAMES),
            dataset=dataset,
            code_version=code_version(),
            parameters={**parameters, "libraries": library_versions()},
            metrics=metrics,
            reference_sample=reference,
            input_ranges=input_ranges or {},
            privacy=privacy,
        )
        record_event(
            action="model_registered",
            actor=actor,
            object_type="model_version",
            object_id=model_version.pk,
            component="" if actor else "models_ml.train",
            detail={
                "version": version,
                "kind": kind,
                "sha256": sha256,
                "dataset": dataset.content_hash,
                "privacy": privacy,
            },
        )
    return model_version


# --- loading ----------------------------------------------------------------------------------

_cache: dict[tuple[str, str], object] = {}
_cache_lock = threading.Lock()


def load(model_version: ModelVersion):
    """The verified artifact (hash and feature set checked), cached per version and hash."""
    key = (model_version.version, model_version.artifact_sha256)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    if (
        model_version.feature_set != FEATURE_SET_VERSION
        or tuple(model_version.feature_names) != FEATURE_NAMES
    ):
        from models_ml.dose_model import FeatureSetMismatch

        raise FeatureSetMismatch(
            f"{model_version.version} uses {model_version.feature_set}; the code computes "
            f"{FEATURE_SET_VERSION}"
        )
    if model_version.kind == MODEL_KIND:
        model = load_dose_model(
            Path(model_version.artifact_path), sha256=model_version.artifact_sha256
        )
    else:
        from models_ml.private_model import load_private_model

        model = load_private_model(model_version)
    with _cache_lock:
        _cache[key] = model
    return model


def model_in_stage(stage: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(stage=stage).first()


@dataclass
class LoadedModel:
    version: ModelVersion
    model: object


def loaded_in_stage(stage: str) -> LoadedModel | None:
    model_version = model_in_stage(stage)
    return LoadedModel(model_version, load(model_version)) if model_version else None


# --- gates and stages ---------------------------------------------------------------------------


def get_version(version: str) -> ModelVersion:
    model_version = ModelVersion.objects.filter(version=version).first()
    if model_version is None:
        raise NotFound(f"No model version {version!r}.", field="version")
    return model_version


# The gates ``evaluate`` runs; a record made under another set is re-run at promotion.
GATE_SET = "gates-2: paired policy by subgroup, first-line, representativeness, clustered fairness"


def _identity(model_version: ModelVersion | None) -> dict | None:
    if model_version is None:
        return None
    return {"version": model_version.version, "sha256": model_version.artifact_sha256}


def _gate_references(production: ModelVersion | None) -> dict:
    """What a gate record was judged against: the references and the gates' configuration.
    Promotion compares it with the present one (``_stale_because``)."""
    return {
        "gate_set": GATE_SET,
        "protocol": gates.PROTOCOL_VERSION,
        "production": _identity(production),
        "policy_cohort": gates.cohort_specification(),
        "evaluation_cohort": dict(EVALUATION_COHORT),
        "code_version": code_version(),
    }


def _current_production(model_version: ModelVersion) -> ModelVersion | None:
    return ModelVersion.objects.filter(stage=Stage.PRODUCTION).exclude(pk=model_version.pk).first()


def _training_data(model_version: ModelVersion) -> TrainingSet | None:
    """The candidate's training snapshot, or None when its arrays are gone (the
    representativeness gate then fails closed)."""
    try:
        return load_training_set(model_version.dataset.content_hash)
    except DomainError:
        return None


def evaluate(version: str, *, actor=None, reason: str = "") -> gates.GateReport:
    """Run every gate against the protocol and the current production model, and store the
    evidence with what it was judged against (``gate_results["references"]``). ``reason``
    says why when it is not a plain evaluation (a re-run at promotion)."""
    model_version = get_version(version)
    candidate = load(model_version)
    production_version = _current_production(model_version)
    production = load(production_version) if production_version is not None else None
    references = _gate_references(production_version)
    evaluation = evaluation_set()
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
            action="model_evaluated",
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


def _stale_because(model_version: ModelVersion) -> str:
    """Why the stored gate record no longer judges the candidate against what is true now
    ("" when it still does): production changed, or the gates, their cohorts or the code."""
    references = (model_version.gate_results or {}).get("references")
    if not references or references.get("gate_set") != GATE_SET:
        return "the record was made by an earlier set of gates"
    now = _gate_references(_current_production(model_version))
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


def _blocking_gates(
    model_version: ModelVersion, actor, waiver_reason: str, waive=None
) -> tuple[list, list]:
    """(failed gates not waived, gates waived). A waivable gate is waived only with a written
    reason, by an admin; ``waive`` names the gates to waive (None: every failed waivable one)."""
    report = model_version.gate_results
    if not report:
        raise PromotionRefused(f"{model_version.version} has not been evaluated; run evaluate.")
    failed = [gate for gate in report["gates"] if not gate["passed"]]
    waivable = {gate["name"] for gate in report["gates"] if gate.get("waivable")}
    wanted = None if waive is None else set(waive)
    if wanted and wanted - waivable:
        raise PromotionRefused(
            f"{', '.join(sorted(wanted - waivable))} cannot be waived "
            f"(waivable: {', '.join(sorted(waivable))}).",
            field="waiver",
        )
    waived = [
        gate["name"]
        for gate in failed
        if gate["name"] in waivable
        and waiver_reason.strip()
        and (wanted is None or gate["name"] in wanted)
    ]
    if waived and getattr(actor, "role", None) != "admin":
        raise PromotionRefused(
            f"Only an admin may waive a gate ({', '.join(waived)}).", field="waiver"
        )
    return [gate["name"] for gate in failed if gate["name"] not in waived], waived


def _failure_reasons(model_version: ModelVersion, names: list[str]) -> dict[str, list[str]]:
    reasons = {}
    for gate in (model_version.gate_results or {}).get("gates", []):
        if gate["name"] in names:
            detail = gate.get("detail") or {}
            reasons[gate["name"]] = list(detail.get("failures") or detail.get("violations") or [])
    return reasons


def _refuse(model_version: ModelVersion, actor, message: str, detail: dict) -> None:
    with transaction.atomic():
        record_event(
            action="model_promotion_refused",
            actor=actor,
            object_type="model_version",
            object_id=model_version.pk,
            outcome="failure",
            component="" if actor else "models_ml.promote",
            detail={"version": model_version.version, **detail},
        )
    raise PromotionRefused(message)


def promote(version: str, *, actor=None, waiver_reason: str = "", waive=None) -> ModelVersion:
    """Move a candidate (or shadow) to production if every gate passed against what is in
    production *now*: when production, the gates or their cohorts changed since the evaluation,
    the gates are run again first (the paired policy comparison against the current production
    model included) and the record names that version. Waivable gates (fairness, first-line
    choice, training representativeness) may be waived by an admin with a written reason
    (``waive`` names which; default every failed waivable gate). The previous production model
    is retired and remembered for rollback. A refusal is journalled and changes nothing."""
    model_version = get_version(version)
    if model_version.stage not in (Stage.CANDIDATE, Stage.SHADOW):
        raise PromotionRefused(f"{version} is {model_version.stage}, not a candidate.")
    if not model_version.gate_results:
        raise PromotionRefused(f"{version} has not been evaluated; run evaluate.")
    stale = _stale_because(model_version)
    if stale:
        evaluate(version, actor=actor, reason=f"re-run at promotion: {stale}")
        model_version.refresh_from_db()
    blocking, waived = _blocking_gates(model_version, actor, waiver_reason, waive)
    if not is_at_least_as_strict(rules_record(), model_version.course_rules or {}):
        blocking.append("course_rules")
    compared_against = model_version.gate_results["references"]["production"]
    if blocking:
        reasons = _failure_reasons(model_version, blocking)
        words = "; ".join(f"{name}: {items[0]}" for name, items in reasons.items() if items)
        _refuse(
            model_version,
            actor,
            f"{version} failed gates: {', '.join(blocking)}." + (f" {words}" if words else ""),
            {
                "failed_gates": blocking,
                "failures": reasons,
                "compared_against": compared_against,
                "re_evaluated": stale,
            },
        )
    with transaction.atomic():
        model_version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        old_stage = model_version.stage
        current = ModelVersion.objects.select_for_update().filter(stage=Stage.PRODUCTION).first()
        production_moved = _identity(current) != compared_against
        if not production_moved:
            if current is not None:
                current.stage = Stage.RETIRED
                current.save(update_fields=["stage"])
            model_version.stage = Stage.PRODUCTION
            model_version.previous_production = current
            model_version.promoted_by = actor
            model_version.promoted_at = timezone.now()
            if waived:
                model_version.waiver_reason, model_version.waived_by = waiver_reason.strip(), actor
            model_version.save()
            record_event(
                action="model_promoted",
                actor=actor,
                object_type="model_version",
                object_id=model_version.pk,
                component="" if actor else "models_ml.promote",
                changes={"stage": {"old": old_stage, "new": "production"}},
                detail={
                    "version": version,
                    "replaced": current.version if current else None,
                    "compared_against": compared_against,
                    "re_evaluated": stale,
                    "waived_gates": waived,
                    "waiver_reason": waiver_reason.strip(),
                },
            )
    if production_moved:
        _refuse(
            model_version,
            actor,
            f"Production changed while {version} was being promoted; promote it again.",
            {"failed_gates": [], "compared_against": compared_against},
        )
    return model_version


def set_shadow(version: str, *, actor=None) -> ModelVersion:
    with transaction.atomic():
        model_version = ModelVersion.objects.select_for_update().get(pk=get_version(version).pk)
        if model_version.stage != Stage.CANDIDATE:
            raise PromotionRefused(f"{version} is {model_version.stage}, not a candidate.")
        ModelVersion.objects.filter(stage=Stage.SHADOW).update(stage=Stage.CANDIDATE)
        model_version.stage = Stage.SHADOW
        model_version.save(update_fields=["stage"])
        record_event(
            action="model_stage_changed",
            actor=actor,
            object_type="model_version",
            object_id=model_version.pk,
            component="" if actor else "models_ml.shadow",
            changes={"stage": {"old": "candidate", "new": "shadow"}},
        )
    return model_version


def rollback(*, actor=None) -> ModelVersion | None:
    """Retire the production model and restore the one it replaced (the protocol when none)."""
    with transaction.atomic():
        current = ModelVersion.objects.select_for_update().filter(stage=Stage.PRODUCTION).first()
        if current is None:
            raise PromotionRefused("No model is in production.")
        previous = current.previous_production
        current.stage = Stage.RETIRED
        current.save(update_fields=["stage"])
        if previous is not None:
            previous.stage = Stage.PRODUCTION
            previous.save(update_fields=["stage"])
        record_event(
            action="model_rolled_back",
            actor=actor,
            object_type="model_version",
            object_id=current.pk,
            component="" if actor else "models_ml.rollback",
            changes={"stage": {"old": "production", "new": "retired"}},
            detail={"restored": previous.version if previous else "protocol"},
        )
    return previous


def status() -> dict:
    rows = []
    for mv in ModelVersion.objects.select_related("dataset").order_by("created_at"):
        rows.append(
            {
                "version": mv.version,
                "kind": mv.kind,
                "stage": mv.stage,
                "created_at": mv.created_at.isoformat(),
                "sha256": mv.artifact_sha256,
                "dataset": mv.dataset.content_hash,
                "rows": mv.dataset.row_count,
                "metrics": mv.metrics,
                "privacy": mv.privacy,
                "gates": {g["name"]: g["passed"] for g in mv.gate_results.get("gates", [])},
                "promoted_at": mv.promoted_at.isoformat() if mv.promoted_at else None,
            }
        )
    production = model_in_stage(Stage.PRODUCTION)
    return {
        "production": production.version if production else None,
        "producer": production.version if production else "stepwise-protocol-1",
        "models": rows,
    }
