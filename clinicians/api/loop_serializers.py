"""Input and output shapes of the patient–clinician loop: goals, messages, visits."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from clinicians.loop.selectors import goal_progress
from clinicians.models import (
    MESSAGE_MAX_CHARS,
    TARGET_DIASTOLIC_LIMITS,
    TARGET_SYSTOLIC_LIMITS,
    Goal,
    GoalKind,
    GoalMeasure,
    GoalStatus,
    Message,
    Visit,
    VisitStatus,
)
from core.api.serializers import IdField, PageFilter, StrictInputSerializer


@extend_schema_field({"type": "string", "enum": GoalKind.values}, component_name="GoalKindEnum")
class GoalKindField(serializers.ChoiceField):
    """A goal's kind, its enum inlined: recommendations and alerts have a ``kind`` of their
    own, and one shared enum name for three choice sets would be ambiguous in the schema."""

    def __init__(self, **kwargs):
        super().__init__(choices=GoalKind.choices, **kwargs)


WHOSE = "Required for clinicians; a patient writes their own."


class _PageFilter(PageFilter):
    patient = IdField(required=False, help_text="Clinicians: one patient of their care teams.")


# --- goals --------------------------------------------------------------------------------------


class GoalProgressSerializer(serializers.Serializer):
    is_measurable = serializers.BooleanField()
    window_days = serializers.IntegerField()
    readings = serializers.IntegerField(help_text="BP readings, or days with steps, in the window")
    share_under_target = serializers.FloatField(
        allow_null=True, help_text="BP goals: share of home readings under the target (0–1)"
    )
    mean_daily_steps = serializers.FloatField(allow_null=True)
    share_of_target = serializers.FloatField(
        allow_null=True, help_text="Steps goals: mean daily steps / goal"
    )
    summary = serializers.CharField()


class GoalSerializer(serializers.ModelSerializer):
    patient = serializers.IntegerField(source="patient_id")
    proposed_by = serializers.IntegerField(source="proposed_by_id")
    status_changed_by = serializers.IntegerField(source="status_changed_by_id", allow_null=True)
    kind = GoalKindField(read_only=True)
    measure = serializers.ChoiceField(
        choices=GoalMeasure.choices, allow_blank=True, read_only=True, help_text="Blank: a BP goal."
    )
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Goal
        fields = [
            "id",
            "patient",
            "kind",
            "measure",
            "target_systolic_mmhg",
            "target_diastolic_mmhg",
            "target_value",
            "description",
            "status",
            "proposed_by",
            "proposed_at",
            "status_changed_by",
            "status_changed_at",
            "progress",
        ]
        read_only_fields = fields

    @extend_schema_field(GoalProgressSerializer(allow_null=True))
    def get_progress(self, goal: Goal) -> dict | None:
        if goal.status != GoalStatus.ACTIVE:
            return None
        return GoalProgressSerializer(goal_progress(goal)).data


class GoalInSerializer(StrictInputSerializer):
    patient = IdField(required=False, help_text=WHOSE)
    kind = GoalKindField()
    measure = serializers.ChoiceField(
        choices=GoalMeasure.choices, required=False, help_text="Lifestyle goals only."
    )
    target_systolic_mmhg = serializers.IntegerField(
        required=False,
        min_value=TARGET_SYSTOLIC_LIMITS[0],
        max_value=TARGET_SYSTOLIC_LIMITS[1],
        help_text="BP goals; omitted: the treatment target of the safety bounds (must match it).",
    )
    target_diastolic_mmhg = serializers.IntegerField(
        required=False, min_value=TARGET_DIASTOLIC_LIMITS[0], max_value=TARGET_DIASTOLIC_LIMITS[1]
    )
    target_value = serializers.DecimalField(
        required=False,
        max_digits=9,
        decimal_places=2,
        min_value=Decimal("0"),
        help_text="Lifestyle goals, in the measure's unit (steps, mg, kg).",
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=300)


class GoalFilterSerializer(_PageFilter):
    status = serializers.ChoiceField(choices=GoalStatus.choices, required=False)
    kind = GoalKindField(required=False)


class GoalStatusSerializer(StrictInputSerializer):
    status = serializers.ChoiceField(
        choices=[GoalStatus.ACTIVE, GoalStatus.ACHIEVED, GoalStatus.ABANDONED]
    )


# --- messages -----------------------------------------------------------------------------------


class MessageSerializer(serializers.ModelSerializer):
    patient = serializers.IntegerField(source="patient_id")
    sender = serializers.IntegerField(source="sender_id")
    read_by = serializers.IntegerField(source="read_by_id", allow_null=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "patient",
            "sender",
            "sender_role",
            "body",
            "created_at",
            "read_at",
            "read_by",
            "is_urgent",
        ]
        read_only_fields = fields
        extra_kwargs = {"body": {"help_text": "Plain text: render it escaped, never as HTML."}}


class MessageInSerializer(StrictInputSerializer):
    patient = IdField(required=False, help_text=WHOSE)
    body = serializers.CharField(max_length=MESSAGE_MAX_CHARS, help_text="Plain text.")


class MessageFilterSerializer(_PageFilter):
    unread = serializers.BooleanField(
        required=False, help_text="Only messages from the other side not yet read."
    )


# --- visits -------------------------------------------------------------------------------------


class VisitSerializer(serializers.ModelSerializer):
    patient = serializers.IntegerField(source="patient_id")

    class Meta:
        model = Visit
        fields = [
            "id",
            "patient",
            "status",
            "scheduled_at",
            "source",
            "cadence_reason",
            "interval_days",
            "explanation",
            "created_at",
            "confirmed_at",
            "cancelled_at",
            "cancel_reason",
            "completed_at",
        ]
        read_only_fields = fields


class VisitFilterSerializer(_PageFilter):
    status = serializers.ChoiceField(choices=VisitStatus.choices, required=False)
    when = serializers.ChoiceField(
        choices=["upcoming", "past"],
        required=False,
        help_text="upcoming: scheduled from now on; past: before now.",
    )


class VisitInSerializer(StrictInputSerializer):
    patient = IdField()
    scheduled_at = serializers.DateTimeField()


class VisitConfirmSerializer(StrictInputSerializer):
    scheduled_at = serializers.DateTimeField(
        required=False, help_text="Another (future) time than the proposed one."
    )


class VisitCancelSerializer(StrictInputSerializer):
    reason = serializers.CharField(max_length=300)


class VisitPlanInSerializer(StrictInputSerializer):
    patient = IdField()


class VisitPlanSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(
        choices=["created", "rescheduled", "unchanged", "covered", "declined"]
    )
    reason = serializers.CharField(source="decision.reason")
    interval_days = serializers.IntegerField(source="decision.interval_days")
    due_on = serializers.DateField(source="decision.due_on")
    explanation = serializers.CharField(source="decision.explanation")
    rule_source = serializers.CharField(source="decision.source")
    visit = VisitSerializer(allow_null=True)
    appointment = VisitSerializer(
        source="visit",
        allow_null=True,
        help_text="Deprecated: the same as visit, under the name visits had before (API.md).",
    )
