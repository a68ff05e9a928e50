from rest_framework import serializers

from accounts.models import CareTeam
from core.api.serializers import IdField, PageFilter
from patients.labs import LAB_CODES
from patients.models import LabResult, Patient, Reading, ReadingType


class CareTeamSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = CareTeam
        fields = ["id", "name"]


class RegimenItemSerializer(serializers.Serializer):
    medication = serializers.CharField()
    dose_mg = serializers.DecimalField(max_digits=7, decimal_places=2)
    started_at = serializers.DateTimeField()


class PatientSerializer(serializers.ModelSerializer):
    care_team = CareTeamSummarySerializer(source="care_teams", many=True, read_only=True)
    regimen = RegimenItemSerializer(
        source="open_prescriptions", many=True, read_only=True, help_text="what they take now"
    )

    class Meta:
        model = Patient
        fields = [
            "id",
            "given_name",
            "family_name",
            "birth_year",
            "sex",
            "race",
            "ethnicity",
            "care_team",
            "regimen",
        ]
        read_only_fields = fields


class ReadingSerializer(serializers.ModelSerializer):
    type = serializers.CharField(source="reading_type")
    systolic = serializers.IntegerField(source="systolic_mmhg", allow_null=True)
    diastolic = serializers.IntegerField(source="diastolic_mmhg", allow_null=True)
    device_id = serializers.CharField(source="device.device_id")

    class Meta:
        model = Reading
        fields = [
            "id",
            "client_id",
            "type",
            "systolic",
            "diastolic",
            "value",
            "measured_at",
            "device_id",
            # Kept in the record when marked entered in error (null when it is not).
            "entered_in_error_at",
            "entered_in_error_reason",
        ]
        read_only_fields = fields


class BatchRejectionSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    field = serializers.CharField(allow_null=True)
    message = serializers.CharField()


class BatchResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = BatchRejectionSerializer(many=True)


class LabResultSerializer(serializers.ModelSerializer):
    """A stored result; values are JSON numbers (in the canonical ``unit``, and as sent)."""

    value = serializers.DecimalField(max_digits=9, decimal_places=3, coerce_to_string=False)
    original_value = serializers.DecimalField(
        max_digits=9, decimal_places=3, coerce_to_string=False
    )

    class Meta:
        model = LabResult
        fields = [
            "id",
            "patient",
            "client_id",
            "code",
            "value",
            "unit",
            "original_value",
            "original_unit",
            "observed_at",
            "received_at",
            "recorded_by",
        ]
        read_only_fields = fields


class ReadingFilterSerializer(PageFilter):
    type = serializers.ChoiceField(choices=ReadingType.choices, required=False)


class LabFilterSerializer(PageFilter):
    patient = IdField(help_text="The patient's id (required).")
    code = serializers.ChoiceField(choices=list(LAB_CODES), required=False, help_text="LOINC.")
