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
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer

from bench.training_bench import synthetic_dose_response
from models_ml.privacy import (
    ClosedFormClipping,
    InvalidDelta,
    PrivacyBudgetExceeded,
    PrivateRun,
    _fit_closed_form,
    check_budget,
    check_delta,
    cumulative_epsilon,
    epsilon_for,
    noise_multiplier_for,
    plan_private_run,
    poisson_units,
    sample_rate_for,
    steps_for,
    train_private,
)
from models_ml.torch_model import (
    InvalidTrainingData,
    StandardisedSquaredError,
    new_module,
    train_nonprivate,
)

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


@pytest.mark.parametrize("mode", ["opacus-ew", "opacus-ghost"])
def test_grad_sample_modes_train_the_same_model_as_opacus_hooks(mode):
    """Expanded weights and ghost clipping are faster routes to the same clipped gradients: with
    the same data, sampling, noise and epochs they reach the same model. (Our clipping draws its
    own sample; it is checked against Opacus step by step below.)"""
    X, y = synthetic_dose_response(800, seed=4)
    plan = PrivateRun(1.0, sample_rate_for(800, 80), 0)
    hooks = _private(
        X, y, plan, batch_size=80, epochs=2, noise_seed=3, grad_sample_mode="opacus-hooks"
    )
    other = _private(X, y, plan, batch_size=80, epochs=2, noise_seed=3, grad_sample_mode=mode)
    assert other.privacy.grad_sample_mode == mode
    assert np.abs(hooks.predict(X[:50]) - other.predict(X[:50])).max() < 1e-4


def _padded_batch(X, y, sizes):
    """Units of the given row counts, padded to the largest (the layout training uses)."""
    width, start = max(sizes), 0
    features = torch.zeros(len(sizes), width, X.shape[1])
    targets = torch.zeros(len(sizes), width, 2)
    present = torch.zeros(len(sizes), width)
    for unit, size in enumerate(sizes):
        features[unit, :size] = torch.from_numpy(X[start : start + size])
        targets[unit, :size] = torch.from_numpy(y[start : start + size])
        present[unit, :size] = 1
        start += size
    return features, targets, present


def _reference_clipped_sum(module, X, y, sizes, max_grad_norm):
    """Per-row gradients by torch.func (vmap of grad), averaged per unit, clipped, summed."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    buffers = dict(module.named_buffers())
    criterion = StandardisedSquaredError(module.target_std)

    def row_loss(p, features, target):
        prediction = torch.func.functional_call(module, (p, buffers), (features[None],))
        return criterion(prediction, target[None])

    per_row = torch.func.vmap(torch.func.grad(row_loss), in_dims=(None, 0, 0))(
        params, torch.from_numpy(X), torch.from_numpy(y)
    )
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    start, clipped = 0, []
    for size in sizes:
        mean = {name: g[start : start + size].mean(dim=0) for name, g in per_row.items()}
        norm = torch.sqrt(sum(g.pow(2).sum() for g in mean.values()))
        factor = min(1.0, max_grad_norm / (float(norm) + 1e-6))
        clipped.append(factor < 1)
        for name in total:
            total[name] += factor * mean[name]
        start += size
    return [total[name] for name, _ in module.named_parameters()], clipped


@pytest.mark.parametrize("max_grad_norm", [0.3, 1.0, 100.0])
def test_closed_form_clipping_equals_per_row_gradients_averaged_and_clipped_per_patient(
    max_grad_norm,
):
    X, y = synthetic_dose_response(40, seed=21)
    sizes = [1, 3, 2, 7, 1, 5, 4]
    n = sum(sizes)
    module = new_module(X, y, hidden=(32, 32), seed=4)
    expected, clipped = _reference_clipped_sum(module, X[:n], y[:n], sizes, max_grad_norm)
    features, targets, present = _padded_batch(X, y, sizes)
    ours, _losses = ClosedFormClipping(module, max_grad_norm).clipped_sum(
        features, targets, present
    )
    if max_grad_norm == 0.3:
        assert all(clipped)
    if max_grad_norm == 100.0:
        assert not any(clipped)
    for a, b in zip(ours, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), (a - b).abs().max()


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_closed_form_clipping_equals_opacus_for_one_row_per_unit():
    """With one row per unit, the clipped sum is Opacus' DPOptimizer's (noise 0) on the batch."""
    X, y = synthetic_dose_response(64, seed=22)
    module = new_module(X, y, hidden=(32, 32), seed=5)
    reference = GradSampleModule(new_module(X, y, hidden=(32, 32), seed=5))
    optimizer = DPOptimizer(
        torch.optim.SGD(reference.parameters(), lr=0.0),
        noise_multiplier=0.0,
        max_grad_norm=0.5,
        expected_batch_size=64,
    )
    loss = StandardisedSquaredError(module.target_std)(
        reference(torch.from_numpy(X)), torch.from_numpy(y)
    )
    loss.backward()
    optimizer.pre_step()  # clip, accumulate, add (zero) noise, divide by the expected batch
    features, targets, present = _padded_batch(X, y, [1] * 64)
    ours, _losses = ClosedFormClipping(module, 0.5).clipped_sum(features, targets, present)
    for mine, parameter in zip(ours, reference.parameters(), strict=True):
        assert torch.allclose(mine / 64, parameter.grad, atol=1e-6, rtol=1e-4)


def test_a_patient_weighs_the_same_whatever_their_number_of_rows():
    """A patient with the same row seven times moves the model as much as with it once: the unit
    is clipped as a whole, so extra rows buy no extra influence (and cost no extra privacy)."""
    X, y = synthetic_dose_response(5, seed=23)
    module = new_module(X, y, hidden=(32, 32), seed=6)
    once = _padded_batch(X[[0, 1]], y[[0, 1]], [1, 1])
    repeated = _padded_batch(X[[0] * 7 + [1]], y[[0] * 7 + [1]], [7, 1])
    clipping = ClosedFormClipping(module, 0.2)
    first, _ = clipping.clipped_sum(*once)
    second, _ = clipping.clipped_sum(*repeated)
    for a, b in zip(first, second, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    total = torch.sqrt(sum(g.pow(2).sum() for g in first))
    assert float(total) <= 2 * 0.2 + 1e-5


def _adversarial_patient(module, rows: int, seed: int):
    """Rows far outside the training distribution whose gradients nearly cancel: the same
    features, 30 standard deviations out, with targets of ±3000 mmHg alternating — huge row
    gradients whose mean is small (where a norm from Gram products loses its float32 digits)."""
    rng = np.random.default_rng(seed)
    mean, std = module.feature_mean.numpy(), module.feature_std.numpy()
    extreme = mean + 30 * std * rng.choice([-1.0, 1.0], len(mean))
    features = np.tile(extreme, (rows, 1)).astype(np.float32)
    targets = np.tile([[3000.0, 2000.0], [-3000.0, -2000.0]], (rows // 2 + 1, 1))[:rows]
    return features, targets.astype(np.float32)


@pytest.mark.parametrize(("rows", "max_grad_norm"), [(12, 1.0), (1, 1.0), (7, 0.05), (40, 3.0)])
def test_one_patient_moves_the_clipped_sum_by_at_most_the_clipping_norm(rows, max_grad_norm):
    """The sensitivity the accountant assumes, checked where it is easiest to break: a patient
    with extreme, mutually cancelling rows added to a batch of ordinary ones."""
    X, y = synthetic_dose_response(60, seed=26)
    module = new_module(X, y, hidden=(32, 32), seed=8)
    clipping = ClosedFormClipping(module, max_grad_norm)
    extreme_X, extreme_y = _adversarial_patient(module, rows, seed=rows)
    sizes = [3, 5, 1, 4]
    n = sum(sizes)
    without, _ = clipping.clipped_sum(*_padded_batch(X[:n], y[:n], sizes))
    with_patient, _ = clipping.clipped_sum(
        *_padded_batch(np.vstack([X[:n], extreme_X]), np.vstack([y[:n], extreme_y]), [*sizes, rows])
    )
    change = torch.sqrt(
        sum(
            (a.double() - b.double()).square().sum()
            for a, b in zip(with_patient, without, strict=True)
        )
    )
    assert float(change) <= max_grad_norm * (1 + 1e-5)
    assert float(change) > 0.5 * max_grad_norm  # the patient is clipped, not dropped


def test_training_steps_on_the_clipped_mean_of_interleaved_patients_of_unequal_size():
    """One step with every patient sampled (q = 1), negligible noise and plain SGD (lr 1): the
    weights move by exactly (Σ clipped per-patient mean gradient) / U, whatever the order and
    size of the patients' rows."""
    X, y = synthetic_dose_response(23, seed=27)
    units = np.array([4, 1, 4, 2, 0, 4, 1, 3, 3, 3, 3, 2, 4, 0, 1, 3, 4, 2, 3, 3, 4, 1, 0])
    module = new_module(X, y, hidden=(8, 8), seed=9)
    before = [p.detach().clone() for p in module.parameters()]
    order = np.argsort(units, kind="stable")
    sizes = list(np.bincount(units))
    expected, _clipped = _reference_clipped_sum(module, X[order], y[order], sizes, 0.4)
    _fit_closed_form(
        module,
        torch.optim.SGD(module.parameters(), lr=1.0),
        X,
        y,
        units,
        np.bincount(units),
        sample_rate=1.0,
        epochs=1,
        noise_multiplier=1e-9,
        max_grad_norm=0.4,
        sampling=torch.Generator().manual_seed(0),
        noise=torch.Generator().manual_seed(1),
    )
    for old, new, gradient in zip(before, module.parameters(), expected, strict=True):
        assert torch.allclose(old - new.detach(), gradient / 5, atol=1e-6)


def test_noise_is_calibrated_to_the_clipping_norm_over_the_expected_batch():
    """An empty Poisson batch is noise only: N(0, (σC)²) per coordinate over the expected number
    of units; with a batch, the same noise lands on top of the clipped sum."""
    X, y = synthetic_dose_response(8, seed=25)
    module = new_module(X, y, hidden=(32, 32), seed=7)
    clipping = ClosedFormClipping(module, 0.5)
    draws = torch.cat(
        [
            torch.cat(
                [
                    g.flatten()
                    for g in clipping.private_gradient(
                        None,
                        noise_multiplier=1.3,
                        expected_units=10,
                        generator=torch.Generator().manual_seed(seed),
                    )[0]
                ]
            )
            for seed in range(40)
        ]
    )
    assert float(draws.mean()) == pytest.approx(0.0, abs=0.002)
    assert float(draws.std()) == pytest.approx(1.3 * 0.5 / 10, rel=0.01)
    batch = _padded_batch(X, y, [3, 5])
    clipped, _ = clipping.clipped_sum(*batch)
    noisy, losses = clipping.private_gradient(
        batch, noise_multiplier=1.3, expected_units=10, generator=torch.Generator().manual_seed(0)
    )
    noise_only, _ = clipping.private_gradient(
        None, noise_multiplier=1.3, expected_units=10, generator=torch.Generator().manual_seed(0)
    )
    for total, signal, noise in zip(noisy, clipped, noise_only, strict=True):
        assert torch.allclose(total, signal / 10 + noise, atol=1e-6)
    assert losses.shape == (10,) and float(losses[3:5].abs().sum()) == 0  # padding rows


def test_units_are_poisson_sampled_at_the_accounted_rate():
    chosen = poisson_units(500, 0.04, 400, torch.Generator().manual_seed(1)).float()
    rate = float(chosen.mean())
    assert rate == pytest.approx(0.04, abs=4 * math.sqrt(0.04 * 0.96 / chosen.numel()))
    sizes = chosen.sum(dim=1)  # Binomial(500, 0.04): mean 20, variance 19.2
    assert float(sizes.var()) == pytest.approx(19.2, rel=0.2)


def test_patient_level_training_accounts_over_patients_not_rows():
    X, y = synthetic_dose_response(600, seed=24)
    patients = np.repeat([f"p{i:03d}" for i in range(100)], 6)
    common = dict(batch_size=10, lr=1e-3, seed=0, max_grad_norm=1.0)
    with pytest.raises(InvalidDelta, match="1/N"):  # δ ≤ 1/U for U = 100 patients
        train_private(X, y, units=patients, epochs=1, noise_multiplier=1.0, delta=1 / 50, **common)
    plan = plan_private_run(n_records=100, batch_size=10, epochs=3, target_epsilon=3.0, delta=1e-3)
    model = train_private(
        X,
        y,
        units=patients,
        epochs=3,
        noise_multiplier=plan.noise_multiplier,
        delta=1e-3,
        noise_seed=2,
        **common,
    )
    figures = model.privacy
    assert figures.privacy_unit == "patient" and figures.n_units == 100
    assert figures.n_records == 600 and np.isnan(model.final_train_loss)  # no loss on record
    assert (figures.sample_rate, figures.steps) == (plan.sample_rate, plan.steps) == (0.1, 30)
    assert figures.epsilon == pytest.approx(plan.epsilon(1e-3)) and figures.epsilon <= 3.0
    refused = dict(epochs=1, noise_multiplier=1.0, delta=1e-3, **common)
    with pytest.raises(ValueError, match="clips per row"):
        train_private(X, y, units=patients, grad_sample_mode="opacus-hooks", **refused)
    with pytest.raises(InvalidTrainingData, match="one privacy unit per row"):
        train_private(X, y, units=patients[:-1], **refused)


def test_empty_poisson_batches_still_step_and_count():
    """With an expected batch of 1, about a third of the Poisson batches are empty: each is still
    a (noise-only) step that the accountant counts."""
    X, y = synthetic_dose_response(40, seed=5)
    plan = PrivateRun(1.0, sample_rate_for(40, 1), 0)
    model = _private(X, y, plan, batch_size=1, epochs=2, delta=1 / 40)
    assert model.privacy.steps == 80
    assert np.isfinite(model.predict(X)).all()


def test_private_training_at_epsilon_3_reaches_a_useful_mae():
    """Patient-level DP-SGD at ε ≤ 3, δ = 1/(2 U) over 500 patients of 12 rows learns the dose
    response nearly as well as the same network trained without privacy: the utility cost is
    bounded and the model beats the mean."""
    X, y = synthetic_dose_response(8000, seed=6)
    X_train, y_train, X_test, y_test = X[:6000], y[:6000], X[6000:], y[6000:]
    patients = np.arange(6000) // 12
    delta = 1e-3
    epochs, patients_per_step, lr = 15, 17, 3e-3
    plan = plan_private_run(
        n_records=500,
        batch_size=patients_per_step,
        epochs=epochs,
        target_epsilon=3.0,
        delta=delta,
    )
    private = _private(
        X_train,
        y_train,
        plan,
        batch_size=patients_per_step,
        epochs=epochs,
        delta=delta,
        lr=lr,
        units=patients,
    )
    assert private.privacy.privacy_unit == "patient"
    baseline = train_nonprivate(
        X_train, y_train, epochs=epochs, batch_size=12 * patients_per_step, lr=lr, seed=0
    )
    mae_private = np.abs(private.predict(X_test) - y_test).mean(axis=0)
    mae_baseline = np.abs(baseline.predict(X_test) - y_test).mean(axis=0)
    mae_mean = np.abs(y_train.mean(axis=0) - y_test).mean(axis=0)
    assert private.privacy.epsilon <= 3.0 and private.privacy.delta <= 1 / 500
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
