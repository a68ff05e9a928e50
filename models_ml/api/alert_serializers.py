"""Input and output shapes of the model-monitoring API: model alerts and drift reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework import serializers

from core.api.serializers import PageFilter, StrictInputSerializer
from models_ml.alerts import MAX_REASON_LENGTH
from models_ml.models import DriftReport, ModelAlert, ModelAlertStatus

if TYPE_CHECKING:
    from accounts.models import User

MONITORS = ("drift", "outcome", "overrides")


class ModelAlertFilterSerializer(PageFilter):
    status = serializers.ChoiceField(choices=ModelAlertStatus.choices, required=False)
    version = serializers.CharField(
        required=False, max_length=40, help_text="Only this model version's alerts."
    )


class CloseAlertSerializer(StrictInputSerializer):
    reason = serializers.CharField(
        max_length=MAX_REASON_LENGTH,
        help_text="Why the alert can be closed: what was done (retrained, rolled back, "
        "reference rebuilt), or why it was a false alarm.",
    )


class ModelAlertSerializer(serializers.ModelSerializer):
    version = serializers.CharField(source="model_version.version", read_only=True)
    acknowledged_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    closed_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    is_in_force = serializers.BooleanField(
        source="is_open",
        read_only=True,
        help_text="Open or acknowledged: the model's proposals go to a clinician until closed.",
    )

    class Meta:
        model = ModelAlert
        fields = [
            "id",
            "version",
            "kind",
            "status",
            "is_in_force",
            "message",
            "evidence",
            "opened_at",
            "acknowledged_by",
            "acknowledged_at",
            "closed_by",
            "closed_at",
            "close_reason",
        ]
        read_only_fields = fields


class DriftReportFilterSerializer(PageFilter):
    monitor = serializers.ChoiceField(choices=MONITORS, required=False)
    verdict = serializers.ChoiceField(choices=DriftReport.Verdict.choices, required=False)


class DriftReportSerializer(serializers.ModelSerializer):
    version = serializers.CharField(source="model_version.version", read_only=True)

    class Meta:
        model = DriftReport
        fields = [
            "id",
            "version",
            "monitor",
            "verdict",
            "window_start",
            "window_end",
            "live_rows",
            "reference_rows",
            "report",
            "created_at",
        ]
        read_only_fields = fields
