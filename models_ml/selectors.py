"""Reads of the model registry's records (``ModelVersion``), for the registry's services, the
gate evaluation, loading and serving."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import NotFound
from models_ml.models import ModelVersion


def get_version(version: str) -> ModelVersion:
    """The version named ``version``, or ``NotFound`` (404) naming it."""
    model_version = ModelVersion.objects.filter(version=version).first()
    if model_version is None:
        raise NotFound(f"No model version {version!r}.", field="version")
    return model_version


def model_in_stage(stage: str) -> ModelVersion | None:
    """The version in ``stage`` (production and shadow hold at most one each), or None."""
    return ModelVersion.objects.filter(stage=stage).first()


@dataclass(frozen=True)
class ServingVersion:
    """What an evaluation needs of the version it serves: which artifact (its version and hash,
    the key of the loaded-model cache) and the limits it serves under. The record's evidence
    (metrics, fairness, privacy, gate results, reference sample: hundreds of kB) stays in the
    database; the loader reads the full record only when the artifact is not yet loaded."""

    pk: int
    version: str
    artifact_sha256: str
    course_rules: dict
    input_ranges: dict


SERVING_COLUMNS = ("pk", "version", "artifact_sha256", "course_rules", "input_ranges")


def serving_version_in_stage(stage: str) -> ServingVersion | None:
    """The version in ``stage`` as serving needs it (``ServingVersion``), or None."""
    row = ModelVersion.objects.filter(stage=stage).values_list(*SERVING_COLUMNS).first()
    return None if row is None else ServingVersion(*row)
