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
            "source": training.source,
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
    private: bool = False,
    epsilon: float | None = None,
    n_patients: int = 600,
    seed: int = 7,
    skew: str | None = None,
    actor=None,
    training: TrainingSet | None = None,
) -> ModelVersion:
    """Train, save and register a candidate. Refuses tiny data and privacy overruns before any
    work is spent, and leaves the production model untouched in every case."""
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
    train, held_out = training.split_by_patient(0.2, seed)
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
    return register(
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
        metrics={
            "train_rows": len(train),
            "held_out_rows": len(held_out),
            "held_out_mae_systolic_mmhg": float(held_mae[0]),
            "held_out_mae_diastolic_mmhg": float(held_mae[1]),
        },
        reference=_reference_sample(train.features, model.predict(train.features)[:, 0]),
        privacy={},
        actor=actor,
    )


def _reference_sample(features: np.ndarray, predictions: np.ndarray, size: int = 2000) -> dict:
    rng = np.random.default_rng(0)
    index = rng.choice(len(features), size=min(size, len(features)), replace=False)
    return {
        "columns": list(FEATURE_NAMES),
        "features": features[index].tolist(),
        "predictions": predictions[index].tolist(),
    }


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
            parameters=parameters,
            metrics=metrics,
            reference_sample=reference,
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


def evaluate(version: str, *, actor=None) -> gates.GateReport:
    model_version = get_version(version)
    candidate = load(model_version)
    production = loaded_in_stage(Stage.PRODUCTION)
    if production is not None and production.version.pk == model_version.pk:
        production = None
    evaluation = evaluation_set()
    fairness_result, fairness_report = gates.fairness_gate(candidate, evaluation)
    results = [
        gates.held_out_error_gate(candidate, evaluation, production.model if production else None),
        gates.simulated_policy_gate(
            candidate,
            version,
            production.model if production else None,
            production.version.version if production else "",
        ),
        fairness_result,
        gates.privacy_gate(model_version.privacy),
    ]
    report = gates.GateReport(results)
    with transaction.atomic():
        model_version.gate_results = report.to_dict()
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
            },
        )
    return report


def _blocking_gates(model_version: ModelVersion, actor, waiver_reason: str) -> tuple[list, list]:
    report = model_version.gate_results
    if not report:
        raise PromotionRefused(f"{model_version.version} has not been evaluated; run evaluate.")
    failed = [gate for gate in report["gates"] if not gate["passed"]]
    waived = [gate["name"] for gate in failed if gate["waivable"] and waiver_reason.strip()]
    if waived and getattr(actor, "role", None) != "admin":
        raise PromotionRefused("Only an admin may waive the fairness gate.", field="waiver")
    return [gate["name"] for gate in failed if gate["name"] not in waived], waived


def promote(version: str, *, actor=None, waiver_reason: str = "") -> ModelVersion:
    """Move a candidate (or shadow) to production if every gate passed; the fairness gate may
    be waived by an admin with a written reason. The previous production model is retired and
    remembered for rollback. A refusal is journalled and changes nothing."""
    model_version = get_version(version)
    if model_version.stage not in (Stage.CANDIDATE, Stage.SHADOW):
        raise PromotionRefused(f"{version} is {model_version.stage}, not a candidate.")
    blocking, waived = _blocking_gates(model_version, actor, waiver_reason)
    if not is_at_least_as_strict(rules_record(), model_version.course_rules or {}):
        blocking.append("course_rules")
    if blocking:
        with transaction.atomic():
            record_event(
                action="model_promotion_refused",
                actor=actor,
                object_type="model_version",
                object_id=model_version.pk,
                outcome="failure",
                component="" if actor else "models_ml.promote",
                detail={"version": version, "failed_gates": blocking},
            )
        raise PromotionRefused(f"{version} failed gates: {', '.join(blocking)}.")
    with transaction.atomic():
        model_version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        old_stage = model_version.stage
        current = ModelVersion.objects.select_for_update().filter(stage=Stage.PRODUCTION).first()
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
                "waived_gates": waived,
                "waiver_reason": waiver_reason.strip(),
            },
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
