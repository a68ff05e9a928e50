"""The producer behind live recommendations: the production model when there is one, the
stepwise protocol otherwise; and the shadow model's silent comparison.

What stops a model proposal, and what only sends it to a clinician:

- **Unhealthy** (``is_healthy`` false): the artifact fails verification or the model raises.
  Its proposals (or the protocol's, when it cannot load at all) are *blocked* by the gate.
- **Under a monitoring alert**: a ``ModelAlert`` of the production model is open *or
  acknowledged* — acknowledging says someone is looking, not that the model is sound; only an
  admin's close, with a reason, ends it (``models_ml.alerts``). The model's proposals still
  reach the clinician, tier ``clinician``, with the alert named in words; none is delivered to
  the patient. A drift or outcome alarm is a statistical signal about the model, not about the
  patient: blocking would also hold back the step-downs that low pressure calls for (the audit
  of issue 11 found exactly that), while review fails closed for escalations and keeps safety
  actions moving. A proposal delivered before the alert opened is withdrawn at the patient's
  next evaluation (``clinicians.evaluation``).
- **Inputs outside the training ranges** (``ModelVersion.input_ranges``, registered from the
  training rows' 0.5th-99.5th percentiles): the model is extrapolating, so a clinician decides,
  told which input, its value and the range. A model registered without ranges is not checked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from models_ml.features import DRUGS, FEATURE_NAMES, HUMAN_NAMES
from models_ml.loaders import load_serving
from models_ml.models import ModelAlert, ShadowComparison, Stage
from models_ml.policy import Producer, model_producer, protocol_producer
from models_ml.protocol import PROTOCOL_VERSION, Proposal, TitrationState
from models_ml.selectors import serving_version_in_stage
from patients.course import Finding, is_at_least_as_strict, rules_record

logger = logging.getLogger("models_ml.serving")

MODEL_ALERT_OPEN = "model_alert_open"
INPUT_OUT_OF_RANGE = "input_out_of_range"


@dataclass(frozen=True)
class OpenModelAlert:
    """A monitoring alert of the serving model that is not closed."""

    kind: str
    status: str
    message: str
    opened_on: str


@dataclass(frozen=True)
class ServingProducer:
    produce: Producer
    version: str
    is_healthy: bool
    # Why the model may not serve this patient although it loads: the course rules in force are
    # weaker than those its simulated-policy gate validated it under.
    refusal: str = ""
    open_alerts: tuple[OpenModelAlert, ...] = ()
    input_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def review_findings(
        self, features: Mapping[str, float], proposal: Proposal
    ) -> tuple[Finding, ...]:
        """Why a clinician must decide this proposal although the gate might let the patient
        make it: the model is under a monitoring alert, or its inputs are outside what it saw
        in training. Only the model's own dose changes are concerned — the protocol's
        proposals and reminders are not model output. Returns ``patients.course.Finding``s."""
        if proposal.producer != self.version or self.version == PROTOCOL_VERSION:
            return ()
        if proposal.kind != "titrate":
            return ()
        findings = []
        if self.open_alerts:
            findings.append(
                Finding(MODEL_ALERT_OPEN, alert_sentence(self.version, self.open_alerts))
            )
        outside = inputs_outside_ranges(self.input_ranges, model_inputs(features, proposal))
        if outside:
            findings.append(
                Finding(
                    INPUT_OUT_OF_RANGE,
                    "Outside what the model saw in training: "
                    + "; ".join(outside)
                    + ". A clinician decides.",
                )
            )
        return tuple(findings)


def alert_sentence(version: str, alerts: tuple[OpenModelAlert, ...]) -> str:
    described = "; ".join(
        f"{alert.kind.replace('_', ' ')} ({alert.status} since {alert.opened_on}): "
        f"{alert.message.rstrip('.')}"
        for alert in alerts
    )
    return (
        f"Model {version} is under a monitoring alert — {described}. A clinician decides until "
        f"a model owner closes it."
    )


def model_inputs(features: Mapping[str, float], proposal: Proposal) -> dict[str, float]:
    """The model's input row for the proposed change, by feature name
    (``models_ml.features.model_row``): the state, the current doses, the change."""
    inputs = {}
    for name in FEATURE_NAMES:
        if name.startswith("delta_"):
            continue
        inputs[name] = _float(features.get(name))
    for drug in DRUGS:
        change = 0.0
        if drug == proposal.medication and proposal.proposed_dose_mg is not None:
            change = float(proposal.proposed_dose_mg) - float(proposal.current_dose_mg or 0)
        inputs[f"delta_{drug}_mg"] = change
    return inputs


def inputs_outside_ranges(
    ranges: Mapping[str, tuple[float, float] | list[float]], inputs: Mapping[str, float]
) -> list[str]:
    """Each input outside its training range, in words ("7-day mean systolic 182 mmHg, range
    seen in training 104-171 mmHg"). Fails closed: an input that is missing or not a number is
    outside. No ranges on record: nothing to check."""
    outside = []
    for name, bounds in ranges.items():
        if name not in inputs:
            continue
        low, high = float(bounds[0]), float(bounds[1])
        value = inputs[name]
        if math.isfinite(value) and low <= value <= high:  # false for a nan bound too
            continue
        label, unit = HUMAN_NAMES.get(name, (name, ""))
        unit = "" if unit in ("count", "fraction") else f" {unit}"
        outside.append(
            f"{label} {_number(value)}{unit}, range seen in training "
            f"{_number(low)}–{_number(high)}{unit}"
        )
    return outside


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "not a number"
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.2g}"


def open_alerts_of(version_id: int) -> tuple[OpenModelAlert, ...]:
    return tuple(
        OpenModelAlert(kind, status, message, opened_at.date().isoformat())
        for kind, status, message, opened_at in ModelAlert.objects.filter(
            model_version_id=version_id, is_open=True
        )
        .order_by("opened_at", "pk")
        .values_list("kind", "status", "message", "opened_at")
    )


def versions_under_alert(versions: set[str]) -> set[str]:
    """Which of these model versions have a monitoring alert that is not closed."""
    if not versions:
        return set()
    return set(
        ModelAlert.objects.filter(model_version__version__in=versions, is_open=True)
        .values_list("model_version__version", flat=True)
        .distinct()
    )


def serving_producer(patient_rules: dict | None = None) -> ServingProducer:
    """The producer for one evaluation. ``patient_rules`` (``patients.course.rules_record``) are
    the course rules in force for the patient: a model validated under stricter ones — or under
    none on record — is refused (its proposals are blocked, never delivered)."""
    production = serving_version_in_stage(Stage.PRODUCTION)
    if production is None:
        return ServingProducer(protocol_producer, PROTOCOL_VERSION, True)
    try:
        model = load_serving(production)
    except Exception:
        logger.exception("production_model_unloadable", extra={"model_version": production.version})
        return ServingProducer(protocol_producer, production.version, False)
    refusal = ""
    validated = production.course_rules
    serving = patient_rules if patient_rules is not None else rules_record()
    if not validated or not is_at_least_as_strict(serving, validated):
        refusal = (
            f"Model {production.version} was validated under course rules "
            f"{validated or 'not on record'}; the rules in force are weaker."
        )
    return ServingProducer(
        model_producer(model, production.version),
        production.version,
        True,
        refusal,
        open_alerts=open_alerts_of(production.pk),
        input_ranges=_ranges(production.input_ranges),
    )


def _ranges(recorded: object) -> dict[str, tuple[float, float]]:
    """The recorded ranges as numbers; a malformed one becomes (nan, nan), which no input
    is inside: fail closed, to a clinician."""
    ranges = {}
    for name, bounds in (recorded if isinstance(recorded, dict) else {}).items():
        try:
            low, high = (float(value) for value in bounds)
        except (TypeError, ValueError):
            low = high = math.nan
        ranges[str(name)] = (low, high)
    return ranges


def compare_in_shadow(
    *, patient_id: int, features, state: TitrationState, delivered: Proposal
) -> ShadowComparison | None:
    """Run the shadow model beside production on a real evaluation; store, never deliver."""
    shadow = serving_version_in_stage(Stage.SHADOW)
    if shadow is None:
        return None
    try:
        proposal = model_producer(load_serving(shadow), shadow.version, explain=False)(
            features, state
        )
    except Exception:
        logger.exception("shadow_model_failed", extra={"model_version": shadow.version})
        return None
    agrees = (
        proposal.kind == delivered.kind
        and proposal.medication == delivered.medication
        and proposal.proposed_dose_mg == delivered.proposed_dose_mg
    )
    return ShadowComparison.objects.create(
        model_version_id=shadow.pk,
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
