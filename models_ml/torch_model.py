"""The dose-response network: a small MLP that predicts the blood-pressure response (change in
systolic and diastolic mmHg) to a candidate dose change, its non-private training, and its
artifact format.

Pure numpy/torch (no Django, no database), so services and Celery tasks can call it. The private
variant of the same training lives in :mod:`models_ml.privacy`; explanations in
:mod:`models_ml.explain_torch`.

Promises:

* The standardisation (feature and target mean/std) is part of the network (buffers), so the
  module maps raw features to mmHg and an explainer sees the features in their own units.
* Training is deterministic given ``seed`` on CPU: initial weights, shuffling and (for private
  runs that ask for it) noise come from generators seeded here; the global torch RNG is left as
  it was.
* An artifact is one file, ``torch.save`` of a dict of tensors only (the state dict plus the JSON
  metadata as a uint8 tensor), so one SHA-256 covers weights and metadata. :func:`load` hashes the
  bytes first, refuses a mismatch with :class:`ArtifactIntegrityError`, and only then parses those
  same bytes with ``torch.load(weights_only=True)`` — nothing is ever unpickled from an unverified
  file, and nothing but tensors is unpickled at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from models_ml.artifacts import ArtifactIntegrityError

ARTIFACT_FORMAT = "clinaiops.dose_response_mlp/1"
OUTPUT_NAMES: tuple[str, str] = ("delta_systolic_mmhg", "delta_diastolic_mmhg")
N_OUTPUTS = len(OUTPUT_NAMES)
OPTIMIZER = "adam"
_METADATA_KEY = "metadata_json"
_STATE_PREFIX = "state."


class InvalidTrainingData(ValueError):
    """The training matrix cannot be trained on (empty, wrong shape, non-finite values)."""


@dataclass(frozen=True)
class Standardisation:
    """Mean and standard deviation of each feature and each target, applied inside the network.

    For a private run these four vectors are *not* covered by the run's ε when they are fitted
    on the private data (see :func:`models_ml.privacy.train_private`); pass values from a public
    source (the feature set's reference ranges, the simulator) to keep the whole artifact private.
    """

    feature_mean: tuple[float, ...]
    feature_std: tuple[float, ...]
    target_mean: tuple[float, ...]
    target_std: tuple[float, ...]

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray) -> Standardisation:
        x_std = X.std(axis=0)
        y_std = y.std(axis=0)
        # A constant column would divide by zero: leave it unscaled (std 1).
        x_std = np.where(x_std > 1e-6, x_std, 1.0)
        y_std = np.where(y_std > 1e-6, y_std, 1.0)
        return cls(
            feature_mean=tuple(float(v) for v in X.mean(axis=0)),
            feature_std=tuple(float(v) for v in x_std),
            target_mean=tuple(float(v) for v in y.mean(axis=0)),
            target_std=tuple(float(v) for v in y_std),
        )


class DoseResponseMLP(nn.Module):
    """``x`` (raw features, float32) → standardise → Linear/ReLU stack → de-standardise → mmHg.

    Each ReLU is its own ``nn.ReLU`` instance, which DeepLIFT (``shap.DeepExplainer``) needs to
    apply its rescale rule to every non-linearity.
    """

    # Registered buffers (``register_buffer``), declared so they type as tensors, not modules.
    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(
        self,
        n_features: int,
        hidden: Sequence[int] = (32, 32),
        standardisation: Standardisation | None = None,
    ) -> None:
        super().__init__()
        if n_features < 1 or not hidden or any(width < 1 for width in hidden):
            raise ValueError(f"invalid architecture: n_features={n_features}, hidden={hidden}")
        self.n_features = int(n_features)
        self.hidden = tuple(int(width) for width in hidden)
        scaling = standardisation or Standardisation(
            feature_mean=(0.0,) * n_features,
            feature_std=(1.0,) * n_features,
            target_mean=(0.0,) * N_OUTPUTS,
            target_std=(1.0,) * N_OUTPUTS,
        )
        self.register_buffer("feature_mean", _float_tensor(scaling.feature_mean, n_features))
        self.register_buffer("feature_std", _float_tensor(scaling.feature_std, n_features))
        self.register_buffer("target_mean", _float_tensor(scaling.target_mean, N_OUTPUTS))
        self.register_buffer("target_std", _float_tensor(scaling.target_std, N_OUTPUTS))
        layers: list[nn.Module] = []
        width_in = self.n_features
        for width in self.hidden:
            layers += [nn.Linear(width_in, width), nn.ReLU()]
            width_in = width
        layers.append(nn.Linear(width_in, N_OUTPUTS))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.feature_mean) / self.feature_std
        return self.layers(z) * self.target_std + self.target_mean

    def standardisation(self) -> Standardisation:
        return Standardisation(
            feature_mean=tuple(self.feature_mean.tolist()),
            feature_std=tuple(self.feature_std.tolist()),
            target_mean=tuple(self.target_mean.tolist()),
            target_std=tuple(self.target_std.tolist()),
        )


@dataclass(frozen=True)
class PrivacyFigures:
    """What a private run spent and how: the numbers the registry and the privacy ledger keep."""

    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    epochs: int
    epsilon: float
    delta: float
    accountant: str
    n_records: int
    grad_sample_mode: str
    # "os-entropy" (the only private setting) or "seeded" (tests, benchmarks: NOT private,
    # since whoever knows the seed can replay the sampling and subtract the noise).
    randomness: str
    # Whether the standardisation was fitted on the private data (outside ε) or supplied.
    standardisation_from_private_data: bool
    # Whom ε protects: "patient" (all of a patient's rows, sampled and clipped together) or
    # "row" (each row its own unit). Defaults read artifacts written before units existed.
    privacy_unit: str = "row"
    n_units: int | None = None  # U, the number of units the run was accounted over (δ ≤ 1/U)


@dataclass
class TrainedTorchModel:
    """A trained network with everything needed to reproduce, audit and reload it."""

    module: DoseResponseMLP
    epochs: int
    batch_size: int
    lr: float
    seed: int
    n_train: int
    training_seconds: float = 0.0
    final_train_loss: float = float("nan")
    privacy: PrivacyFigures | None = None
    optimizer: str = OPTIMIZER
    torch_version: str = field(default_factory=lambda: torch.__version__)

    @property
    def n_features(self) -> int:
        return self.module.n_features

    @property
    def hidden(self) -> tuple[int, ...]:
        return self.module.hidden

    @property
    def is_private(self) -> bool:
        return self.privacy is not None

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted (Δsystolic, Δdiastolic) mmHg per row, shape (n, 2), float64."""
        X = _as_feature_matrix(X, self.n_features)
        self.module.eval()
        with torch.no_grad():
            return self.module(torch.from_numpy(X)).double().numpy()

    def metadata(self) -> dict[str, Any]:
        """JSON-able description (stored inside the artifact and, by the registry, in the DB)."""
        return {
            "format": ARTIFACT_FORMAT,
            "model": "DoseResponseMLP",
            "outputs": list(OUTPUT_NAMES),
            "n_features": self.n_features,
            "hidden": list(self.hidden),
            "standardisation": asdict(self.module.standardisation()),
            "training": {
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "lr": self.lr,
                "seed": self.seed,
                "optimizer": self.optimizer,
                "n_train": self.n_train,
                "training_seconds": self.training_seconds,
                "final_train_loss": _finite_or_none(self.final_train_loss),
                "torch_version": self.torch_version,
            },
            "privacy": asdict(self.privacy) if self.privacy else None,
        }

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the artifact atomically (temp file + rename); return its SHA-256 (hex)."""
        tensors = {
            _STATE_PREFIX + name: tensor.detach().clone().contiguous()
            for name, tensor in self.module.state_dict().items()
        }
        metadata = json.dumps(self.metadata(), sort_keys=True, allow_nan=False).encode()
        tensors[_METADATA_KEY] = torch.frombuffer(bytearray(metadata), dtype=torch.uint8)
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        payload = buffer.getvalue()
        target = Path(path)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            temporary.replace(target)
        finally:
            temporary.unlink(missing_ok=True)
        return hashlib.sha256(payload).hexdigest()


def load(path: str | os.PathLike[str], expected_sha256: str) -> TrainedTorchModel:
    """Load an artifact written by :meth:`TrainedTorchModel.save`, refusing it unless its
    SHA-256 equals ``expected_sha256`` (the registry's record)."""
    payload = Path(path).read_bytes()
    actual = hashlib.sha256(payload).hexdigest()
    if not hmac.compare_digest(actual, expected_sha256.strip().lower()):
        raise ArtifactIntegrityError(
            f"artifact {os.fspath(path)!r} has SHA-256 {actual}, registered {expected_sha256}: "
            "refusing to load a file that is not the registered one"
        )
    try:
        tensors = torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
        metadata = json.loads(bytes(tensors.pop(_METADATA_KEY).tolist()))
    except Exception as exc:  # a verified hash of a file we did not write
        raise ArtifactIntegrityError(f"artifact {os.fspath(path)!r} is unreadable: {exc}") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != ARTIFACT_FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise ArtifactIntegrityError(f"artifact format {found!r}, expected {ARTIFACT_FORMAT!r}")
    state = {
        name.removeprefix(_STATE_PREFIX): tensor
        for name, tensor in tensors.items()
        if name.startswith(_STATE_PREFIX)
    }
    try:
        module = DoseResponseMLP(
            metadata["n_features"],
            metadata["hidden"],
            Standardisation(**metadata["standardisation"]),
        )
        module.load_state_dict(state, strict=True)
        training = metadata["training"]
        privacy = metadata.get("privacy")
        return TrainedTorchModel(
            module=module.eval(),
            epochs=training["epochs"],
            batch_size=training["batch_size"],
            lr=training["lr"],
            seed=training["seed"],
            n_train=training["n_train"],
            training_seconds=training["training_seconds"],
            final_train_loss=_nan_if_none(training["final_train_loss"]),
            optimizer=training["optimizer"],
            torch_version=training["torch_version"],
            privacy=PrivacyFigures(**privacy) if privacy else None,
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ArtifactIntegrityError(
            f"artifact weights and metadata do not fit a {ARTIFACT_FORMAT} model: {exc!r}"
        ) from exc


def train_nonprivate(
    X: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    hidden: Sequence[int] = (32, 32),
    threads: int = 1,
) -> TrainedTorchModel:
    """Train the baseline: Adam on shuffled minibatches, same network and data pipeline as
    :func:`models_ml.privacy.train_private` (which adds clipping, noise and Poisson sampling).
    ``threads``: torch intra-op threads while training (see :func:`torch_threads`)."""
    X, y = validate_training_data(X, y, batch_size=batch_size, epochs=epochs)
    started = time.perf_counter()
    module = new_module(X, y, hidden=hidden, seed=seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    loader = DataLoader(
        RowBatches(X, y),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        # torch's stubs expect a list of samples; RowBatches.__getitems__ gives the batch.
        collate_fn=as_batch,  # type: ignore[arg-type]
    )
    with torch_threads(threads):
        loss = fit(
            module, optimizer, loader, StandardisedSquaredError(module.target_std), epochs=epochs
        )
    return TrainedTorchModel(
        module=module.eval(),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        n_train=len(X),
        training_seconds=time.perf_counter() - started,
        final_train_loss=loss,
    )


# --- shared by the non-private and the private training -------------------------------------


class RowBatches(Dataset):
    """Rows of (X, y) as tensors; a whole minibatch is gathered with one indexing operation
    (``__getitems__``) rather than row by row and stacked, which would dominate the cost of
    training a network this small."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(y)

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[index], self.y[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.as_tensor(indices, dtype=torch.long)
        return self.X[rows], self.y[rows]


def as_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate function: :class:`RowBatches` already returns the collated minibatch."""
    return batch


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads, then restore the previous count.

    The network has ~1.7k parameters: a training step is dispatcher overhead, not arithmetic,
    and extra threads only add synchronisation — on a busy 2-core host the non-private baseline
    ran ~2.4× slower with 2 threads than with 1 (bench/RESULTS.md, ``training`` section).
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def validate_training_data(
    X: np.ndarray, y: np.ndarray, *, batch_size: int, epochs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Float32 copies of X (n, f) and y (n, 2), or :class:`InvalidTrainingData` saying why not."""
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise InvalidTrainingData(f"features must be a non-empty 2-D matrix, got shape {X.shape}")
    if y.shape != (X.shape[0], N_OUTPUTS):
        raise InvalidTrainingData(
            f"targets must have shape ({X.shape[0]}, {N_OUTPUTS}) "
            f"({', '.join(OUTPUT_NAMES)}), got {y.shape}"
        )
    if X.shape[0] < 2:
        raise InvalidTrainingData(f"cannot train on {X.shape[0]} row(s)")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise InvalidTrainingData("features and targets must be finite (no NaN or infinity)")
    if not 1 <= batch_size <= X.shape[0]:
        raise InvalidTrainingData(f"batch_size {batch_size} must be between 1 and {X.shape[0]}")
    if epochs < 1:
        raise InvalidTrainingData(f"epochs must be at least 1, got {epochs}")
    return np.ascontiguousarray(X), np.ascontiguousarray(y)


def new_module(
    X: np.ndarray,
    y: np.ndarray,
    *,
    hidden: Sequence[int],
    seed: int,
    standardisation: Standardisation | None = None,
) -> DoseResponseMLP:
    """A freshly initialised network, weights drawn from ``seed`` without touching the global
    torch RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DoseResponseMLP(X.shape[1], hidden, standardisation or Standardisation.fit(X, y))


def detached_copy(module: DoseResponseMLP) -> DoseResponseMLP:
    """A fresh network with ``module``'s weights, in eval mode."""
    copy = DoseResponseMLP(module.n_features, module.hidden, module.standardisation())
    copy.load_state_dict(module.state_dict())
    return copy.eval()


class StandardisedSquaredError(nn.Module):
    """Squared error in standardised target units, averaged over the two outputs: one loss per
    row (``reduction="none"``), or their mean / sum. Opacus' ghost clipping switches
    ``reduction`` to ``"none"`` to obtain the per-row losses it reweights."""

    def __init__(self, target_std: torch.Tensor, reduction: str = "mean") -> None:
        super().__init__()
        self.target_std = target_std.detach().clone()
        self.reduction = reduction

    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per_row = ((predictions - targets) / self.target_std).pow(2).mean(dim=1)
        if self.reduction == "none":
            return per_row
        if self.reduction == "sum":
            return per_row.sum()
        # The mean of an empty Poisson batch would be NaN; its gradient is zero either way
        # (the private optimizer still adds its noise for that step).
        return per_row.mean() if len(per_row) else per_row.sum()


def fit(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    criterion: Callable[[torch.Tensor, torch.Tensor], Any],
    *,
    epochs: int,
) -> float:
    """Run ``epochs`` passes of ``loader``; return the mean training loss of the last one.
    ``module``, ``optimizer``, ``loader`` and ``criterion`` may be Opacus' private wrappers."""
    module.train()
    last_epoch_loss = float("nan")
    for _ in range(epochs):
        total, count = 0.0, 0
        for features, targets in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(module(features), targets)
            loss.backward()
            optimizer.step()
            if len(features):
                total += float(loss.detach()) * len(features)
                count += len(features)
        last_epoch_loss = total / max(count, 1)
    return last_epoch_loss


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _as_feature_matrix(X: np.ndarray, n_features: int) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"expected rows of {n_features} features, got shape {X.shape}")
    return np.ascontiguousarray(X)


def _float_tensor(values: Sequence[float], length: int) -> torch.Tensor:
    tensor = torch.tensor(list(values), dtype=torch.float32)
    if tensor.shape != (length,) or not torch.isfinite(tensor).all():
        raise ValueError(f"standardisation vector must be {length} finite values, got {values}")
    return tensor
