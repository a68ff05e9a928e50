"""Output shapes of the patient's screens (``clinicians.patient_screens``), for the OpenAPI
document and the phone app; input shapes of the messages screen."""

from __future__ import annotations

from rest_framework import serializers

from clinicians.models import MESSAGE_MAX_CHARS, AlertKind, AlertStatus, GoalStatus, VisitStatus
from clinicians.patient_screens import OUTCOME_CODES
from core.api.serializers import DoseField, StrictInputSerializer


class ReasonOut(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class EmergencyGuidanceOut(serializers.Serializer):
    title = serializers.CharField()
    text = serializers.CharField()
    call = serializers.CharField(help_text="the emergency number to call")


# --- today ---


class LatestReadingOut(serializers.Serializer):
    systolic_mmhg = serializers.IntegerField()
    diastolic_mmhg = serializers.IntegerField()
    measured_at = serializers.DateTimeField()
    is_at_target = serializers.BooleanField(help_text="both numbers below the target")


class TargetOut(serializers.Serializer):
    systolic_mmhg = serializers.IntegerField()
    diastolic_mmhg = serializers.IntegerField()


class MeanOut(serializers.Serializer):
    systolic_mmhg = serializers.IntegerField()
    diastolic_mmhg = serializers.IntegerField()
    readings = serializers.IntegerField()
    is_at_target = serializers.BooleanField()


class NextMeasurementOut(serializers.Serializer):
    slot = serializers.ChoiceField(choices=["now", "morning", "evening"])
    due_from = serializers.DateTimeField()
    due_until = serializers.DateTimeField(allow_null=True)
    text = serializers.CharField()


class PatientAlertOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=AlertKind.values)
    urgent = serializers.BooleanField()
    title = serializers.CharField()
    text = serializers.CharField()
    readings = serializers.ListField(child=serializers.CharField())
    what_to_do = serializers.ListField(child=serializers.CharField())
    call_emergency_if = serializers.ListField(
        child=serializers.CharField(), help_text="symptoms that mean: call emergency services now"
    )
    emergency_number = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=[AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED])
    status_text = serializers.CharField()
    opened_at = serializers.DateTimeField()


class TodayOut(serializers.Serializer):
    as_of = serializers.DateTimeField()
    time_zone = serializers.CharField()
    latest_reading = LatestReadingOut(allow_null=True)
    target = TargetOut()
    today_mean = MeanOut(allow_null=True, help_text="today, the patient's calendar day")
    week_mean = MeanOut(allow_null=True, help_text="the last 7 days")
    week_readings = serializers.IntegerField()
    readings_needed_per_week = serializers.IntegerField()
    week_time_in_target = serializers.FloatField(allow_null=True, help_text="0–1, by readings")
    next_measurement = NextMeasurementOut()
    alerts = PatientAlertOut(many=True)
    emergency_guidance = EmergencyGuidanceOut(
        allow_null=True, help_text="shown while a crisis is open or after an urgent message"
    )
    urgent_message_at = serializers.DateTimeField(allow_null=True)


# --- my medications ---

CHANGED_BY_KINDS = ["clinician", "approved_plan", "care_team", "clinic_records"]


class RegimenItemOut(serializers.Serializer):
    medication = serializers.CharField()
    dose_mg = DoseField()
    since = serializers.DateTimeField()
    changed_by = serializers.CharField(help_text="you | your care team | your clinic's records")
    decided_by = serializers.CharField(
        help_text="the deciding clinician's name, or your care team's approved plan"
    )
    changed_by_kind = serializers.ChoiceField(choices=CHANGED_BY_KINDS)


class LastChangeOut(serializers.Serializer):
    medication = serializers.CharField()
    from_dose_mg = DoseField(allow_null=True, help_text="null: the drug was started")
    to_dose_mg = DoseField(allow_null=True, help_text="null: the drug was stopped")
    at = serializers.DateTimeField()
    changed_by = serializers.CharField()
    decided_by = serializers.CharField()
    changed_by_kind = serializers.ChoiceField(choices=CHANGED_BY_KINDS)


class MedicationsOut(serializers.Serializer):
    regimen = RegimenItemOut(many=True)
    last_change = LastChangeOut(allow_null=True)
    min_interval_days = serializers.IntegerField()
    next_change_from = serializers.DateTimeField(
        allow_null=True, help_text="when a dose change can next be considered; null: now"
    )
    next_change_text = serializers.CharField()
    hold_reasons = ReasonOut(many=True, help_text="why the last evaluation proposed no change")


# --- my decisions ---


class DecisionOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    medication = serializers.CharField()
    current_dose_mg = DoseField()
    proposed_dose_mg = DoseField(allow_null=True)
    final_dose_mg = DoseField(allow_null=True)
    outcome = serializers.ChoiceField(choices=list(OUTCOME_CODES))
    outcome_text = serializers.CharField()
    decided_by = serializers.CharField(allow_null=True, help_text="the clinician's name")
    note = serializers.CharField(help_text="the clinician's note written for you (may be empty)")
    proposed_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)


# --- my goals and visits ---


class ProgressOut(serializers.Serializer):
    is_measurable = serializers.BooleanField()
    window_days = serializers.IntegerField()
    readings = serializers.IntegerField()
    share_under_target = serializers.FloatField(allow_null=True)
    mean_daily_steps = serializers.FloatField(allow_null=True)
    share_of_target = serializers.FloatField(allow_null=True)
    summary = serializers.CharField()


class ScreenGoalOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    measure = serializers.CharField(allow_blank=True)
    target_systolic_mmhg = serializers.IntegerField(allow_null=True)
    target_diastolic_mmhg = serializers.IntegerField(allow_null=True)
    target_value = serializers.DecimalField(max_digits=9, decimal_places=2, allow_null=True)
    description = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=GoalStatus.values)
    proposed_at = serializers.DateTimeField()
    progress = ProgressOut(allow_null=True, help_text="active goals, over the last 7 days")


class ScreenVisitOut(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=VisitStatus.values)
    scheduled_at = serializers.DateTimeField()
    cancel_reason = serializers.CharField(allow_blank=True)
    completed_at = serializers.DateTimeField(allow_null=True)


class GoalsAndVisitsOut(serializers.Serializer):
    goals = ScreenGoalOut(many=True)
    next_visit = ScreenVisitOut(allow_null=True)
    visits = ScreenVisitOut(many=True, help_text="visits a clinician confirmed, latest first")


# --- my messages ---


class ScreenMessageOut(serializers.Serializer):
    id = serializers.IntegerField()
    from_you = serializers.BooleanField()
    sender_name = serializers.CharField()
    body = serializers.CharField(help_text="Plain text: render it escaped, never as HTML.")
    created_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True, help_text="read by the other side")
    is_urgent = serializers.BooleanField()


class MessagesOut(serializers.Serializer):
    messages = ScreenMessageOut(many=True)
    unread = serializers.IntegerField(help_text="the care team's messages you have not read")
    urgent_waiting = serializers.BooleanField(
        help_text="an urgent message of yours not yet read by the care team"
    )
    emergency_guidance = EmergencyGuidanceOut(allow_null=True)


class SendMessageIn(StrictInputSerializer):
    body = serializers.CharField(max_length=MESSAGE_MAX_CHARS, help_text="Plain text.")


class MessageSentOut(serializers.Serializer):
    message = ScreenMessageOut()
    urgent = serializers.BooleanField(help_text="urgent words were found: show the guidance now")
    emergency_guidance = EmergencyGuidanceOut(allow_null=True)


class ThreadReadOut(serializers.Serializer):
    marked = serializers.IntegerField(help_text="the care team's messages marked read")
