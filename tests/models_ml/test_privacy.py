"""Private training and its accounting (models_ml/privacy.py): the ε we record agrees with an
independent accountant, the ledger composes runs and refuses overruns, δ ≤ 1/N is enforced, and
DP-SGD at ε ≤ 3 still learns the dose response."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
import torch
from dp_accounting.rdp import RdpAccountant
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.training_bench import synthetic_dose_response
from models_ml.privacy import (
    InvalidDelta,
    PrivacyBudgetExceeded,
    PrivateRun,
    check_budget,
    check_delta,
    cumulative_epsilon,
    epsilon_for,
    noise_multiplier_for,
    plan_private_run,
    sample_rate_for,
    steps_for,
    train_private,
)
from models_ml.torch_model import train_nonprivate

# (noise multiplier, sample rate, steps, δ): from a short high-ε run to long low-rate ones.
SETTINGS = [
    (1.049, 1 / 79, 1580, 1e-5),  # the bench's default run: N=20,000, batch 256, 20 epochs
    (0.8, 0.05, 200, 1e-5),
    (1.1, 0.01, 3000, 1e-6),
    (2.0, 0.2, 100, 1e-5),
    (0.6, 0.004, 2500, 1e-5),
    (4.0, 0.001, 10_000, 1e-7),
]


def google_epsilon(runs: list[tuple[float, float, int]], delta: float) -> float:
    """Google's dp_accounting RDP accountant: Poisson-sampled Gaussian, self-composed."""
    accountant = RdpAccountant()
    for noise, rate, steps in runs:
        accountant.compose(
            dp_accounting.SelfComposedDpEvent(
                dp_accounting.PoissonSampledDpEvent(rate, dp_accounting.GaussianDpEvent(noise)),
                steps,
            )
        )
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize(("noise", "rate", "steps", "delta"), SETTINGS)
def test_epsilon_agrees_with_google_dp_accounting_within_5_percent(noise, rate, steps, delta):
    ours = epsilon_for(noise, rate, steps, delta)
    theirs = google_epsilon([(noise, rate, steps)], delta)
    assert ours == pytest.approx(theirs, rel=0.05)


def test_composition_of_two_runs_agrees_with_google_dp_accounting():
    first = PrivateRun(noise_multiplier=1.049, sample_rate=1 / 79, steps=1580)
    second = PrivateRun(noise_multiplier=2.0, sample_rate=0.05, steps=400)
    delta = 1e-5
    ours = cumulative_epsilon([first, second], delta)
    theirs = google_epsilon([(1.049, 1 / 79, 1580), (2.0, 0.05, 400)], delta)
    assert ours == pytest.approx(theirs, rel=0.05)
    # RDP composition is tighter than adding the runs' ε, and never below the larger one.
    assert max(first.epsilon(delta), second.epsilon(delta)) < ours
    assert ours < first.epsilon(delta) + second.epsilon(delta)


@settings(max_examples=15, deadline=None)
@given(
    runs=st.lists(
        st.tuples(st.floats(0.7, 5.0), st.floats(0.001, 0.2), st.integers(1, 2000)).map(
            lambda run: PrivateRun(*run)
        ),
        min_size=1,
        max_size=3,
    ),
    extra=st.tuples(st.floats(0.7, 5.0), st.floats(0.001, 0.2), st.integers(1, 2000)),
)
def test_the_ledger_only_grows_and_stays_below_the_sum_of_its_runs(runs, extra):
    delta = 1e-5
    before = cumulative_epsilon(runs, delta)
    after = cumulative_epsilon([*runs, PrivateRun(*extra)], delta)
    assert after >= before
    assert after <= sum(run.epsilon(delta) for run in runs) + PrivateRun(*extra).epsilon(delta)


def test_no_runs_spend_nothing():
    assert cumulative_epsilon([], 1e-5) == 0.0
    assert epsilon_for(1.0, 0.01, 0, 1e-5) == 0.0


def test_noise_multiplier_for_a_target_reaches_it_without_exceeding_it():
    rate = sample_rate_for(20_000, 256)
    noise = noise_multiplier_for(3.0, 1e-5, rate, 20)
    spent = epsilon_for(noise, rate, steps_for(rate, 20), 1e-5)
    assert 2.97 <= spent <= 3.0


def test_sample_rate_and_steps_follow_opacus_poisson_loader():
    assert sample_rate_for(20_000, 256) == 1 / 79
    assert steps_for(1 / 79, 20) == 1580
    with pytest.raises(ValueError, match="batch_size"):
        sample_rate_for(100, 101)


def test_check_budget_returns_the_composed_epsilon_when_within_budget():
    spent = [PrivateRun(2.0, 0.01, 1000)]
    new = PrivateRun(2.0, 0.01, 1000)
    composed = check_budget(spent, new, budget_epsilon=10.0, delta=1e-5)
    assert composed == pytest.approx(cumulative_epsilon([*spent, new], 1e-5))


def test_budget_overrun_is_refused_with_spent_requested_and_budget_in_the_message():
    delta = 1e-5
    spent = [PrivateRun(1.049, 1 / 79, 1580)]  # ε ≈ 3
    new = PrivateRun(1.049, 1 / 79, 1580)
    with pytest.raises(PrivacyBudgetExceeded) as refused:
        check_budget(spent, new, budget_epsilon=4.0, delta=delta)
    error = refused.value
    assert error.spent_epsilon == pytest.approx(cumulative_epsilon(spent, delta))
    assert error.run_epsilon == pytest.approx(new.epsilon(delta))
    assert error.composed_epsilon > error.budget_epsilon == 4.0
    message = str(error)
    assert f"{error.spent_epsilon:.3f}" in message
    assert f"{error.run_epsilon:.3f}" in message
    assert f"{error.composed_epsilon:.3f}" in message
    assert "4.000" in message


def test_a_first_run_larger_than_the_budget_is_refused():
    with pytest.raises(PrivacyBudgetExceeded, match="by 0 run"):
        check_budget([], PrivateRun(0.5, 0.1, 1000), budget_epsilon=1.0, delta=1e-5)


def test_delta_above_one_over_n_is_refused_with_the_bound():
    check_delta(1e-5, 20_000)  # 1e-5 ≤ 5e-5
    check_delta(1 / 20_000, 20_000)  # the bound itself is allowed
    with pytest.raises(InvalidDelta, match=r"1/N = 5e-05 for N = 20000"):
        check_delta(1e-4, 20_000)
    for bad in (0.0, -1e-5, 1.0, math.nan):
        with pytest.raises(InvalidDelta):
            check_delta(bad, 20_000)
    with pytest.raises(InvalidDelta):
        check_budget([], PrivateRun(2.0, 0.01, 10), 10.0, 1e-3, n_records=20_000)
    with pytest.raises(InvalidDelta):
        plan_private_run(n_records=1000, batch_size=50, epochs=5, target_epsilon=3.0, delta=1 / 999)


def test_training_with_delta_above_one_over_n_is_refused_before_any_work():
    X, y = synthetic_dose_response(500, seed=1)
    with pytest.raises(InvalidDelta, match="1/N"):
        train_private(
            X,
            y,
            epochs=1,
            batch_size=50,
            lr=1e-3,
            seed=0,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            delta=1 / 400,
        )


def test_the_planned_run_is_the_run_training_performs_and_records():
    X, y = synthetic_dose_response(1000, seed=2)
    plan = plan_private_run(
        n_records=len(X), batch_size=100, epochs=3, target_epsilon=3.0, delta=1e-4
    )
    model = _private(X, y, plan, batch_size=100, epochs=3, delta=1e-4)
    figures = model.privacy
    assert (figures.noise_multiplier, figures.sample_rate, figures.steps) == (
        plan.noise_multiplier,
        plan.sample_rate,
        plan.steps,
    )
    assert figures.epsilon == pytest.approx(plan.epsilon(1e-4)) and figures.epsilon <= 3.0
    assert figures.epsilon == pytest.approx(
        google_epsilon([(plan.noise_multiplier, plan.sample_rate, plan.steps)], 1e-4), rel=0.05
    )
    assert figures.delta == 1e-4 and figures.n_records == 1000 and figures.epochs == 3
    assert figures.max_grad_norm == 1.0 and figures.accountant.startswith("rdp")
    assert figures.randomness == "seeded" and figures.standardisation_from_private_data


def test_sampling_and_noise_come_from_the_os_unless_a_noise_seed_is_given():
    X, y = synthetic_dose_response(600, seed=3)
    plan = PrivateRun(1.0, sample_rate_for(600, 60), 0)
    seeded = [_private(X, y, plan, batch_size=60, epochs=2, noise_seed=7) for _ in range(2)]
    assert _same_weights(seeded[0], seeded[1])
    unseeded = [_private(X, y, plan, batch_size=60, epochs=2, noise_seed=None) for _ in range(2)]
    assert not _same_weights(unseeded[0], unseeded[1])
    assert unseeded[0].privacy.randomness == "os-entropy"


@pytest.mark.parametrize("mode", ["ew", "ghost"])
def test_grad_sample_modes_train_the_same_model_as_hooks(mode):
    """Expanded weights and ghost clipping are faster routes to the same clipped gradients."""
    X, y = synthetic_dose_response(800, seed=4)
    plan = PrivateRun(1.0, sample_rate_for(800, 80), 0)
    hooks = _private(X, y, plan, batch_size=80, epochs=2, noise_seed=3)
    other = _private(X, y, plan, batch_size=80, epochs=2, noise_seed=3, grad_sample_mode=mode)
    assert other.privacy.grad_sample_mode == mode
    assert np.allclose(hooks.predict(X[:50]), other.predict(X[:50]), atol=1e-4)


def test_empty_poisson_batches_still_step_and_count():
    """With an expected batch of 1, about a third of the Poisson batches are empty: each is still
    a (noise-only) step that the accountant counts."""
    X, y = synthetic_dose_response(40, seed=5)
    plan = PrivateRun(1.0, sample_rate_for(40, 1), 0)
    model = _private(X, y, plan, batch_size=1, epochs=2, delta=1 / 40)
    assert model.privacy.steps == 80
    assert np.isfinite(model.predict(X)).all()


def test_private_training_at_epsilon_3_reaches_a_useful_mae():
    """DP-SGD at ε ≤ 3, δ = 1/(10 N) learns the dose response nearly as well as the same network
    trained without privacy: the utility cost is bounded and the model beats the mean."""
    X, y = synthetic_dose_response(8000, seed=6)
    X_train, y_train, X_test, y_test = X[:6000], y[:6000], X[6000:], y[6000:]
    delta = 1 / (10 * len(X_train))
    epochs, batch_size, lr = 15, 200, 3e-3
    plan = plan_private_run(
        n_records=len(X_train),
        batch_size=batch_size,
        epochs=epochs,
        target_epsilon=3.0,
        delta=delta,
    )
    private = _private(
        X_train, y_train, plan, batch_size=batch_size, epochs=epochs, delta=delta, lr=lr
    )
    baseline = train_nonprivate(
        X_train, y_train, epochs=epochs, batch_size=batch_size, lr=lr, seed=0
    )
    mae_private = np.abs(private.predict(X_test) - y_test).mean(axis=0)
    mae_baseline = np.abs(baseline.predict(X_test) - y_test).mean(axis=0)
    mae_mean = np.abs(y_train.mean(axis=0) - y_test).mean(axis=0)
    assert private.privacy.epsilon <= 3.0 and private.privacy.delta <= 1 / len(X_train)
    assert (mae_private <= 1.15 * mae_baseline).all(), (mae_private, mae_baseline)
    assert (mae_private <= 0.75 * mae_mean).all(), (mae_private, mae_mean)


def test_invalid_private_parameters_are_refused():
    X, y = synthetic_dose_response(100, seed=8)
    common = dict(epochs=1, batch_size=10, lr=1e-3, seed=0, delta=1e-3)
    with pytest.raises(ValueError, match="noise_multiplier"):
        train_private(X, y, noise_multiplier=0.0, max_grad_norm=1.0, **common)
    with pytest.raises(ValueError, match="max_grad_norm"):
        train_private(X, y, noise_multiplier=1.0, max_grad_norm=-1.0, **common)
    with pytest.raises(ValueError, match="grad_sample_mode"):
        train_private(
            X, y, noise_multiplier=1.0, max_grad_norm=1.0, grad_sample_mode="bogus", **common
        )


def _private(X, y, plan, *, batch_size, epochs, delta=1e-4, noise_seed=11, lr=1e-3, **options):
    return train_private(
        X,
        y,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=0,
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=1.0,
        delta=delta,
        noise_seed=noise_seed,
        **options,
    )


def _same_weights(first, second) -> bool:
    return all(
        torch.equal(a, b)
        for a, b in zip(
            first.module.state_dict().values(), second.module.state_dict().values(), strict=True
        )
    )
