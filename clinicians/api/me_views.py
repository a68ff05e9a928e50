"""The patient's own screens, one request each: ``GET /api/v1/me/medications/`` (the regimen,
the last change and who made it, the next time a change can be considered, and why the last
evaluation held) and ``GET /api/v1/me/decisions/`` (every proposal that reached a decision about
them, with its outcome and the clinician's note written for the patient — never the internal
reason)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from clinicians.models import Recommendation, RecommendationStatus
from clinicians.treatment import course_summary
from core import authz
from core.api.serializers import DoseField
from patients.models import Patient, Prescription


def _own_patient(request, view: str) -> Patient:
    """The signed-in patient's record, its read authorized (``patients.view_own_screens``: 403
    for anyone without one) and journalled by the controller (which leaves a patient reading
    their own record out of the journal)."""
    patient = Patient.objects.filter(user_id=request.user.pk).first()
    authz.authorize_read(request.user, "patients.view_own_screens", patient, detail={"view": view})
    assert patient is not None  # the rule refuses a caller without a record
    return patient


def _who(source: str, recommendation_by: dict[int, str]) -> str:
    """Who made a prescription change, in the patient's words."""
    if source.startswith("recommendation:"):
        rec_id = source.split(":", 1)[1]
        return recommendation_by.get(int(rec_id), "your care team") if rec_id.isdigit() else ""
    return {"clinician": "your care team", "import": "your clinic's records"}.get(
        source, "your care team"
    )


class ReasonOut(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class RegimenItemOut(serializers.Serializer):
    medication = serializers.CharField()
    dose_mg = DoseField()
    since = serializers.DateTimeField()
    changed_by = serializers.CharField(help_text="you | your care team | your clinic's records")


class LastChangeOut(serializers.Serializer):
    medication = serializers.CharField()
    from_dose_mg = DoseField(allow_null=True, help_text="null: the drug was started")
    to_dose_mg = DoseField(allow_null=True, help_text="null: the drug was stopped")
    at = serializers.DateTimeField()
    changed_by = serializers.CharField()


class MyMedicationsOut(serializers.Serializer):
    regimen = RegimenItemOut(many=True)
    last_change = LastChangeOut(allow_null=True)
    min_interval_days = serializers.IntegerField()
    next_change_from = serializers.DateTimeField(
        allow_null=True, help_text="when a dose change can next be considered; null: now"
    )
    hold_reasons = ReasonOut(many=True, help_text="why the last evaluation proposed no change")


class MyMedicationsView(APIView):
    @extend_schema(responses=MyMedicationsOut, tags=["patient"])
    def get(self, request):
        """My medications: what I take now, the last change and who made it, and when a change
        can next be considered (with the reason, in words, when the last check held)."""
        patient = _own_patient(request, "me.medications")
        history = list(Prescription.objects.filter(patient=patient).order_by("started_at", "pk"))
        rec_ids = [
            int(p.source.split(":", 1)[1])
            for p in history
            if p.source.startswith("recommendation:") and p.source.split(":", 1)[1].isdigit()
        ]
        recommendation_by = {
            pk: ("you" if status == RecommendationStatus.ACKNOWLEDGED else "your care team")
            for pk, status in Recommendation.objects.filter(
                patient=patient, pk__in=rec_ids
            ).values_list("pk", "status")
        }
        summary = course_summary(patient)
        body = {
            "regimen": [
                {
                    "medication": p.medication,
                    "dose_mg": p.dose_mg,
                    "since": p.started_at,
                    "changed_by": _who(p.source, recommendation_by),
                }
                for p in history
                if p.ended_at is None
            ],
            "last_change": _last_change(history, recommendation_by),
            "min_interval_days": summary.min_interval_days,
            "next_change_from": summary.next_change_from,
            "hold_reasons": summary.hold_reasons,
        }
        return Response(MyMedicationsOut(body).data)


def _last_change(history: list[Prescription], recommendation_by: dict[int, str]) -> dict | None:
    """The latest start, change or stop: a change closes one prescription and opens the next
    at the same instant."""
    events: list[tuple[datetime, str, Decimal | None, Prescription | None]] = []
    for p in history:
        before = next(
            (
                q
                for q in history
                if q.medication == p.medication and q.ended_at == p.started_at and q is not p
            ),
            None,
        )
        events.append((p.started_at, p.medication, before.dose_mg if before else None, p))
        if p.ended_at is not None and not any(
            q.medication == p.medication and q.started_at == p.ended_at for q in history
        ):
            events.append((p.ended_at, p.medication, p.dose_mg, None))
    if not events:
        return None
    at, medication, old, new = max(events, key=lambda event: event[0])
    stopped_by = next((p for p in history if p.ended_at == at and p.medication == medication), None)
    source = new.source if new is not None else (stopped_by.source if stopped_by else "")
    return {
        "medication": medication,
        "from_dose_mg": old,
        "to_dose_mg": new.dose_mg if new is not None else None,
        "at": at,
        "changed_by": _who(source, recommendation_by),
    }


# A proposal's outcome in the patient's words. Proposals still with the care team (waiting for
# review, blocked) are not listed: they are not decisions yet.
OUTCOMES = {
    RecommendationStatus.DELIVERED: ("ready", "Ready for you to confirm."),
    RecommendationStatus.ACKNOWLEDGED: ("changed_by_you", "You made this change."),
    RecommendationStatus.APPROVED: ("approved", "Approved by your care team."),
    RecommendationStatus.MODIFIED: ("modified", "Changed by your care team to another dose."),
    RecommendationStatus.REJECTED: ("no_change", "Reviewed by your care team — no change."),
}


class MyDecisionOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    medication = serializers.CharField()
    current_dose_mg = DoseField()
    proposed_dose_mg = DoseField(allow_null=True)
    final_dose_mg = DoseField(allow_null=True)
    outcome = serializers.ChoiceField(choices=[code for code, _ in OUTCOMES.values()])
    outcome_text = serializers.CharField()
    note = serializers.CharField(help_text="the clinician's note written for you (may be empty)")
    proposed_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)


class MyDecisionsView(APIView):
    @extend_schema(responses=MyDecisionOut(many=True), tags=["patient"])
    def get(self, request):
        """My decisions: every proposal about me that was delivered or decided, newest first,
        with its outcome and my clinician's note for me."""
        patient = _own_patient(request, "me.decisions")
        recs = Recommendation.objects.filter(patient=patient, status__in=list(OUTCOMES)).order_by(
            "-created_at", "-pk"
        )[:200]
        rows = [
            {
                "id": rec.pk,
                "kind": rec.kind,
                "medication": rec.medication,
                "current_dose_mg": rec.current_dose_mg,
                "proposed_dose_mg": rec.proposed_dose_mg,
                "final_dose_mg": rec.final_dose_mg,
                "outcome": OUTCOMES[rec.status][0],
                "outcome_text": OUTCOMES[rec.status][1],
                "note": rec.patient_note,
                "proposed_at": rec.created_at,
                "decided_at": rec.decided_at,
            }
            for rec in recs
        ]
        return Response(MyDecisionOut(rows, many=True).data)
