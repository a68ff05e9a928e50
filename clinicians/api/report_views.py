"""The patient's own visit report: ``GET /api/v1/me/visits/{id}/report/`` (JSON, plain words,
no model internals) and ``GET /api/v1/me/visits/{id}/report.pdf`` (the same as a PDF). Only the
patient's own visits that a clinician confirmed (``clinicians.view_visit``); anything else is a
404, journalled as a refusal."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from clinicians.portal.report_pdf import patient_pdf
from clinicians.portal.visit_report import patient_view, visit_report_for


class _VisitOut(serializers.Serializer):
    id = serializers.IntegerField()
    scheduled_at = serializers.DateTimeField()
    status = serializers.CharField()


# "from" is a keyword in Python and a plain word in JSON: the class is built from a mapping.
_PeriodOut = type(
    "_PeriodOut",
    (serializers.Serializer,),
    {"from": serializers.DateTimeField(), "to": serializers.DateTimeField()},
)


class _BloodPressureOut(serializers.Serializer):
    summary = serializers.ListField(child=serializers.CharField())
    readings = serializers.IntegerField()
    average = serializers.CharField(allow_null=True)
    morning_average = serializers.CharField(allow_null=True)
    evening_average = serializers.CharField(allow_null=True)
    target = serializers.CharField()
    readings_below_target_percent = serializers.IntegerField(allow_null=True)


class _ChangeOut(serializers.Serializer):
    date = serializers.DateField()
    change = serializers.CharField()
    who = serializers.CharField()
    note = serializers.CharField(allow_blank=True)


class _ReviewedOut(serializers.Serializer):
    date = serializers.DateField()
    medication = serializers.CharField()
    summary = serializers.CharField()
    note = serializers.CharField(allow_blank=True)


class _MedicinesOut(serializers.Serializer):
    taken_percent = serializers.IntegerField(allow_null=True)
    summary = serializers.CharField()
    changes = _ChangeOut(many=True)
    reviewed_no_change = _ReviewedOut(many=True)


class _GoalOut(serializers.Serializer):
    goal = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.CharField(allow_blank=True)


class _AlertOut(serializers.Serializer):
    date = serializers.DateField()
    what = serializers.CharField()
    outcome = serializers.CharField()


class _QuestionOut(serializers.Serializer):
    sent_at = serializers.DateTimeField()
    text = serializers.CharField()


class MyVisitReportOut(serializers.Serializer):
    visit = _VisitOut()
    period = _PeriodOut()
    blood_pressure = _BloodPressureOut()
    medicines = _MedicinesOut()
    goals = _GoalOut(many=True)
    alerts = _AlertOut(many=True)
    open_questions = _QuestionOut(many=True)


class MyVisitReportView(APIView):
    @extend_schema(responses=MyVisitReportOut, tags=["patient"])
    def get(self, request, visit_id: int):
        """My visit report: my home blood pressure, medicines, changes and who made them, goals,
        alerts and my questions still waiting, since my last visit — in plain words."""
        report = visit_report_for(
            actor=request.user, visit_id=visit_id, view="me.visit_report", own_only=True
        )
        return Response(MyVisitReportOut(patient_view(report)).data)


class MyVisitReportPdfView(APIView):
    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY}, tags=["patient"])
    def get(self, request, visit_id: int):
        """My visit report as a PDF."""
        report = visit_report_for(
            actor=request.user, visit_id=visit_id, view="me.visit_report_pdf", own_only=True
        )
        response = HttpResponse(patient_pdf(report), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="visit-{visit_id}-summary.pdf"'
        response["Cache-Control"] = "no-store"
        return response
