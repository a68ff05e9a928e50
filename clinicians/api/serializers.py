from rest_framework import serializers

from clinicians.bounds_policy import REASON_MAX_CHARS
from clinicians.models import (
    TARGET_DIASTOLIC_LIMITS,
    TARGET_SYSTOLIC_LIMITS,
    Alert,
    AlertKind,
    AlertStatus,
    AlertThresholds,
    Recommendation,
    RecommendationStatus,
    SafetyBounds,
    Tier,
)
from core.api.serializers import DoseField, IdField, PageFilter, StrictInputSerializer
from patients.course import MIN_INTERVAL_LIMITS_DAYS
from patients.formulary import FORMULARY


class ReasonSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class RecommendationSerializer(serializers.ModelSerializer):
    patient = serializers.IntegerField(source="patient_id")
    current_dose_mg = DoseField(read_only=True)
    proposed_dose_mg = DoseField(read_only=True, allow_null=True)
    final_dose_mg = DoseField(read_only=True, allow_null=True)
    reasons = ReasonSerializer(many=True, read_only=True)

    class Meta:
        model = Recommendation
        fields = [
            "id",
            "patient",
            "kind",
            "medication",
            "current_dose_mg",
            "proposed_dose_mg",
            "tier",
            "status",
            "reason",
            "gate_reasons",
            "reasons",
            "expected_effect",
            "explanation",
            "model_version",
            "created_at",
            "decided_at",
            "decision_reason",
            "patient_note",
            "overrode_block",
            "final_dose_mg",
        ]
        read_only_fields = fields


class RecommendationFilterSerializer(PageFilter):
    patient = IdField(required=False)
    status = serializers.ChoiceField(choices=RecommendationStatus.choices, required=False)
    tier = serializers.ChoiceField(choices=Tier.choices, required=False)


class DecisionSerializer(StrictInputSerializer):
    action = serializers.ChoiceField(choices=["approve", "modify", "reject"])
    dose_mg = DoseField(required=False, allow_null=True)
    reason = serializers.CharField(max_length=500, help_text="the clinical reason (internal)")
    password = serializers.CharField(write_only=True, trim_whitespace=False)
    override = serializers.BooleanField(
        required=False,
        default=False,
        help_text="decide a change the gate or the course rules block (the answer without it is "
        "409 override_required with the block reasons); audited as an override",
    )
    patient_note = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="a note written for the patient, shown on their phone (the reason is not)",
    )

    def validate(self, attrs):
        if attrs["action"] == "modify" and attrs.get("dose_mg") is None:
            raise serializers.ValidationError({"dose_mg": ["Required when the action is modify."]})
        return attrs


class BoundsReasonField(serializers.CharField):
    """Why, for values outside the recommended range (``clinicians.bounds_policy``)."""

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "help_text",
            "why, when a value is outside the recommended range: required then (400 "
            "reason_required naming the field otherwise); kept in the journal beside the old and "
            "new values",
        )
        super().__init__(required=False, allow_blank=True, max_length=REASON_MAX_CHARS, **kwargs)


class SafetyBoundsSerializer(StrictInputSerializer):
    medication = serializers.ChoiceField(choices=sorted(FORMULARY))
    min_dose_mg = DoseField()
    max_dose_mg = DoseField()
    max_auto_step_mg = DoseField()
    target_systolic = serializers.IntegerField(
        source="target_systolic_mmhg",
        min_value=TARGET_SYSTOLIC_LIMITS[0],
        max_value=TARGET_SYSTOLIC_LIMITS[1],
        help_text="mmHg",
    )
    target_diastolic = serializers.IntegerField(
        source="target_diastolic_mmhg",
        min_value=TARGET_DIASTOLIC_LIMITS[0],
        max_value=TARGET_DIASTOLIC_LIMITS[1],
        help_text="mmHg",
    )
    may_start = serializers.BooleanField(
        required=False,
        help_text="the patient may start this drug from the app (default off: a clinician "
        "starts it); unchanged when omitted",
    )
    min_interval_days = serializers.IntegerField(
        required=False,
        min_value=MIN_INTERVAL_LIMITS_DAYS[0],
        max_value=MIN_INTERVAL_LIMITS_DAYS[1],
        help_text="minimum days between dose changes (default 14; the patient's interval is the "
        "longest across their bounds); unchanged when omitted",
    )
    reason = BoundsReasonField()
    updated_at = serializers.DateTimeField(read_only=True)


class SafetyBoundsOutSerializer(serializers.ModelSerializer):
    set_by = serializers.IntegerField(source="set_by_id")
    min_dose_mg = DoseField(read_only=True)
    max_dose_mg = DoseField(read_only=True)
    max_auto_step_mg = DoseField(read_only=True)
    target_systolic = serializers.IntegerField(source="target_systolic_mmhg", read_only=True)
    target_diastolic = serializers.IntegerField(source="target_diastolic_mmhg", read_only=True)
    confirmed = serializers.BooleanField(
        source="is_confirmed",
        read_only=True,
        help_text="false: entered at enrolment, not in force until a clinician confirms them",
    )
    confirmed_by = serializers.IntegerField(source="confirmed_by_id", allow_null=True)

    class Meta:
        model = SafetyBounds
        fields = [
            "medication",
            "min_dose_mg",
            "max_dose_mg",
            "max_auto_step_mg",
            "target_systolic",
            "target_diastolic",
            "may_start",
            "min_interval_days",
            "set_by",
            "updated_at",
            "confirmed",
            "confirmed_by",
            "confirmed_at",
        ]


class AlertSerializer(serializers.ModelSerializer):
    patient = serializers.IntegerField(source="patient_id")
    acknowledged_by = serializers.IntegerField(source="acknowledged_by_id", allow_null=True)
    resolved_by = serializers.IntegerField(source="resolved_by_id", allow_null=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "patient",
            "kind",
            "status",
            "severity",
            "message",
            "evidence",
            "opened_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolved_by",
            "resolution_note",
        ]
        read_only_fields = fields


class AlertResolveSerializer(StrictInputSerializer):
    note = serializers.CharField(
        max_length=500, help_text="What was done (required; kept in the record and the journal)."
    )


class AlertSnoozeSerializer(StrictInputSerializer):
    hours = serializers.IntegerField(
        min_value=1, max_value=720, help_text="How long the condition stays quiet."
    )
    reason = serializers.CharField(max_length=300)


class AlertSnoozeOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    patient = serializers.IntegerField(source="patient_id")
    kind = serializers.CharField()
    starts_at = serializers.DateTimeField()
    until = serializers.DateTimeField()
    reason = serializers.CharField()
    set_by = serializers.IntegerField(source="set_by_id")


class AlertFilterSerializer(PageFilter):
    status = serializers.ChoiceField(choices=AlertStatus.choices, required=False)
    kind = serializers.ChoiceField(choices=AlertKind.choices, required=False)
    patient = IdField(required=False)


class AlertThresholdsSerializer(StrictInputSerializer):
    crisis_systolic_mmhg = serializers.IntegerField(required=False)
    crisis_diastolic_mmhg = serializers.IntegerField(required=False)
    hypotension_systolic_mmhg = serializers.IntegerField(required=False)
    stale_after_hours = serializers.IntegerField(required=False)
    reason = BoundsReasonField()


class ConfirmSafetyBoundsSerializer(StrictInputSerializer):
    reason = BoundsReasonField()


class AlertThresholdsOutSerializer(serializers.ModelSerializer):
    updated_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="null: never set, the defaults apply"
    )

    class Meta:
        model = AlertThresholds
        fields = [
            "crisis_systolic_mmhg",
            "crisis_diastolic_mmhg",
            "hypotension_systolic_mmhg",
            "stale_after_hours",
            "updated_at",
        ]


class PatientRecommendationSerializer(RecommendationSerializer):
    """What the patient's phone gets: the clinician's note for them, never the internal reason."""

    class Meta(RecommendationSerializer.Meta):
        fields = [f for f in RecommendationSerializer.Meta.fields if f != "decision_reason"]
        read_only_fields = fields
