"""Dose proposals from the dose-response model, and adapters that run any producer (model or
protocol) inside the simulator for policy evaluation.

The model policy keeps the protocol's safety preconditions (enough readings; adherence before
escalation) and then asks the model about every one-step change — one strength up or down of a
current drug, or a new drug at its lowest strength — and picks the *smallest* change predicted
to reach the target: the least predicted fall that brings the 7-day mean under the target, or,
if none does, the largest predicted fall. Overtreated patients (mean more than 20 mmHg under
target) get the smallest predicted rise that brings them back into range.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np

from models_ml.features import features_from_simulated_state, model_row
from models_ml.protocol import (
    ADEQUATE_ADHERENCE,
    MIN_READINGS_7D,
    STEP_DOWN_MARGIN_MMHG,
    Proposal,
    TitrationState,
    propose,
    step_down,
)
from patients.course import CourseState, assess_change, holds, is_overtreated
from patients.formulary import FORMULARY

# The simulator's decisions carry no wall-clock time; the course rules only compare times to
# the last change, which the simulator's fixed cadence already spaces by the interval.
COURSE_EPOCH = datetime(2025, 1, 6, tzinfo=UTC)

Producer = Callable[[Mapping[str, float], TitrationState], Proposal]


def candidate_regimens(state: TitrationState) -> list[tuple[str, Decimal, Decimal]]:
    """(drug, current dose, new dose) for every allowed one-step change."""
    regimen = {name: Decimal(dose) for name, dose in state.regimen.items() if name in FORMULARY}
    allowed = state.allowed_max_dose_mg
    changes = []
    for name, drug in FORMULARY.items():
        if allowed is not None and name not in allowed:
            continue
        ceiling = drug.max_dose_mg if allowed is None else min(drug.max_dose_mg, allowed[name])
        strengths = [s for s in drug.strengths_mg if s <= ceiling]
        current = regimen.get(name, Decimal("0"))
        higher = [s for s in strengths if s > current]
        lower = [s for s in drug.strengths_mg if s < current]
        if higher:
            changes.append((name, current, higher[0]))
        if current > 0:
            changes.append((name, current, lower[-1] if lower else Decimal("0")))
    return changes


def model_producer(model, version: str, *, explain: bool = True) -> Producer:
    """A producer backed by ``model`` (a :class:`DoseResponseModel`-like object). Simulated
    evaluation turns ``explain`` off: explanations do not change the course."""

    def produce(features: Mapping[str, float], state: TitrationState) -> Proposal:
        base = propose(state)  # the protocol's preconditions and reasons
        if base.kind == "adherence_nudge" or state.reading_count_7d < MIN_READINGS_7D:
            return Proposal(**{**base.__dict__, "producer": version})
        if state.adherence_rate_7d is not None and state.adherence_rate_7d < ADEQUATE_ADHERENCE:
            return Proposal(kind="hold", reason=base.reason, producer=version)
        mean = float(state.mean_systolic_7d_mmhg or 0.0)
        target = state.target_systolic_mmhg
        above = mean >= target or (state.mean_diastolic_7d_mmhg or 0) >= state.target_diastolic_mmhg
        overtreated = mean < target - STEP_DOWN_MARGIN_MMHG
        if not (above or overtreated):
            return Proposal(kind="hold", reason="blood pressure at target", producer=version)
        options = [c for c in candidate_regimens(state) if (c[2] > c[1]) == above]
        if not options:
            return Proposal(
                kind="hold", reason="no allowed step in that direction", producer=version
            )
        regimen = dict(state.regimen)
        rows = np.vstack([model_row(features, {**regimen, name: new}) for name, _, new in options])
        predicted = model.predict(rows)
        change = predicted[:, 0]
        band: np.ndarray | None = None  # every option's 80 % band, when the choice needed it
        if above:
            falling = [i for i in range(len(options)) if change[i] < 0]
            if not falling:
                return Proposal(
                    kind="hold",
                    reason="no step is predicted to lower the pressure",
                    producer=version,
                )
            # Prefer steps whose pessimistic (10th percentile) fall still keeps the mean above
            # the overtreatment floor: a likely responder must not be pushed into hypotension.
            floor = target - STEP_DOWN_MARGIN_MMHG
            band = model.interval(rows)
            safe = [i for i in falling if mean + band[i, 0] >= floor] or falling
            reaching = [i for i in safe if mean + change[i] < target]
            chosen = (
                max(reaching, key=lambda i: change[i])
                if reaching
                else min(safe, key=lambda i: change[i])
            )
        else:
            floor = target - STEP_DOWN_MARGIN_MMHG
            rising = [i for i in range(len(options)) if mean + change[i] >= floor]
            chosen = (
                min(rising, key=lambda i: change[i])
                if rising
                else max(range(len(options)), key=lambda i: change[i])
            )
        name, current, new = options[chosen]
        interval = band[chosen] if band is not None else model.interval(rows[chosen])[0]
        row = rows[chosen]
        verb = "increase" if new > current else ("stop" if new == 0 else "reduce")
        return Proposal(
            kind="titrate",
            medication=name,
            current_dose_mg=current,
            proposed_dose_mg=new,
            reason=(
                f"7-day mean {mean:.0f} mmHg vs target {target}: {verb} {name} "
                f"(predicted {change[chosen]:+.1f} mmHg)"
            ),
            expected_systolic_change_mmhg=round(float(change[chosen]), 1),
            expected_diastolic_change_mmhg=round(float(predicted[chosen, 1]), 1),
            uncertainty_mmhg=round(float(abs(interval[1] - interval[0]) / 2), 1),
            producer=version,
            # Computed when the proposal is made (Proposal.explained), not for one already open.
            explain=(lambda: model.explain(row)) if explain else None,
        )

    return produce


def protocol_producer(features: Mapping[str, float], state: TitrationState) -> Proposal:
    return propose(state)


def course_checked(proposal: Proposal, state: TitrationState, lowest_systolic: float | None):
    """The proposal production would act on under the treatment-course rules
    (``patients.course``): an increase the rules refuse (at or below target, after a low
    reading) is not made; low readings on a regimen lead to a step down instead. Changes the
    rules send to a clinician (initiation, labs needed, diastolic only) are applied as if the
    clinician approved them — the simulator has no clinician and no laboratory."""
    if proposal.kind != "titrate" or proposal.proposed_dose_mg is None:
        return proposal
    course_state = CourseState(
        now=COURSE_EPOCH,
        regimen=dict(state.regimen),
        evidence_count=state.reading_count_7d,
        mean_systolic_mmhg=state.mean_systolic_7d_mmhg,
        mean_diastolic_mmhg=state.mean_diastolic_7d_mmhg,
        lowest_recent_systolic_mmhg=lowest_systolic,
        target_systolic_mmhg=state.target_systolic_mmhg,
        target_diastolic_mmhg=state.target_diastolic_mmhg,
        may_start=frozenset(FORMULARY),
    )
    if holds(course_state):
        return Proposal(kind="hold", reason="course rules hold", producer=proposal.producer)
    assessment = assess_change(
        course_state, proposal.medication, proposal.current_dose_mg, proposal.proposed_dose_mg
    )
    if not assessment.refused:
        return proposal
    if is_overtreated(course_state):
        return Proposal(
            **{**step_down(state, "low readings").__dict__, "producer": proposal.producer}
        )
    return Proposal(kind="hold", reason="course rules refuse", producer=proposal.producer)


def applied(regimen: Mapping, proposal: Proposal) -> dict[str, Decimal]:
    """The regimen once ``proposal`` is applied as if approved (a dose of 0 stops the drug)."""
    regimen = {name: Decimal(dose) for name, dose in regimen.items()}
    if proposal.kind == "titrate" and proposal.proposed_dose_mg is not None:
        if proposal.proposed_dose_mg == 0:
            regimen.pop(proposal.medication, None)
        else:
            regimen[proposal.medication] = proposal.proposed_dose_mg
    return regimen


def titration_state(observed) -> TitrationState:
    """What the protocol and the model policy see of a simulator's observed state."""
    return TitrationState(
        mean_systolic_7d_mmhg=observed.mean_systolic_7d_mmhg,
        mean_diastolic_7d_mmhg=observed.mean_diastolic_7d_mmhg,
        reading_count_7d=observed.reading_count_7d,
        adherence_rate_7d=observed.adherence_rate_7d,
        regimen=observed.regimen,
        target_systolic_mmhg=observed.target.systolic_mmhg,
        target_diastolic_mmhg=observed.target.diastolic_mmhg,
    )


def simulated_policy(producer: Producer) -> Callable:
    """Run a producer in the simulator under the treatment-course rules production enforces
    (the simulator decides every ``interval_days``, the course rules' minimum interval); a
    proposed change is applied as if approved."""

    def policy(observed):
        features = features_from_simulated_state(observed)
        state = titration_state(observed)
        lowest = (
            float(np.min(observed.bp_systolic_mmhg)) if len(observed.bp_systolic_mmhg) else None
        )
        proposal = course_checked(producer(features, state), state, lowest)
        return applied(observed.regimen, proposal)

    return policy
