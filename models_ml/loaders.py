"""Loading a registered model version: the one place that decides, by the version's kind, which
code reads its artifact (``LOADERS``). Each loader checks the artifact against the SHA-256 on
the record before using it: scikit-learn models from skops with a type allow-list
(``models_ml.dose_model``), torch networks from a tensors-only file loaded with
``weights_only=True`` (``models_ml.torch_model``). The feature set is checked first, for every
kind; a loaded model is cached per version and hash, and serving reads a version's full record
only to load it (``load_serving``).

Whatever loads, it has the dose model's interface (predict, interval, explain): gates, policies,
serving and monitoring never ask which kind they hold. torch is imported only when a torch
network is loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models_ml import dose_model, torch_dose_model
from models_ml.artifacts import ArtifactIntegrityError
from models_ml.features import FEATURE_NAMES, FEATURE_SET_VERSION
from models_ml.models import ModelVersion
from models_ml.selectors import ServingVersion, model_in_stage


def _load_dose_model(model_version: ModelVersion) -> dose_model.DoseResponseModel:
    return dose_model.load_dose_model(
        Path(model_version.artifact_path), sha256=model_version.artifact_sha256
    )


def _load_torch_dose_model(model_version: ModelVersion) -> torch_dose_model.PrivateDoseModel:
    from models_ml.torch_model import load as load_torch

    trained = load_torch(Path(model_version.artifact_path), model_version.artifact_sha256)
    low, high = model_version.parameters["residual_quantiles"]
    return torch_dose_model.PrivateDoseModel(trained, (float(low), float(high)))


LOADERS: dict[str, Callable[[ModelVersion], object]] = {
    dose_model.MODEL_KIND: _load_dose_model,
    torch_dose_model.MODEL_KIND: _load_torch_dose_model,
}

_cache: dict[tuple[str, str], object] = {}
_cache_lock = threading.Lock()


def load(model_version: ModelVersion):
    """The verified artifact (hash and feature set checked), cached per version and hash."""
    key = (model_version.version, model_version.artifact_sha256)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    if (
        model_version.feature_set != FEATURE_SET_VERSION
        or tuple(model_version.feature_names) != FEATURE_NAMES
    ):
        raise dose_model.FeatureSetMismatch(
            f"{model_version.version} uses {model_version.feature_set}; the code computes "
            f"{FEATURE_SET_VERSION}"
        )
    loader = LOADERS.get(model_version.kind)
    if loader is None:
        raise ArtifactIntegrityError(
            f"{model_version.version} is of kind {model_version.kind!r}, which no loader reads "
            f"(known: {', '.join(sorted(LOADERS))})"
        )
    model = loader(model_version)
    with _cache_lock:
        _cache[key] = model
    return model


def load_serving(serving: ServingVersion):
    """The artifact of a version being served (``load``): from the cache, or on a miss from the
    full record, read then and only then."""
    with _cache_lock:
        model = _cache.get((serving.version, serving.artifact_sha256))
    if model is not None:
        return model
    return load(ModelVersion.objects.get(pk=serving.pk))


@dataclass
class LoadedModel:
    version: ModelVersion
    model: object


def loaded_in_stage(stage: str) -> LoadedModel | None:
    model_version = model_in_stage(stage)
    return LoadedModel(model_version, load(model_version)) if model_version else None
