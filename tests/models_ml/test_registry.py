"""The registry's stage changes, each journalled for every version it moves (issue #12), and its
waivers, decided by the authorization controller. Versions are registered without artifacts:
stage bookkeeping needs none."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from core.authz import System
from models_ml import gate_evaluation, registry
from models_ml.models import ModelVersion, Stage
from patients.course import rules_record
from tests.models_ml.test_model_alerts_api import make_version

pytestmark = pytest.mark.django_db


def _stage_changes(model_version: ModelVersion) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            action="model_stage_changed",
            object_type="model_version",
            object_id=str(model_version.pk),
        ).order_by("sequence")
    )


def test_a_new_shadow_sends_the_old_one_back_to_candidate_and_journals_both(model_owner):
    old = make_version("dose-gbr-101", Stage.CANDIDATE)
    new = make_version("dose-gbr-102", Stage.CANDIDATE)
    call_command("promote", old.version, "--shadow", "--as", model_owner.username)

    call_command("promote", new.version, "--shadow", "--as", model_owner.username)

    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.stage, new.stage) == (Stage.CANDIDATE, Stage.SHADOW)
    demoted = _stage_changes(old)
    assert [event.changes["stage"] for event in demoted] == [
        {"old": "candidate", "new": "shadow"},
        {"old": "shadow", "new": "candidate"},
    ]
    assert demoted[-1].actor_id == model_owner.pk
    assert demoted[-1].detail == {"version": old.version, "replaced_by": new.version}
    assert [event.changes["stage"] for event in _stage_changes(new)] == [
        {"old": "candidate", "new": "shadow"}
    ]
    # The demotion is journalled before the new shadow takes its place.
    assert demoted[-1].sequence < _stage_changes(new)[0].sequence


def test_only_a_candidate_goes_to_shadow_and_a_refusal_moves_nobody(model_owner):
    shadow = make_version("dose-gbr-101", Stage.SHADOW)
    production = make_version("dose-gbr-102", Stage.PRODUCTION)
    with pytest.raises(registry.PromotionRefused, match="production, not a candidate"):
        registry.set_shadow(production.version, actor=model_owner)
    shadow.refresh_from_db()
    assert shadow.stage == Stage.SHADOW
    assert not AuditEvent.objects.filter(action="model_stage_changed").exists()


def test_the_system_acting_on_its_own_cannot_waive_a_gate(model_owner):
    """A waiver is a person's written decision, kept with their name: the controller lets the
    system pass every action, but a waiver asks for a person first."""
    version = make_version("dose-gbr-101", Stage.CANDIDATE)
    version.gate_results = {
        "passed": False,
        "gates": [
            {"name": "fairness", "passed": False, "detail": {"failures": ["x"]}, "waivable": True}
        ],
        "references": gate_evaluation.gate_references(None),
    }
    version.course_rules = rules_record()
    version.save()
    with pytest.raises(registry.PromotionRefused, match="Only a model owner may waive a gate"):
        registry.promote(version.version, actor=System("models_ml.promote"), waiver_reason="ok")
    assert ModelVersion.objects.get(pk=version.pk).stage == Stage.CANDIDATE
    promoted = registry.promote(version.version, actor=model_owner, waiver_reason="reviewed")
    assert promoted.stage == Stage.PRODUCTION and promoted.waived_by == model_owner
