"""The tier gate: may a proposed dose change reach the patient directly?

Pure and total: whatever the producer returned (NaN, ±inf, negative, huge, a string, None) and
whatever the bounds, the answer is a tier, and ``patient`` only when every condition holds
(docs/architecture.md, "tier 1"). Any exception inside the gate yields ``blocked``: the gate
fails closed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from clinicians.models import Tier

# A proposal beyond this is not a dose but a producer failure (no antihypertensive we titrate
# has a labelled maximum above 50 mg; the column holds 99999.99).
IMPLAUSIBLE_DOSE_MG = Decimal("1000")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Bounds:
    min_dose_mg: Decimal
    max_dose_mg: Decimal
    max_auto_step_mg: Decimal


@dataclass(frozen=True)
class GateContext:
    bounds: Bounds | None
    data_is_fresh: bool
    data_is_sufficient: bool
    adherence_is_adequate: bool
    has_open_crisis: bool
    has_open_alert: bool
    producer_is_healthy: bool
    # The treatment-course rules' verdict on this change (``patients.course.assess_change``):
    # codes that block it, and codes that only a clinician may act on.
    course_blocked: tuple[str, ...] = ()
    course_review: tuple[str, ...] = ()
    # Bounds entered at enrolment but not yet confirmed by a clinician: still no bounds, said so.
    bounds_pending: bool = False


@dataclass(frozen=True)
class GateDecision:
    tier: str
    reasons: tuple[str, ...]
    proposed_dose_mg: Decimal | None  # None when the proposal was not a usable dose


# The gate's reasons in words, for the portal and the patient's phone (the course rules carry
# their own messages, ``patients.course.Finding``).
REASON_TEXT = {
    "proposal_not_a_dose": "The model did not propose a usable dose.",
    "current_dose_unknown": "The current dose is not known.",
    "no_bounds": "No safety bounds are set for this drug.",
    "bounds_pending": "The safety bounds for this drug wait for a clinician's confirmation.",
    "open_crisis": "A hypertensive crisis alert is open.",
    "stale_data": "No recent blood pressure: the data are stale.",
    "producer_unhealthy": "The model could not be loaded or failed to answer.",
    "gate_error": "The safety check failed; nothing reaches the patient.",
    "outside_bounds": "The dose is outside the clinician's bounds.",
    "step_too_large": "The step is larger than the clinician allows without review.",
    "no_change": "The proposal does not change the dose.",
    "insufficient_data": "Too few home readings in the last 7 days.",
    "low_adherence": "Less than 80% of doses were taken in the last 7 days.",
    "open_alert": "An alert is open for this patient.",
    "within_bounds": "Inside the clinician's bounds: the patient may make this change.",
    "adherence_nudge": "A reminder to take the current doses; no dose change.",
    "expired": "The proposal expired before it was acted on.",
    "regimen_changed": "The regimen changed after this proposal was made.",
}


def as_dose(value: object) -> Decimal | None:
    """A finite, non-negative, plausible dose rounded to 0.01 mg, or None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        dose = Decimal(str(value)) if not isinstance(value, Decimal) else value
        if not dose.is_finite() or dose < 0 or dose > IMPLAUSIBLE_DOSE_MG:
            return None
        return dose.quantize(CENT, rounding=ROUND_HALF_EVEN)
    except (InvalidOperation, ValueError, TypeError):
        return None


def gate(
    *, current_dose_mg: object, proposed_dose_mg: object, context: GateContext
) -> GateDecision:
    try:
        return _gate(current_dose_mg, proposed_dose_mg, context)
    except Exception:  # fail closed, whatever went wrong
        return GateDecision(Tier.BLOCKED, ("gate_error",), None)


def _gate(current_raw: object, proposed_raw: object, context: GateContext) -> GateDecision:
    proposed = as_dose(proposed_raw)
    current = as_dose(current_raw)
    blocked: list[str] = []
    if proposed is None:
        blocked.append("proposal_not_a_dose")
    if current is None:
        blocked.append("current_dose_unknown")
    if context.bounds is None:
        blocked.append("bounds_pending" if context.bounds_pending else "no_bounds")
    if context.has_open_crisis:
        blocked.append("open_crisis")
    if not context.data_is_fresh:
        blocked.append("stale_data")
    if not context.producer_is_healthy:
        blocked.append("producer_unhealthy")
    blocked.extend(context.course_blocked)
    if blocked:
        return GateDecision(Tier.BLOCKED, tuple(blocked), proposed)

    assert proposed is not None and current is not None and context.bounds is not None
    bounds = context.bounds
    review: list[str] = []
    if not (bounds.min_dose_mg <= proposed <= bounds.max_dose_mg):
        review.append("outside_bounds")
    if abs(proposed - current) > bounds.max_auto_step_mg:
        review.append("step_too_large")
    if proposed == current:
        review.append("no_change")
    if not context.data_is_sufficient:
        review.append("insufficient_data")
    if not context.adherence_is_adequate:
        review.append("low_adherence")
    if context.has_open_alert:
        review.append("open_alert")
    review.extend(context.course_review)
    if review:
        return GateDecision(Tier.CLINICIAN, tuple(review), proposed)
    return GateDecision(Tier.PATIENT, ("within_bounds",), proposed)
