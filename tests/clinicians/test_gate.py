"""The tier gate (DESIGN.md safety invariant): whatever the producer outputs and whatever the
bounds, a ``patient``-tier recommendation is inside bounds and within the automatic step."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from clinicians.gate import Bounds, GateContext, as_dose, gate
from clinicians.models import Tier

HEALTHY = dict(
    data_is_fresh=True,
    data_is_sufficient=True,
    adherence_is_adequate=True,
    has_open_crisis=False,
    has_open_alert=False,
    producer_is_healthy=True,
)

doses = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False)
model_outputs = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.none(),
    st.text(max_size=5),
    st.booleans(),
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(-1e308),
    st.just(Decimal("sNaN")),
)


@st.composite
def bound_sets(draw):
    low = draw(doses)
    high = draw(doses)
    step = draw(doses)
    return Bounds(min(low, high), max(low, high), step)


contexts = st.builds(
    GateContext,
    bounds=st.one_of(st.none(), bound_sets()),
    data_is_fresh=st.booleans(),
    data_is_sufficient=st.booleans(),
    adherence_is_adequate=st.booleans(),
    has_open_crisis=st.booleans(),
    has_open_alert=st.booleans(),
    producer_is_healthy=st.booleans(),
)


@settings(max_examples=2000, deadline=None)
@given(current=st.one_of(doses, model_outputs), proposed=model_outputs | doses, context=contexts)
def test_patient_tier_is_always_inside_bounds_and_step(current, proposed, context):
    decision = gate(current_dose_mg=current, proposed_dose_mg=proposed, context=context)
    assert decision.tier in (Tier.PATIENT, Tier.CLINICIAN, Tier.BLOCKED)
    if decision.tier == Tier.PATIENT:
        bounds = context.bounds
        assert bounds is not None
        dose = decision.proposed_dose_mg
        assert dose is not None and dose.is_finite()
        assert bounds.min_dose_mg <= dose <= bounds.max_dose_mg
        assert abs(dose - as_dose(current)) <= bounds.max_auto_step_mg
        assert dose != as_dose(current)
        assert all(
            (
                context.data_is_fresh,
                context.data_is_sufficient,
                context.adherence_is_adequate,
                context.producer_is_healthy,
                not context.has_open_crisis,
                not context.has_open_alert,
            )
        )


@settings(max_examples=500, deadline=None)
@given(current=doses, proposed=model_outputs, context=contexts)
def test_non_dose_outputs_never_reach_the_patient(current, proposed, context):
    if as_dose(proposed) is None:
        decision = gate(current_dose_mg=current, proposed_dose_mg=proposed, context=context)
        assert decision.tier == Tier.BLOCKED
        assert "proposal_not_a_dose" in decision.reasons


def _context(**overrides):
    bounds = overrides.pop("bounds", Bounds(Decimal("2.5"), Decimal("10"), Decimal("2.5")))
    return GateContext(bounds=bounds, **{**HEALTHY, **overrides})


def test_small_step_inside_bounds_reaches_the_patient():
    decision = gate(current_dose_mg=Decimal("5"), proposed_dose_mg=7.5, context=_context())
    assert decision.tier == Tier.PATIENT and decision.proposed_dose_mg == Decimal("7.50")


def test_large_step_goes_to_a_clinician():
    decision = gate(current_dose_mg=Decimal("2.5"), proposed_dose_mg=10, context=_context())
    assert decision.tier == Tier.CLINICIAN and "step_too_large" in decision.reasons


def test_outside_bounds_goes_to_a_clinician():
    decision = gate(current_dose_mg=Decimal("10"), proposed_dose_mg=12.5, context=_context())
    assert decision.tier == Tier.CLINICIAN and "outside_bounds" in decision.reasons


def test_missing_bounds_open_crisis_stale_data_or_unhealthy_producer_block():
    for context, reason in (
        (_context(bounds=None), "no_bounds"),
        (_context(has_open_crisis=True), "open_crisis"),
        (_context(data_is_fresh=False), "stale_data"),
        (_context(producer_is_healthy=False), "producer_unhealthy"),
    ):
        decision = gate(current_dose_mg=Decimal("5"), proposed_dose_mg=7.5, context=context)
        assert decision.tier == Tier.BLOCKED and reason in decision.reasons


def test_gate_fails_closed_on_internal_error():
    class ExplodingBounds(Bounds):
        @property
        def max_auto_step_mg(self):
            raise RuntimeError("boom")

        @max_auto_step_mg.setter
        def max_auto_step_mg(self, value):
            pass

    broken = ExplodingBounds(Decimal("2.5"), Decimal("10"), Decimal("2.5"))
    context = _context(bounds=broken)
    decision = gate(current_dose_mg=Decimal("5"), proposed_dose_mg=7.5, context=context)
    assert decision.tier == Tier.BLOCKED and decision.reasons == ("gate_error",)
