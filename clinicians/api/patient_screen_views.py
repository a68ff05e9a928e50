"""The patient's screens over HTTP, one request each (docs/patient-app.md). Thin: find the
patient, ask the controller (one named action per screen, ``clinicians.screen_rules``; the read
journalled unless the patient reads their own), build the screen
(``clinicians.patient_screens``), shape it.

Two doors to each screen: ``/api/v1/me/<screen>/`` for the signed-in patient, and
``/api/v1/patients/{id}/<screen>/`` for whoever the controller lets read that patient's screen
(the patient themself too). A patient outside the caller's reach is a 404.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from clinicians import patient_screens
from clinicians.api.patient_screen_serializers import (
    DecisionOut,
    GoalsAndVisitsOut,
    MedicationsOut,
    MessageSentOut,
    MessagesOut,
    SendMessageIn,
    ThreadReadOut,
    TodayOut,
)
from clinicians.loop import messages
from clinicians.loop.urgency import emergency_guidance
from clinicians.screen_rules import SCREEN_ACTIONS
from core import authz
from core.errors import Forbidden, NotFound
from patients.models import Patient

TAGS = ["patient screens"]


def own_patient(request, screen: str) -> Patient:
    """The signed-in patient's record, the screen's read authorized (403 for a caller without
    a patient record)."""
    action = SCREEN_ACTIONS[screen]
    patient = Patient.objects.filter(user_id=request.user.pk).first()
    if patient is None:
        raise Forbidden(authz.message_of(action))
    authz.authorize_read(request.user, action, patient, detail={"screen": screen})
    return patient


def named_patient(request, screen: str, patient_id: int) -> Patient:
    """Patient ``patient_id``, if the caller may read this screen of theirs (else a 404 when
    the patient is outside their reach, a 403 when the rule says no)."""
    patient = Patient.objects.filter(pk=patient_id).first()
    if patient is None:
        raise NotFound(authz.NOT_FOUND_MESSAGE)
    authz.authorize_read(request.user, SCREEN_ACTIONS[screen], patient, detail={"screen": screen})
    return patient


class _Screen(APIView):
    screen = ""

    def patient(self, request, patient_id: int | None) -> Patient:
        if patient_id is None:
            return own_patient(request, self.screen)
        return named_patient(request, self.screen, patient_id)


class TodayView(_Screen):
    screen = "today"

    @extend_schema(responses=TodayOut, tags=TAGS)
    def get(self, request, patient_id: int | None = None):
        """Today: the latest reading, today's and the week's home mean against the target,
        when to measure next, open alerts in the patient's words with what to do (for a crisis:
        when to call emergency services), and emergency guidance after an urgent message."""
        patient = self.patient(request, patient_id)
        return Response(TodayOut(patient_screens.today_screen(patient)).data)


class MedicationsView(_Screen):
    screen = "medications"

    @extend_schema(responses=MedicationsOut, tags=TAGS)
    def get(self, request, patient_id: int | None = None):
        """My medications: the regimen, the last change and who made it (the clinician by name,
        or the care team's approved plan), the minimum interval between changes and when a
        change can next be considered, and why the last evaluation held."""
        patient = self.patient(request, patient_id)
        return Response(MedicationsOut(patient_screens.medications_screen(patient)).data)


class DecisionsView(_Screen):
    screen = "decisions"

    @extend_schema(responses=DecisionOut(many=True), tags=TAGS)
    def get(self, request, patient_id: int | None = None):
        """My decisions: every proposal delivered to or decided for the patient, newest first —
        ready, changed by you, approved, modified, reviewed with no change, replaced — with who
        decided and the clinician's note for the patient (never the internal reason)."""
        patient = self.patient(request, patient_id)
        rows = patient_screens.decisions_screen(patient)
        return Response(DecisionOut(rows, many=True).data)


class GoalsAndVisitsView(_Screen):
    screen = "goals_and_visits"

    @extend_schema(responses=GoalsAndVisitsOut, tags=TAGS)
    def get(self, request, patient_id: int | None = None):
        """My goals and visits: goals with their progress over 7 days, the next visit and the
        visits a clinician confirmed."""
        patient = self.patient(request, patient_id)
        return Response(GoalsAndVisitsOut(patient_screens.goals_and_visits_screen(patient)).data)


class MessagesView(_Screen):
    screen = "messages"

    @extend_schema(responses=MessagesOut, tags=TAGS)
    def get(self, request, patient_id: int | None = None):
        """My messages: the thread, newest first (the last 50), with read receipts, the care
        team's unread count and whether an urgent message still waits for the team."""
        patient = self.patient(request, patient_id)
        return Response(MessagesOut(patient_screens.messages_screen(patient)).data)


class MyMessagesView(MessagesView):
    @extend_schema(
        request=SendMessageIn, responses={201: MessageSentOut}, tags=TAGS, operation_id="me_send"
    )
    def post(self, request):
        """Write to the care team (a reply marks their messages read). A message with urgent
        words (chest pain, fainting, a severe headache, loss of vision …) answers with the
        emergency guidance at once and is flagged urgent for the care team."""
        body = SendMessageIn(data=request.data)
        body.is_valid(raise_exception=True)
        patient = Patient.objects.filter(user_id=request.user.pk).first()
        if patient is None:
            raise Forbidden(authz.message_of("clinicians.send_message"))
        message = messages.send_message(
            patient=patient, actor=request.user, body=body.validated_data["body"]
        )
        message.sender = request.user
        out = {
            "message": patient_screens.message_for_patient(message),
            "urgent": message.is_urgent,
            "emergency_guidance": emergency_guidance() if message.is_urgent else None,
        }
        return Response(MessageSentOut(out).data, status=status.HTTP_201_CREATED)


class MyThreadReadView(APIView):
    @extend_schema(request=None, responses=ThreadReadOut, tags=TAGS)
    def post(self, request):
        """Mark the care team's messages read (the receipts reach the team live)."""
        patient = Patient.objects.filter(user_id=request.user.pk).first()
        if patient is None:
            raise Forbidden(authz.message_of("clinicians.read_thread"))
        marked = messages.mark_thread_read(patient=patient, actor=request.user)
        return Response(ThreadReadOut({"marked": marked}).data)
