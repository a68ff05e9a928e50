from decimal import Decimal

from rest_framework import serializers

from clinicians.models import (
    Alert,
    AlertThresholds,
    Recommendation,
    RecommendationStatus,
    SafetyBounds,
    Tier,
)
from core.api.serializers import StrictInputSerializer
from patients.formulary import FORMULARY

DOSE = {"max_digits": 7, "decimal_places": 2, "min_value": Decimal("0")}


class RecommendationSerializer(serializers.ModelSerializer):
    patient = serializers.IntegerField(source="patient_id")

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
            "expected_effect",
            "explanation",
            "model_version",
            "created_at",
            "decided_at",
            "decision_reason",
            "final_dose_mg",
        ]
        read_only_fields = fields


class RecommendationFilterSerializer(StrictInputSerializer):
    patient = serializers.IntegerField(required=False, min_value=1)
    status = serializers.ChoiceField(choices=RecommendationStatus.choices, required=False)
    tier = serializers.ChoiceField(choices=Tier.choices, required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000)
    offset = serializers.IntegerField(required=False, min_value=0)


class DecisionSerializer(StrictInputSerializer):
    action = serializers.ChoiceField(choices=["approve", "modify", "reject"])
    dose_mg = serializers.DecimalField(required=False, allow_null=True, **DOSE)
    reason = serializers.CharField(max_length=500)
    password = serializers.CharField(write_only=True, trim_whitespace=False)

    def validate(self, attrs):
        if attrs["action"] == "modify" and attrs.get("dose_mg") is None:
            raise serializers.ValidationError({"dose_mg": ["Required when the action is modify."]})
        return attrs


class SafetyBoundsSerializer(StrictInputSerializer):
    medication = serializers.ChoiceField(choices=sorted(FORMULARY))
    min_dose_mg = serializers.DecimalField(**DOSE)
    max_dose_mg = serializers.DecimalField(**DOSE)
    max_auto_step_mg = serializers.DecimalField(**DOSE)
    target_systolic = serializers.IntegerField(min_value=110, max_value=160)
    target_diastolic = serializers.IntegerField(min_value=60, max_value=100)
    updated_at = serializers.DateTimeField(read_only=True)


class SafetyBoundsOutSerializer(serializers.ModelSerializer):
    set_by = serializers.IntegerField(source="set_by_id")

    class Meta:
        model = SafetyBounds
        fields = [
            "medication",
            "min_dose_mg",
            "max_dose_mg",
            "max_auto_step_mg",
            "target_systolic",
            "target_diastolic",
            "set_by",
            "updated_at",
        ]


class AlertSerializer(serializers.ModelSerializer):
    patient = serializers.IntegerField(source="patient_id")
    acknowledged_by = serializers.IntegerField(source="acknowledged_by_id", allow_null=True)

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
        ]
        read_only_fields = fields


class AlertThresholdsSerializer(StrictInputSerializer):
    crisis_systolic_mmhg = serializers.IntegerField(required=False)
    crisis_diastolic_mmhg = serializers.IntegerField(required=False)
    hypotension_systolic_mmhg = serializers.IntegerField(required=False)
    stale_after_hours = serializers.IntegerField(required=False)


class AlertThresholdsOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = AlertThresholds
        fields = [
            "crisis_systolic_mmhg",
            "crisis_diastolic_mmhg",
            "hypotension_systolic_mmhg",
            "stale_after_hours",
            "updated_at",
        ]
