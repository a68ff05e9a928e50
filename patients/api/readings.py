"""``POST /api/v1/patients/{patient_id}/readings/{reading_id}/entered-in-error/`` (see the
OpenAPI document): a clinician of the patient's care team marks a reading entered in error, with
a reason (``patients.readings``). The reading stays in the record: the patient's readings list
it with the mark, FHIR with status ``entered-in-error``."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.permissions import ObjectActions
from core.api.serializers import StrictInputSerializer
from core.ids import DATABASE_INTEGER_MAX
from patients.api.serializers import ReadingSerializer
from patients.models import Reading
from patients.readings import REASON_MAX_CHARS, mark_entered_in_error
from patients.selectors import patients_visible_to

ALREADY_MARKED = OpenApiResponse(
    description="The reading is already marked entered in error (code "
    "already_entered_in_error); the first mark, its author and reason stand."
)


class EnteredInErrorSerializer(StrictInputSerializer):
    reason = serializers.CharField(
        max_length=REASON_MAX_CHARS,
        help_text="Why the reading is wrong (kept in the record and the journal).",
    )


class ReadingEnteredInErrorView(APIView):
    permission_classes = [IsAuthenticated, ObjectActions]
    object_actions = {"POST": "patients.mark_reading_in_error"}

    @extend_schema(
        request=EnteredInErrorSerializer,
        responses={200: ReadingSerializer, 409: ALREADY_MARKED},
        examples=[
            OpenApiExample(
                "Wrong arm",
                request_only=True,
                value={"reason": "Cuff on the wrong arm over a sleeve; the patient repeated it."},
            )
        ],
        tags=["clinician"],
    )
    def post(self, request, patient_id: int, reading_id: int):
        """Mark one reading entered in error. It leaves features, figures, plots and the alert
        rules (an alert only it raised is resolved, and the rules run again); it stays in the
        record and the journal."""
        if not (
            1 <= patient_id <= DATABASE_INTEGER_MAX and 1 <= reading_id <= DATABASE_INTEGER_MAX
        ):
            raise NotFound()
        patient = get_object_or_404(patients_visible_to(request.user), pk=patient_id)
        self.check_object_permissions(request, patient)  # before the body: 403 beats 400
        reading = get_object_or_404(Reading.objects.filter(patient=patient), pk=reading_id)
        body = EnteredInErrorSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        marked = mark_entered_in_error(
            reading=reading, reason=body.validated_data["reason"], actor=request.user
        )
        return Response(ReadingSerializer(marked).data)
