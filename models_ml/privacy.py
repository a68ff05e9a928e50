"""Differentially private training of the dose-response network (DP-SGD with Opacus) and the
accounting behind the per-dataset privacy ledger.

Pure numpy/torch/opacus (no Django, no database).

Accounting. One accountant everywhere: Rényi DP of the Poisson-subsampled Gaussian mechanism
(Mironov, Talwar & Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism"),
as implemented by Opacus (``opacus.accountants.analysis.rdp``), converted to (ε, δ) with Opacus'
conversion (Balle et al. 2020). RDP composes by addition at each order α, so the ledger's
cumulative ε over several trainings on the same dataset is computed from the *sum of their RDP
curves* — tighter than adding the runs' ε, and exactly what one accountant would report had the
runs been one long training. The orders are Opacus' defaults (1.1 … 63) plus 128 … 1024, which
only tighten the bound at small ε (any set of orders gives a valid bound).

Randomness. The DP guarantee assumes the adversary cannot predict which records were sampled or
what noise was added. A recorded seed would let anyone replay both and subtract the noise, so by
default the sampling and noise generators are seeded from the OS (``secrets``) and the seed is
never stored; ``noise_seed`` makes a run reproducible for tests and benchmarks and is recorded as
``randomness="seeded"`` — such a model must not be described as private.

δ. Every run and every ledger figure uses δ ≤ 1/N (N = records in the dataset), the usual
ceiling: a mechanism that publishes one record at random satisfies δ = 1/N.

Privacy unit. The guarantee protects one *training row*. A patient who contributes k rows is
protected only as a group of k (ε grows roughly k-fold), so the dataset given to
:func:`train_private` should hold one row per patient, or the ledger must account for k.

Not covered by ε: the standardisation when it is fitted on the private data (see
:func:`train_private`), and hyper-parameter tuning on that data.
"""

from __future__ import annotations

import functools
import math
import secrets
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import opacus
import torch
from opacus import PrivacyEngine
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as opacus_rdp
from opacus.accountants.utils import get_noise_multiplier
from torch.utils.data import DataLoader

from models_ml.torch_model import (
    PrivacyFigures,
    RowBatches,
    Standardisation,
    StandardisedSquaredError,
    TrainedTorchModel,
    as_batch,
    detached_copy,
    fit,
    new_module,
    torch_threads,
    validate_training_data,
)

RDP_ORDERS: tuple[float, ...] = (*RDPAccountant.DEFAULT_ALPHAS, 128, 256, 512, 1024)
ACCOUNTANT_NAME = f"rdp (opacus {opacus.__version__}, orders 1.1-1024)"
GRAD_SAMPLE_MODES = ("hooks", "functorch", "ew", "ghost")


class PrivacyBudgetExceeded(Exception):
    """Composing the new training with the dataset's past ones would exceed its ε budget."""

    def __init__(
        self,
        *,
        spent_epsilon: float,
        run_epsilon: float,
        composed_epsilon: float,
        budget_epsilon: float,
        delta: float,
        n_runs: int,
    ) -> None:
        self.spent_epsilon = spent_epsilon
        self.run_epsilon = run_epsilon
        self.composed_epsilon = composed_epsilon
        self.budget_epsilon = budget_epsilon
        self.delta = delta
        super().__init__(
            f"privacy budget exceeded: ε {spent_epsilon:.3f} already spent on this dataset by "
            f"{n_runs} run(s); the requested run costs ε {run_epsilon:.3f} alone and would bring "
            f"the total to ε {composed_epsilon:.3f}, over the budget of ε {budget_epsilon:.3f} "
            f"(δ = {delta:.3g}). Train with more noise, fewer epochs or a smaller sampling rate, "
            "or raise the budget on the record."
        )


class InvalidDelta(ValueError):
    """δ is not a probability or exceeds 1/N for the dataset."""


@dataclass(frozen=True)
class PrivateRun:
    """One DP-SGD training as the accountant sees it: Poisson sampling at ``sample_rate`` and
    Gaussian noise of ``noise_multiplier`` × clipping norm, for ``steps`` steps."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ValueError(f"noise_multiplier must be > 0, got {self.noise_multiplier}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")

    def rdp(self) -> np.ndarray:
        """This run's RDP ε at each of :data:`RDP_ORDERS`."""
        return np.array(_rdp_curve(self.noise_multiplier, self.sample_rate, self.steps))

    def epsilon(self, delta: float) -> float:
        return cumulative_epsilon([self], delta)


def check_delta(delta: float, n_records: int) -> None:
    """Refuse δ outside (0, 1/N]."""
    if n_records < 1:
        raise InvalidDelta(f"cannot set δ for a dataset of {n_records} records")
    if not (math.isfinite(delta) and 0 < delta < 1):
        raise InvalidDelta(f"δ must be a probability in (0, 1), got {delta}")
    if delta > 1 / n_records:
        raise InvalidDelta(
            f"δ = {delta:.3g} is larger than 1/N = {1 / n_records:.3g} for N = {n_records} "
            "records: such a guarantee would allow publishing a record outright. "
            f"Use δ ≤ {1 / n_records:.3g} (e.g. {_round_down_delta(n_records):.0e})."
        )


def sample_rate_for(n_records: int, batch_size: int) -> float:
    """The Poisson sampling rate Opacus uses for this data: 1 / (batches per epoch)."""
    if not 1 <= batch_size <= n_records:
        raise ValueError(f"batch_size {batch_size} must be between 1 and {n_records}")
    return 1 / math.ceil(n_records / batch_size)


def steps_for(sample_rate: float, epochs: int) -> int:
    """Optimizer steps of a private run: Opacus' Poisson loader yields ``int(1/q)`` batches per
    epoch."""
    return epochs * int(1 / sample_rate)


def epsilon_for(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε at ``delta`` of one DP-SGD run (RDP accountant of Opacus)."""
    return PrivateRun(noise_multiplier, sample_rate, steps).epsilon(delta)


def noise_multiplier_for(
    target_epsilon: float, delta: float, sample_rate: float, epochs: int
) -> float:
    """Smallest noise multiplier (to Opacus' 0.01 tolerance in ε) whose run of ``epochs`` at
    ``sample_rate`` spends at most ``target_epsilon`` at ``delta``."""
    if not target_epsilon > 0:
        raise ValueError(f"target ε must be > 0, got {target_epsilon}")
    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps_for(sample_rate, epochs),
            accountant="rdp",
            alphas=list(RDP_ORDERS),
        )
    )


def plan_private_run(
    *, n_records: int, batch_size: int, epochs: int, target_epsilon: float, delta: float
) -> PrivateRun:
    """The run :func:`train_private` will perform for this data and target ε — known before
    training, so the ledger can be checked (:func:`check_budget`) before any compute is spent."""
    check_delta(delta, n_records)
    sample_rate = sample_rate_for(n_records, batch_size)
    noise = noise_multiplier_for(target_epsilon, delta, sample_rate, epochs)
    return PrivateRun(noise, sample_rate, steps_for(sample_rate, epochs))


def cumulative_epsilon(runs: Sequence[PrivateRun], delta: float) -> float:
    """ε at ``delta`` of all ``runs`` on one dataset, composed by adding their RDP curves."""
    if not (math.isfinite(delta) and 0 < delta < 1):
        raise InvalidDelta(f"δ must be a probability in (0, 1), got {delta}")
    if not runs or all(run.steps == 0 for run in runs):
        return 0.0
    total = np.sum([run.rdp() for run in runs], axis=0)
    epsilon, _order = opacus_rdp.get_privacy_spent(orders=list(RDP_ORDERS), rdp=total, delta=delta)
    return float(epsilon)


def check_budget(
    runs: Sequence[PrivateRun],
    new_run: PrivateRun,
    budget_epsilon: float,
    delta: float,
    *,
    n_records: int | None = None,
) -> float:
    """Return the dataset's ε after ``new_run``, or raise :class:`PrivacyBudgetExceeded` when
    that would exceed ``budget_epsilon`` (and :class:`InvalidDelta` when δ > 1/``n_records``)."""
    if n_records is not None:
        check_delta(delta, n_records)
    composed = cumulative_epsilon([*runs, new_run], delta)
    if composed > budget_epsilon:
        raise PrivacyBudgetExceeded(
            spent_epsilon=cumulative_epsilon(runs, delta),
            run_epsilon=new_run.epsilon(delta),
            composed_epsilon=composed,
            budget_epsilon=budget_epsilon,
            delta=delta,
            n_runs=len(runs),
        )
    return composed


def train_private(
    X: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    noise_multiplier: float,
    max_grad_norm: float,
    delta: float,
    hidden: Sequence[int] = (32, 32),
    noise_seed: int | None = None,
    standardisation: Standardisation | None = None,
    grad_sample_mode: str = "hooks",
    threads: int = 1,
) -> TrainedTorchModel:
    """DP-SGD (Adam on clipped, noised per-sample gradients) of the same network, data pipeline
    and epochs as :func:`models_ml.torch_model.train_nonprivate`, with Poisson sampling of
    expected size ``batch_size``.

    ``seed`` fixes the initial weights (public). The sampling and the noise are private
    randomness: drawn from the OS unless ``noise_seed`` is given (tests, benchmarks; recorded as
    ``randomness="seeded"``). ``standardisation``: pass values from a public source to keep the
    artifact entirely inside ε; when omitted it is fitted on X, y and recorded as such.
    """
    X, y = validate_training_data(X, y, batch_size=batch_size, epochs=epochs)
    check_delta(delta, len(X))
    if not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
        raise ValueError(f"max_grad_norm must be > 0, got {max_grad_norm}")
    if grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ValueError(f"grad_sample_mode must be one of {GRAD_SAMPLE_MODES}")
    sample_rate = sample_rate_for(len(X), batch_size)
    PrivateRun(noise_multiplier, sample_rate, 0)  # validates the noise multiplier up front
    private_seed = secrets.randbits(63) if noise_seed is None else noise_seed
    sampling = torch.Generator().manual_seed(private_seed)
    noise = torch.Generator().manual_seed((private_seed + 1) % 2**63)
    del private_seed  # never stored

    started = time.perf_counter()
    module = new_module(X, y, hidden=hidden, seed=seed, standardisation=standardisation)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    loader = DataLoader(
        RowBatches(X, y), batch_size=batch_size, collate_fn=as_batch, generator=sampling
    )
    criterion = StandardisedSquaredError(module.target_std)
    with warnings.catch_warnings():
        # Opacus warns that secure_mode is off; our stance on randomness is in the module doc.
        warnings.filterwarnings("ignore", message=".*[Ss]ecure.*")
        engine = PrivacyEngine(accountant="rdp")
        private = engine.make_private(
            module=module,
            optimizer=optimizer,
            criterion=criterion,
            data_loader=loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            poisson_sampling=True,
            noise_generator=noise,
            grad_sample_mode=grad_sample_mode,
        )
    if grad_sample_mode == "ghost":  # the criterion runs the two backward passes
        private_module, private_optimizer, criterion, private_loader = private
    else:
        private_module, private_optimizer, private_loader = private
    with warnings.catch_warnings(), torch_threads(threads):
        # The first layer's input never requires grad; Opacus' full backward hooks say so.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        loss = fit(private_module, private_optimizer, private_loader, criterion, epochs=epochs)
    elapsed = time.perf_counter() - started

    history = engine.accountant.history  # [(noise_multiplier, sample_rate, steps)]
    if len(history) != 1 or history[0][1] != sample_rate:
        raise RuntimeError(f"unexpected accountant history {history}")
    run = PrivateRun(history[0][0], history[0][1], history[0][2])
    return TrainedTorchModel(
        module=detached_copy(module),  # the weights, without Opacus' hooks and attributes
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        n_train=len(X),
        training_seconds=elapsed,
        final_train_loss=loss,
        privacy=PrivacyFigures(
            noise_multiplier=run.noise_multiplier,
            max_grad_norm=float(max_grad_norm),
            sample_rate=run.sample_rate,
            steps=run.steps,
            epochs=epochs,
            epsilon=run.epsilon(delta),
            delta=delta,
            accountant=ACCOUNTANT_NAME,
            n_records=len(X),
            grad_sample_mode=grad_sample_mode,
            randomness="os-entropy" if noise_seed is None else "seeded",
            standardisation_from_private_data=standardisation is None,
        ),
    )


@functools.lru_cache(maxsize=1024)
def _rdp_curve(noise_multiplier: float, sample_rate: float, steps: int) -> tuple[float, ...]:
    """Opacus' RDP of the sampled Gaussian mechanism (~0.1 s for fractional orders: cached, as
    the ledger recomputes the same runs' curves)."""
    curve = opacus_rdp.compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=list(RDP_ORDERS)
    )
    return tuple(float(value) for value in np.atleast_1d(curve))


def _round_down_delta(n_records: int) -> float:
    """A round δ below 1/N: the largest power of ten not above 1/(10 N)."""
    return 10 ** math.floor(math.log10(1 / (10 * n_records)))
