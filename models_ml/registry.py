"""The model registry's services: register a trained candidate, promote it through the gates,
run it in shadow, roll production back — and the registry's status. Every stage change is one of
these functions and an audit event in the same transaction (``model_registered``,
``model_promoted``, ``model_promotion_refused``, ``model_stage_changed``, ``model_rolled_back``).

Trainers (``models_ml.training``, ``models_ml.private_model``) produce a candidate and call
:func:`register`; the gates are run by ``models_ml.gate_evaluation``; artifacts are loaded by
``models_ml.loaders``. Commands (``promote``, ``rollback``, ``model_status``) are thin shells
over these functions.
"""

from __future__ import annotations

from pathlib import Path

from django.db import transaction
from django.utils import timezone

from audit.models import Action
from audit.services import record_event
from core import authz
from core.errors import Conflict
from models_ml import gate_evaluation
from models_ml.features import FEATURE_NAMES, FEATURE_SET_VERSION
from models_ml.lineage import code_version, library_versions
from models_ml.models import DatasetSnapshot, ModelVersion, Stage
from models_ml.rules import WAIVE_GATES, is_allowed_to_waive
from models_ml.selectors import get_version, model_in_stage
from patients.course import is_at_least_as_strict, rules_record


class PromotionRefused(Conflict):
    code = "promotion_refused"


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
            action=Action.MODEL_REGISTERED,
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


def _blocking_gates(
    model_version: ModelVersion, actor, waiver_reason: str, waive=None
) -> tuple[list, list]:
    """(failed gates not waived, gates waived). A waivable gate is waived only with a written
    reason, by someone ``models_ml.waive_gates`` allows (a model owner); ``waive`` names the gates
    to waive (None: every failed waivable one)."""
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
    if waived and not is_allowed_to_waive(actor, WAIVE_GATES, model_version):
        raise PromotionRefused(
            f"Only a model owner may waive a gate ({', '.join(waived)}).", field="waiver"
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
            action=Action.MODEL_PROMOTION_REFUSED,
            actor=actor,
            object_type="model_version",
            object_id=model_version.pk,
            outcome="failure",
            component="" if actor else "models_ml.promote",
            detail={"version": model_version.version, **detail},
        )
    raise PromotionRefused(message)


def _authorize_owner(actor, model_version: ModelVersion | None = None) -> None:
    """A person changing a stage must own the models (``models_ml.own_models``: model owners);
    ``None`` is the operator at the command line without ``--as``, acting as the system."""
    if actor is not None:
        authz.authorize(actor, "models_ml.own_models", model_version)


def promote(version: str, *, actor=None, waiver_reason: str = "", waive=None) -> ModelVersion:
    """Move a candidate (or shadow) to production if every gate passed against what is in
    production *now*: when production, the gates or their cohorts changed since the evaluation,
    the gates are run again first (the paired policy comparison against the current production
    model included) and the record names that version. Waivable gates (fairness, first-line
    choice, training representativeness) may be waived by a model owner with a written reason
    (``waive`` names which; default every failed waivable gate). The previous production model
    is retired and remembered for rollback. A refusal is journalled and changes nothing."""
    model_version = get_version(version)
    _authorize_owner(actor, model_version)
    if model_version.stage not in (Stage.CANDIDATE, Stage.SHADOW):
        raise PromotionRefused(f"{version} is {model_version.stage}, not a candidate.")
    if not model_version.gate_results:
        raise PromotionRefused(f"{version} has not been evaluated; run evaluate.")
    stale = gate_evaluation.stale_because(model_version)
    if stale:
        gate_evaluation.evaluate(version, actor=actor, reason=f"re-run at promotion: {stale}")
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
        production_moved = gate_evaluation.identity(current) != compared_against
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
                action=Action.MODEL_PROMOTED,
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
    """Run a candidate beside production (``models_ml.serving.compare_in_shadow``). The version
    in shadow before it, if any, goes back to candidate; each of the two changes is journalled
    (``model_stage_changed``)."""
    _authorize_owner(actor, get_version(version))
    with transaction.atomic():
        model_version = ModelVersion.objects.select_for_update().get(pk=get_version(version).pk)
        if model_version.stage != Stage.CANDIDATE:
            raise PromotionRefused(f"{version} is {model_version.stage}, not a candidate.")
        for replaced in ModelVersion.objects.select_for_update().filter(stage=Stage.SHADOW):
            _change_stage(
                replaced,
                Stage.CANDIDATE,
                actor=actor,
                component="models_ml.shadow",
                detail={"version": replaced.version, "replaced_by": version},
            )
        _change_stage(model_version, Stage.SHADOW, actor=actor, component="models_ml.shadow")
    return model_version


def _change_stage(
    model_version: ModelVersion,
    stage: str,
    *,
    actor,
    component: str,
    detail: dict | None = None,
) -> None:
    """Move ``model_version`` (locked by the caller) to ``stage`` and journal it, inside the
    caller's transaction."""
    old_stage = model_version.stage
    model_version.stage = stage
    model_version.save(update_fields=["stage"])
    record_event(
        action=Action.MODEL_STAGE_CHANGED,
        actor=actor,
        object_type="model_version",
        object_id=model_version.pk,
        component="" if actor else component,
        changes={"stage": {"old": str(old_stage), "new": str(stage)}},
        detail=detail,
    )


def rollback(*, actor=None) -> ModelVersion | None:
    """Retire the production model and restore the one it replaced (the protocol when none)."""
    _authorize_owner(actor)
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
            action=Action.MODEL_ROLLED_BACK,
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
