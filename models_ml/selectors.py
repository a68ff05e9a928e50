"""Reads of the model registry's records (``ModelVersion``), for the registry's services, the
gate evaluation, loading and serving."""

from __future__ import annotations

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
