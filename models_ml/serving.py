"""The producer behind live recommendations: the production model when there is one, the
stepwise protocol otherwise; and the shadow model's silent comparison.

A production model whose artifact fails verification, or that has an open monitoring alert, is
*unhealthy*: its proposals (or the protocol's, when it cannot load at all) go out with the
health flag down, and the gate blocks them from the patient.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from models_ml.models import ModelAlert, ShadowComparison, Stage
from models_ml.policy import Producer, model_producer, protocol_producer
from models_ml.protocol import PROTOCOL_VERSION, Proposal, TitrationState
from models_ml.registry import load, model_in_stage
from patients.course import is_at_least_as_strict, rules_record

logger = logging.getLogger("models_ml.serving")


@dataclass(frozen=True)
class ServingProducer:
    produce: Producer
    version: str
    is_healthy: bool
    # Why the model may not serve this patient although it loads: the course rules in force are
    # weaker than those its simulated-policy gate validated it under.
    refusal: str = ""


def serving_producer(patient_rules: dict | None = None) -> ServingProducer:
    """The producer for one evaluation. ``patient_rules`` (``patients.course.rules_record``) are
    the course rules in force for the patient: a model validated under stricter ones — or under
    none on record — is refused (its proposals are blocked, never delivered)."""
    production = model_in_stage(Stage.PRODUCTION)
    if production is None:
        return ServingProducer(protocol_producer, PROTOCOL_VERSION, True)
    try:
        model = load(production)
    except Exception:
        logger.exception("production_model_unloadable", extra={"model_version": production.version})
        return ServingProducer(protocol_producer, production.version, False)
    healthy = not ModelAlert.objects.filter(model_version=production, is_open=True).exists()
    refusal = ""
    validated = production.course_rules
    serving = patient_rules if patient_rules is not None else rules_record()
    if not validated or not is_at_least_as_strict(serving, validated):
        refusal = (
            f"Model {production.version} was validated under course rules "
            f"{validated or 'not on record'}; the rules in force are weaker."
        )
    return ServingProducer(
        model_producer(model, production.version), production.version, healthy, refusal
    )


def compare_in_shadow(
    *, patient_id: int, features, state: TitrationState, delivered: Proposal
) -> ShadowComparison | None:
    """Run the shadow model beside production on a real evaluation; store, never deliver."""
    shadow = model_in_stage(Stage.SHADOW)
    if shadow is None:
        return None
    try:
        proposal = model_producer(load(shadow), shadow.version, explain=False)(features, state)
    except Exception:
        logger.exception("shadow_model_failed", extra={"model_version": shadow.version})
        return None
    agrees = (
        proposal.kind == delivered.kind
        and proposal.medication == delivered.medication
        and proposal.proposed_dose_mg == delivered.proposed_dose_mg
    )
    return ShadowComparison.objects.create(
        model_version=shadow,
        patient_id=patient_id,
        production_producer=delivered.producer,
        production_medication=delivered.medication,
        production_dose_mg=_dose(delivered.proposed_dose_mg),
        shadow_medication=proposal.medication,
        shadow_dose_mg=_dose(proposal.proposed_dose_mg),
        shadow_kind=proposal.kind,
        agrees=agrees,
    )


def _dose(value) -> Decimal | None:
    return None if value is None else Decimal(value)
