"""Differentially private training of the dose-response network (patient-level DP-SGD, Opacus'
accountant) and the accounting behind the privacy ledgers: per dataset, and per real patient for
life (every private training that touched the patient, composed; see "each real patient's
lifetime spend" below).

Pure numpy/torch/opacus (no Django, no database).

The guarantee. Neighbouring datasets differ by adding or removing one patient, with all of their
rows (add/remove-one adjacency, the one the sampled Gaussian mechanism's RDP analysis assumes).
:func:`train_private` Poisson-samples patients (each with probability q per step, bringing all
their rows), clips each sampled patient's mean gradient to the clipping norm C, adds Gaussian
noise of standard deviation σC to the sum and divides by a public constant (q·U) — user-level
DP-SGD (McMahan et al. 2018, "Learning differentially private recurrent language models").
Row-level DP-SGD, which Opacus implements, would protect a patient with k rows only as a group of
k (ε growing roughly k-fold); with ``units=None`` each row is its own unit and the figures say
``privacy_unit="row"``, which the privacy gate refuses.

Public, not protected by ε: the number of patients U and of rows (q, the steps and δ are derived
from U, as Opacus and TF Privacy derive them from N; were U secret, adjacency would have to be
replace-one, under which the same run costs more — by dp_accounting's PLD accountant, ε 5.1
against 2.7 add/remove (RDP reports 2.99) at the registry's plan for 480 patients, 4.6 against
2.7 for 1,600), the training time, and whatever the caller computes from the data outside this
module (the registry takes the standardisation and the interval band from the public evaluation
cohort; see models_ml/private_model.py). Also not covered: hyper-parameter choices made by
looking at the private data. No training loss is recorded: an exact mean over private rows is
outside ε.

Accounting. One accountant everywhere: Rényi DP of the Poisson-subsampled Gaussian mechanism
(Mironov, Talwar & Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism"),
as implemented by Opacus (``opacus.accountants.analysis.rdp``), converted to (ε, δ) with Opacus'
conversion (Balle et al. 2020). RDP composes by addition at each order α, so the ledger's
cumulative ε over several trainings on the same dataset is computed from the *sum of their RDP
curves* — tighter than adding the runs' ε, and exactly what one accountant would report had the
runs been one long training. The orders are Opacus' defaults (1.1 … 63) plus 128 … 1024, which
only tighten the bound at small ε (any set of orders gives a valid bound).

δ. Every run uses δ ≤ 1/U, checked here; the registry picks δ ≤ 1/(10 U), since a mechanism
that publishes one patient at random already satisfies δ = 1/U.

Randomness. The guarantee assumes the adversary cannot predict which patients were sampled or
what noise was added. A recorded seed would let anyone replay both and subtract the noise, so by
default the sampling and noise generators are seeded from the OS (``secrets``) and the seed is
never stored; ``noise_seed`` makes a run reproducible for tests and benchmarks and is recorded as
``randomness="seeded"``, which the privacy gate refuses. Known limitation: the generators are
torch's Mersenne Twister and the noise is float32 ``torch.normal``, as in Opacus without
``secure_mode``; floating-point attacks on Gaussian noise (Mironov 2012) are not defended here.

Why not Opacus' engine for the clipping. Opacus clips per row (no per-patient clipping), and for
this 1.7k-parameter network its per-step machinery (per-sample hooks, per-parameter clipping and
noise) costs more than the whole non-private step (bench/RESULTS.md). The network is a stack of
linear layers, whose per-row gradients are outer products of activations and backprops
(:class:`ClosedFormClipping`), so one backward pass gives every patient's gradient. Opacus remains
the accountant and, with one row per unit, the reference the clipping is tested against
(``grad_sample_mode="opacus-*"``).
"""

from __future__ import annotations

import functools
import math
import secrets
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import opacus
import torch
from opacus import PrivacyEngine
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as opacus_rdp
from opacus.accountants.utils import get_noise_multiplier
from torch import nn
from torch.nn import functional
from torch.utils.data import DataLoader

from models_ml.torch_model import (
    DoseResponseMLP,
    InvalidTrainingData,
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
CLOSED_FORM = "closed-form"
GRAD_SAMPLE_MODES = (
    CLOSED_FORM,
    "opacus-hooks",
    "opacus-functorch",
    "opacus-ew",
    "opacus-ghost",
)


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
            f"Privacy budget exceeded: ε {spent_epsilon:.3f} already spent on this dataset by "
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


@functools.lru_cache(maxsize=64)
def noise_multiplier_for(
    target_epsilon: float, delta: float, sample_rate: float, epochs: int
) -> float:
    """Smallest noise multiplier (to Opacus' 0.01 tolerance in ε) whose run of ``epochs`` at
    ``sample_rate`` spends at most ``target_epsilon`` at ``delta`` (a bisection over RDP curves,
    seconds at large sampling rates: cached, as a refused plan is often asked for again)."""
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


# --- each real patient's lifetime spend -------------------------------------------------------
#
# The dataset ledger above bounds the runs on one snapshot; a real patient, though, is in every
# snapshot taken after their first recorded dose change, so a new row would start a fresh
# dataset budget while the patient's loss keeps composing. The patient ledger composes every
# private run that trained on a patient, whatever its dataset. A run is the same sampled Gaussian
# mechanism for each of its patients (each is Poisson-sampled at the run's rate, all rows at
# once), so a patient's loss is the RDP composition of the runs that had them in their training
# split — held-out patients are not trained on and spend nothing.

REAL_PATIENT_PREFIX = "db-"  # models_ml.dataset.database_training_set: f"db-{patient.pk}"
# dp_accounting's PLD discretisation: pessimistic rounding keeps it an upper bound; 1e-3 changes
# ε by < 0.001 against 1e-4 at the registry's plan, at a tenth of the time (~0.2 s per history).
PLD_DISCRETISATION = 1e-3


def real_patient_keys(patient_ids: Iterable) -> tuple[int, ...]:
    """The primary keys of the real patients among ``patient_ids`` (``db-<pk>``), sorted, once
    each. Simulated patients are not people: they spend nothing and need no ledger."""
    keys = set()
    for patient_id in {str(value) for value in patient_ids}:
        if patient_id.startswith(REAL_PATIENT_PREFIX):
            suffix = patient_id.removeprefix(REAL_PATIENT_PREFIX)
            if not suffix.isdigit():
                raise ValueError(f"malformed real patient id {patient_id!r}")
            keys.add(int(suffix))
    return tuple(sorted(keys))


@dataclass(frozen=True)
class PatientSpend:
    """One patient's privacy loss over ``runs`` private trainings, at ``delta``."""

    runs: int
    epsilon_rdp: float
    epsilon_pld: float | None
    delta: float


SpentRun = tuple[PrivateRun, float]  # a run and the δ it was trained at


def compose_patient_runs(runs: Sequence[SpentRun], *, with_pld: bool = True) -> PatientSpend:
    """ε of every run that trained on one patient: the RDP curves added and converted at the
    smallest of the runs' δ — the strictest, so a patient's ε never falls as runs are added —
    and, beside it, dp_accounting's PLD accountant over the same events (tighter; reported, never
    used to decide). ``epsilon_pld`` is None when dp_accounting is not installed."""
    if not runs:
        raise ValueError("a patient's spend needs at least one run")
    delta = min(run_delta for _run, run_delta in runs)
    private_runs = tuple(sorted((run for run, _delta in runs), key=_run_key))
    return PatientSpend(
        runs=len(runs),
        epsilon_rdp=cumulative_epsilon(private_runs, delta),
        epsilon_pld=pld_epsilon(private_runs, delta) if with_pld else None,
        delta=delta,
    )


@functools.lru_cache(maxsize=256)
def pld_epsilon(runs: tuple[PrivateRun, ...], delta: float) -> float | None:
    """ε at ``delta`` of ``runs`` composed by dp_accounting's privacy-loss-distribution
    accountant (add/remove adjacency, as the RDP analysis)."""
    try:
        import dp_accounting
        from dp_accounting.pld import PLDAccountant
    except ImportError:  # a development dependency: the RDP figure is the one that decides
        return None
    events = [
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(
                run.sample_rate, dp_accounting.GaussianDpEvent(run.noise_multiplier)
            ),
            run.steps,
        )
        for run in runs
        if run.steps
    ]
    if not events:
        return 0.0
    accountant = PLDAccountant(value_discretization_interval=PLD_DISCRETISATION)
    accountant.compose(dp_accounting.ComposedDpEvent(events))
    return float(accountant.get_epsilon(delta))


class PatientBudgetExceeded(Exception):
    """The run would take at least one real patient past their lifetime ε budget."""

    def __init__(
        self,
        *,
        over: dict,
        touched: int,
        budget_epsilon: float,
        run_epsilon: float,
    ) -> None:
        worst = max(over.values(), key=lambda spend: spend.epsilon_rdp)
        self.patients = tuple(sorted(over))
        self.worst_epsilon = worst.epsilon_rdp
        self.budget_epsilon = budget_epsilon
        super().__init__(
            f"Per-patient privacy budget exceeded: this run would take {len(over)} of the "
            f"{touched} real patients it trains on past their lifetime budget of "
            f"ε {budget_epsilon:.2f} (worst: ε {worst.epsilon_rdp:.3f} over {worst.runs} private "
            f"trainings, δ = {worst.delta:.3g}; this run alone costs ε {run_epsilon:.3f}). "
            "Nothing was trained. The budget is for life: train with more noise or fewer epochs, "
            "or without these patients."
        )


def check_patient_budgets(
    histories: dict,
    new_run: PrivateRun,
    delta: float,
    budget_epsilon: float,
    *,
    with_pld: bool = False,
) -> dict:
    """Each patient's spend once ``new_run`` at ``delta`` is added to their ``histories``
    ({patient: [(run, δ), …]}, empty for a first training); raise
    :class:`PatientBudgetExceeded` when any would exceed ``budget_epsilon`` by RDP. Patients with
    the same history share one computation (and ``with_pld``, one PLD composition)."""
    by_history: dict[tuple, PatientSpend] = {}
    spends = {}
    for patient, history in histories.items():
        runs = (*history, (new_run, delta))
        key = tuple(sorted((*_run_key(run), run_delta) for run, run_delta in runs))
        if key not in by_history:
            by_history[key] = compose_patient_runs(runs, with_pld=with_pld)
        spends[patient] = by_history[key]
    over = {p: spend for p, spend in spends.items() if spend.epsilon_rdp > budget_epsilon}
    if over:
        raise PatientBudgetExceeded(
            over=over,
            touched=len(spends),
            budget_epsilon=budget_epsilon,
            run_epsilon=new_run.epsilon(delta),
        )
    return spends


def _run_key(run: PrivateRun) -> tuple[float, float, int]:
    return (run.noise_multiplier, run.sample_rate, run.steps)


class _FitArguments(TypedDict):
    """The settings both fitting paths of :func:`train_private` take."""

    sample_rate: float
    epochs: int
    noise_multiplier: float
    max_grad_norm: float
    sampling: torch.Generator
    noise: torch.Generator


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
    units: np.ndarray | Sequence | None = None,
    hidden: Sequence[int] = (32, 32),
    noise_seed: int | None = None,
    standardisation: Standardisation | None = None,
    grad_sample_mode: str = CLOSED_FORM,
    threads: int = 1,
) -> TrainedTorchModel:
    """DP-SGD (Adam on clipped, noised gradients) of the same network, data pipeline and epochs
    as :func:`models_ml.torch_model.train_nonprivate`.

    ``units``: the privacy unit of each row (the patient id); ``None`` makes every row its own
    unit. Each step Poisson-samples *units* at rate ``q = 1 / ceil(U / batch_size)`` (so
    ``batch_size`` is the expected number of units per step), averages each sampled unit's
    per-row gradients, clips that average to ``max_grad_norm``, sums, adds Gaussian noise of
    ``noise_multiplier × max_grad_norm`` and divides by the expected number of units — DP-SGD
    whose neighbouring datasets differ by one *patient*, accounted over U units (δ ≤ 1/U).

    ``grad_sample_mode``: :data:`CLOSED_FORM` (default; any units) computes the per-unit
    gradient norms from the layers' activations and backprops in one backward pass
    (:class:`ClosedFormClipping`). The ``opacus-*`` modes run Opacus' ``PrivacyEngine``
    (hooks, functorch, expanded weights, ghost clipping); Opacus clips per row, so they accept
    only one row per unit. Both use the same accountant.

    ``seed`` fixes the initial weights (public). The sampling and the noise are private
    randomness: drawn from the OS unless ``noise_seed`` is given (tests, benchmarks; recorded as
    ``randomness="seeded"``). ``standardisation``: pass values from a public source to keep the
    artifact entirely inside ε; when omitted it is fitted on X, y and recorded as such.
    """
    X, y = validate_training_data(X, y, batch_size=1, epochs=epochs)
    unit_of_row, n_units = _unit_index(units, len(X))
    if not 1 <= batch_size <= n_units:
        raise InvalidTrainingData(
            f"batch_size {batch_size} (expected units per step) must be between 1 and the "
            f"{n_units} privacy units"
        )
    check_delta(delta, n_units)
    if not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
        raise ValueError(f"max_grad_norm must be > 0, got {max_grad_norm}")
    if grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ValueError(f"grad_sample_mode must be one of {GRAD_SAMPLE_MODES}")
    rows_per_unit = np.bincount(unit_of_row, minlength=n_units)
    if grad_sample_mode != CLOSED_FORM and rows_per_unit.max() > 1:
        raise ValueError(
            f"grad_sample_mode {grad_sample_mode!r} clips per row; with up to "
            f"{rows_per_unit.max()} rows per unit use {CLOSED_FORM!r}"
        )
    sample_rate = sample_rate_for(n_units, batch_size)
    PrivateRun(noise_multiplier, sample_rate, 0)  # validates the noise multiplier up front
    private_seed = secrets.randbits(63) if noise_seed is None else noise_seed
    sampling = torch.Generator().manual_seed(private_seed)
    noise = torch.Generator().manual_seed((private_seed + 1) % 2**63)
    del private_seed  # never stored

    started = time.perf_counter()
    module = new_module(X, y, hidden=hidden, seed=seed, standardisation=standardisation)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    common = _FitArguments(
        sample_rate=sample_rate,
        epochs=epochs,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        sampling=sampling,
        noise=noise,
    )
    with torch_threads(threads):
        if grad_sample_mode == CLOSED_FORM:
            run = _fit_closed_form(module, optimizer, X, y, unit_of_row, rows_per_unit, **common)
        else:
            mode = grad_sample_mode.removeprefix("opacus-")
            run = _fit_opacus(module, optimizer, X, y, batch_size=batch_size, mode=mode, **common)
    elapsed = time.perf_counter() - started
    return TrainedTorchModel(
        module=detached_copy(module),  # the weights, without Opacus' hooks and attributes
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        n_train=len(X),
        training_seconds=elapsed,
        # No training loss on the record: an exact mean over private rows is outside ε.
        final_train_loss=float("nan"),
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
            privacy_unit="row" if units is None else "patient",
            n_units=n_units,
        ),
    )


class ClosedFormClipping:
    """Per-unit clipped gradient sums and private gradients of a :class:`DoseResponseMLP`.

    Closed form for a stack of linear layers (Goodfellow 2015, "Efficient per-example gradient
    computations"): row r's gradient of a layer is the outer product gᵣ aᵣᵀ of its backprop gᵣ
    (∂loss/∂pre-activation) and its input aᵣ, and its bias gradient is gᵣ. So one forward and
    one backward pass to the pre-activations give every unit's mean gradient as a batched
    matrix product, Σ_{r∈p} gᵣ aᵣᵀ / kₚ (with one row per unit, only the norms are needed, and
    ‖g aᵀ‖² = ‖g‖² ‖a‖² is exact); the units' clipped gradients are then summed with one more
    product. No autograd hooks, no per-parameter loops.
    """

    def __init__(self, module: DoseResponseMLP, max_grad_norm: float) -> None:
        self.module = module
        self.max_grad_norm = float(max_grad_norm)
        self.linears = [layer for layer in module.layers if isinstance(layer, nn.Linear)]
        self.parameters = list(module.parameters())
        self.size = sum(parameter.numel() for parameter in self.parameters)

    def clipped_sum(
        self,
        features: torch.Tensor,
        targets: torch.Tensor,
        present: torch.Tensor,
        *,
        out: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Σ over units of clip(mean gradient of the unit's rows, max_grad_norm), one tensor per
        parameter (in ``module.parameters()`` order), and the per-row losses (0 for padding).

        The batch is padded by unit: ``features`` (P, k, f) and ``targets`` (P, k, 2) hold up
        to k rows of each of P units; ``present`` (P, k) is 1.0 for a real row, 0.0 for
        padding (zero weight in the loss, hence zero backprop and no part in the sum). ``out``:
        a flat buffer of :attr:`size` to which the sum is *added*; the tensors returned are
        views of it."""
        module = self.module
        n_units, width = present.shape
        rows_in_unit = present.sum(dim=1)
        inputs: list[torch.Tensor] = []
        pre_activations: list[torch.Tensor] = []
        hidden = (features.reshape(n_units * width, -1) - module.feature_mean) / module.feature_std
        last = len(self.linears) - 1
        for index, layer in enumerate(self.linears):
            inputs.append(hidden)
            pre = functional.linear(hidden, layer.weight, layer.bias)
            pre_activations.append(pre)
            hidden = torch.relu(pre) if index < last else pre
        predictions = hidden * module.target_std + module.target_mean
        flat_targets = targets.reshape(n_units * width, -1)
        row_losses = ((predictions - flat_targets) / module.target_std).pow(2).mean(dim=1)
        row_losses = row_losses * present.reshape(-1)
        # Backprops of the unit's *mean* loss (each row weighted 1/k): the per-unit sums of
        # outer products below are then the units' mean gradients.
        weights = (present / rows_in_unit[:, None]).reshape(-1)
        backprops = torch.autograd.grad((row_losses * weights).sum(), pre_activations)
        inputs = [tensor.detach() for tensor in inputs]

        if out is None:
            out = torch.zeros(self.size)
        if width == 1:
            # One row per unit: the row's gradient is g aᵀ (and g), whose squared norm is the
            # product of non-negative terms ‖g‖² (‖a‖² + 1): exact, no cancellation.
            views = self._views(out)
            squared = torch.zeros(n_units)
            for g, a in zip(backprops, inputs, strict=True):
                g_norms = torch.linalg.vecdot(g, g)
                squared.addcmul_(g_norms, torch.linalg.vecdot(a, a)).add_(g_norms)
            clip = self._clip_factors(squared)
            for index, (g, a) in enumerate(zip(backprops, inputs, strict=True)):
                weighted = g * clip[:, None]
                views[2 * index].addmm_(weighted.T, a)
                views[2 * index + 1].add_(weighted.sum(dim=0))
        else:
            # Each unit's mean gradient is materialised — one row of P × 1.7k numbers, laid out
            # as the parameters are — and that very vector is measured, clipped and added: a
            # norm from Gram products of nearly cancelling rows could come out wrong in float32
            # and let a patient past the clipping norm.
            parts = []
            for g, a in zip(backprops, inputs, strict=True):
                g_units = g.view(n_units, width, -1)
                parts.append(torch.bmm(g_units.transpose(1, 2), a.view(n_units, width, -1)))
                parts.append(g_units.sum(dim=1))
            per_unit = torch.cat([part.flatten(1) for part in parts], dim=1)
            clip = self._clip_factors(per_unit.square().sum(dim=1))
            out.add_(clip @ per_unit)
            views = self._views(out)
        return views, row_losses.detach()

    def private_gradient(
        self,
        batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
        *,
        noise_multiplier: float,
        expected_units: int,
        generator: torch.Generator,
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """One step's private gradient: (clipped sum over the batch's units + Gaussian noise of
        std ``noise_multiplier × max_grad_norm`` on every coordinate) / expected units per step
        — a public divisor (q·U), never the sampled batch's size. ``batch``: (features, targets,
        present) as :meth:`clipped_sum` takes them, or None for an empty Poisson batch (noise
        only, still a step). Returns one tensor per parameter and the per-row losses."""
        flat = torch.normal(
            0.0, noise_multiplier * self.max_grad_norm, (self.size,), generator=generator
        )
        if batch is None:
            views, losses = self._views(flat), None
        else:
            views, losses = self.clipped_sum(*batch, out=flat)
        flat.div_(expected_units)
        return views, losses

    def _clip_factors(self, squared_norms: torch.Tensor) -> torch.Tensor:
        """min(1, C / (‖gradient‖ + 1e-6)) per unit, as Opacus computes it; a non-finite norm
        stops the training (fail closed: a NaN would carry one patient into every weight)."""
        if not bool(torch.isfinite(squared_norms).all()):
            raise FloatingPointError("a per-patient gradient is not finite; training stopped")
        return (self.max_grad_norm / (squared_norms.sqrt() + 1e-6)).clamp_(max=1.0)

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """``flat`` cut into tensors shaped like the parameters (views: writes go to ``flat``)."""
        views, start = [], 0
        for parameter in self.parameters:
            views.append(flat[start : start + parameter.numel()].view_as(parameter))
            start += parameter.numel()
        return views


def poisson_units(
    n_units: int, sample_rate: float, steps: int, generator: torch.Generator
) -> torch.Tensor:
    """(steps, n_units) booleans: unit u is in step t's batch with probability ``sample_rate``,
    independently of every other unit and step (Poisson sampling, as the accountant assumes)."""
    return torch.rand((steps, n_units), generator=generator) < sample_rate


def _fit_closed_form(
    module: DoseResponseMLP,
    optimizer: torch.optim.Optimizer,
    X: np.ndarray,
    y: np.ndarray,
    unit_of_row: np.ndarray,
    rows_per_unit: np.ndarray,
    *,
    sample_rate: float,
    epochs: int,
    noise_multiplier: float,
    max_grad_norm: float,
    sampling: torch.Generator,
    noise: torch.Generator,
) -> PrivateRun:
    """Poisson sampling of units, :meth:`ClosedFormClipping.private_gradient`, Adam."""
    n_units, width = len(rows_per_unit), int(rows_per_unit.max())
    # Row indices of each unit, padded to ``width`` with a pointer to an all-zero row.
    order = np.argsort(unit_of_row, kind="stable")
    first = np.concatenate([[0], np.cumsum(rows_per_unit)[:-1]])
    position = np.arange(len(order)) - first[unit_of_row[order]]
    padded = np.full((n_units, width), len(X), dtype=np.int64)
    padded[unit_of_row[order], position] = order
    padded_rows = torch.from_numpy(padded)
    present = (padded_rows < len(X)).float()
    features = torch.from_numpy(np.vstack([X, np.zeros((1, X.shape[1]), X.dtype)]))
    targets = torch.from_numpy(np.vstack([y, np.zeros((1, y.shape[1]), y.dtype)]))

    steps_per_epoch = int(1 / sample_rate)
    expected_units = max(int(n_units * sample_rate), 1)  # as Opacus' optimizer divides
    clipping = ClosedFormClipping(module, max_grad_norm)
    module.train()
    steps = 0
    for _ in range(epochs):
        for units_in_step in poisson_units(n_units, sample_rate, steps_per_epoch, sampling):
            units = units_in_step.nonzero().squeeze(1)
            batch = None
            if len(units):
                rows = padded_rows[units]
                batch = (features[rows], targets[rows], present[units])
            gradients, _losses = clipping.private_gradient(
                batch,
                noise_multiplier=noise_multiplier,
                expected_units=expected_units,
                generator=noise,
            )
            for parameter, gradient in zip(clipping.parameters, gradients, strict=True):
                parameter.grad = gradient
            optimizer.step()
            steps += 1
    return PrivateRun(noise_multiplier, sample_rate, steps)


def _fit_opacus(
    module: DoseResponseMLP,
    optimizer: torch.optim.Optimizer,
    X: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    sample_rate: float,
    epochs: int,
    noise_multiplier: float,
    max_grad_norm: float,
    sampling: torch.Generator,
    noise: torch.Generator,
    mode: str,
) -> PrivateRun:
    """Opacus' PrivacyEngine with per-row clipping (one row per unit)."""
    loader = DataLoader(
        RowBatches(X, y),
        batch_size=batch_size,
        # torch's stubs expect a list of samples; RowBatches.__getitems__ gives the batch.
        collate_fn=as_batch,  # type: ignore[arg-type]
        generator=sampling,
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
            grad_sample_mode=mode,
        )
    if mode == "ghost":  # the criterion runs the two backward passes
        private_module, private_optimizer, criterion, private_loader = private
    else:
        private_module, private_optimizer, private_loader = private
    with warnings.catch_warnings():
        # The first layer's input never requires grad; Opacus' full backward hooks say so.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        fit(private_module, private_optimizer, private_loader, criterion, epochs=epochs)
    history = engine.accountant.history  # [(noise_multiplier, sample_rate, steps)]
    if len(history) != 1 or history[0][1] != sample_rate:
        raise RuntimeError(f"unexpected accountant history {history}")
    return PrivateRun(history[0][0], history[0][1], history[0][2])


def _unit_index(units: np.ndarray | Sequence | None, n_rows: int) -> tuple[np.ndarray, int]:
    """Each row's unit as 0 … U−1, and U."""
    if units is None:
        return np.arange(n_rows), n_rows
    units = np.asarray(units)
    if units.shape != (n_rows,):
        raise InvalidTrainingData(
            f"units must name one privacy unit per row ({n_rows}), got shape {units.shape}"
        )
    _labels, unit_of_row = np.unique(units, return_inverse=True)
    return unit_of_row.astype(np.int64), len(_labels)


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
