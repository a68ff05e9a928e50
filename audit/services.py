"""TEMPORARY PLACEHOLDER written by the lead so the foundation imports; the audit engineer
replaces this whole file with the real journal (same signatures)."""

from collections.abc import Iterable


def record_event(
    *,
    action: str,
    actor=None,
    object_type: str = "",
    object_id="",
    patient_id=None,
    patient_ids: Iterable[int] = (),
    changes=None,
    outcome: str = "success",
    detail=None,
    component: str = "",
):
    return None


def record_read(*, actor, object_type: str, patient_ids: Iterable[int], detail=None):
    return None
