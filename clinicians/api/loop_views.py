"""Goals, messages and visits: the patient–clinician loop (API.md,
docs/patient-clinician-loop.md). Lists are narrowed by the selectors (another team's patient is
a 404) and journalled as reads; every write is a service that asks the controller first (the
rules and their refusals: ``clinicians/rules.py``)."""

from __future__ import annotations

from django.db.models import Q
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from accounts.models import Role
from clinicians.api.loop_serializers import (
    GoalFilterSerializer,
    GoalInSerializer,
    GoalSerializer,
    GoalStatusSerializer,
    MessageFilterSerializer,
    MessageInSerializer,
    MessageSerializer,
    VisitCancelSerializer,
    VisitConfirmSerializer,
    VisitFilterSerializer,
    VisitInSerializer,
    VisitPlanInSerializer,
    VisitPlanSerializer,
    VisitSerializer,
)
from clinicians.loop import goals, messages, visits
from clinicians.loop.selectors import (
    goals_visible_to,
    messages_visible_to,
    visits_visible_to,
)
from clinicians.models import SenderRole, VisitStatus
from core.api.permissions import ObjectActions
from core.api.reads import AuthorizedReadMixin
from core.api.schema import CONFLICT
from core.api.serializers import validated_query
from patients.models import Patient
from patients.selectors import patients_visible_to


def patient_for_write(request, patient_id: int | None) -> Patient:
    """The patient a write is about: a patient writes into their own loop (naming another is a
    404), a clinician names one of their care teams' patients (another team's is a 404)."""
    user = request.user
    visible = patients_visible_to(user)
    if user.role == Role.PATIENT:
        patient = visible.first()
        if patient is None or (patient_id is not None and patient_id != patient.pk):
            raise NotFound()
        return patient
    if patient_id is None:
        raise ValidationError({"patient": ["Required: the patient this is about."]})
    return get_object_or_404(visible, pk=patient_id)


class _LoopViewSet(AuthorizedReadMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsAuthenticated, ObjectActions]
    read_patient_key = "patient"
    filter_serializer_class: type = GoalFilterSerializer

    def filters(self) -> dict:
        return validated_query(self.request, self.filter_serializer_class)

    def narrowed(self, queryset):
        if self.action != "list":
            return queryset
        wanted = self.filters()
        if "patient" in wanted:
            queryset = queryset.filter(patient_id=wanted["patient"])
        return queryset


class GoalViewSet(mixins.RetrieveModelMixin, _LoopViewSet):
    serializer_class = GoalSerializer
    read_action = "clinicians.view_goal"
    filter_serializer_class = GoalFilterSerializer

    def get_queryset(self):
        queryset = self.narrowed(goals_visible_to(self.request.user))
        if self.action == "list":
            wanted = self.filters()
            for name in ("status", "kind"):
                if name in wanted:
                    queryset = queryset.filter(**{name: wanted[name]})
        return queryset

    @extend_schema(parameters=[GoalFilterSerializer])
    def list(self, request, *args, **kwargs):
        """Goals with their progress over the last 7 days (active goals only)."""
        return super().list(request, *args, **kwargs)

    @extend_schema(request=GoalInSerializer, responses={201: GoalSerializer, 409: CONFLICT})
    def create(self, request, *args, **kwargs):
        """A clinician of the care team sets a goal (active at once); the patient proposes one
        (``proposed``). A blood-pressure goal must match the safety bounds' target."""
        body = GoalInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = dict(body.validated_data)
        patient = patient_for_write(request, values.pop("patient", None))
        goal = goals.set_goal(patient=patient, actor=request.user, **values)
        return Response(GoalSerializer(goal).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=GoalStatusSerializer, responses={200: GoalSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def status(self, request, pk=None):
        """A clinician of the care team activates a proposal, marks a goal achieved or abandons
        it; the patient may withdraw (abandon) their own proposal."""
        goal = self.get_object()
        body = GoalStatusSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        goal = goals.change_goal_status(
            goal=goal, actor=request.user, status=body.validated_data["status"]
        )
        return Response(GoalSerializer(goal).data)


class MessageViewSet(mixins.RetrieveModelMixin, _LoopViewSet):
    serializer_class = MessageSerializer
    read_action = "clinicians.view_message"
    filter_serializer_class = MessageFilterSerializer

    def get_queryset(self):
        queryset = self.narrowed(messages_visible_to(self.request.user))
        if self.action == "list" and self.filters().get("unread"):
            other_side = (
                SenderRole.CLINICIAN
                if self.request.user.role == Role.PATIENT
                else SenderRole.PATIENT
            )
            queryset = queryset.filter(sender_role=other_side, read_at__isnull=True)
        return queryset

    @extend_schema(parameters=[MessageFilterSerializer])
    def list(self, request, *args, **kwargs):
        """The thread (one per patient), newest first."""
        return super().list(request, *args, **kwargs)

    @extend_schema(request=MessageInSerializer, responses={201: MessageSerializer})
    def create(self, request, *args, **kwargs):
        """The patient writes to their care team; a clinician of the team writes to the
        patient. Delivered live on ``/ws/alerts/`` (team) or ``/ws/patient/`` (patient)."""
        body = MessageInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        patient = patient_for_write(request, body.validated_data.get("patient"))
        message = messages.send_message(
            patient=patient, actor=request.user, body=body.validated_data["body"]
        )
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=MessageSerializer)
    @action(detail=True, methods=["post"])
    def read(self, request, pk=None):
        """The read receipt, by the receiving side; again is a no-op."""
        message = messages.mark_message_read(message=self.get_object(), actor=request.user)
        return Response(MessageSerializer(message).data)


class VisitViewSet(mixins.RetrieveModelMixin, _LoopViewSet):
    serializer_class = VisitSerializer
    read_action = "clinicians.view_visit"
    # Refused before the body is read; the services ask the controller again.
    object_actions = {
        "confirm": "clinicians.manage_visit",
        "cancel": "clinicians.manage_visit",
        "complete": "clinicians.manage_visit",
    }
    filter_serializer_class = VisitFilterSerializer

    def get_queryset(self):
        queryset = self.narrowed(visits_visible_to(self.request.user))
        if self.action == "list":
            wanted, now = self.filters(), timezone.now()
            if "status" in wanted:
                queryset = queryset.filter(status=wanted["status"])
            if wanted.get("when") == "upcoming":  # open proposals count, even overdue ones
                queryset = queryset.filter(
                    Q(scheduled_at__gte=now) | Q(status=VisitStatus.PROPOSED)
                )
            elif wanted.get("when") == "past":  # an overdue proposal is still to be acted on
                queryset = queryset.filter(scheduled_at__lt=now).exclude(
                    status=VisitStatus.PROPOSED
                )
        return queryset

    @extend_schema(parameters=[VisitFilterSerializer])
    def list(self, request, *args, **kwargs):
        """Visits, by scheduled time. A patient sees the visits a clinician confirmed; the
        cadence's proposals are for the care team."""
        return super().list(request, *args, **kwargs)

    @extend_schema(request=VisitInSerializer, responses={201: VisitSerializer})
    def create(self, request, *args, **kwargs):
        """A clinician books a visit (confirmed at once)."""
        body = VisitInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        patient = patient_for_write(request, body.validated_data["patient"])
        visit = visits.schedule_visit(
            patient=patient, actor=request.user, scheduled_at=body.validated_data["scheduled_at"]
        )
        return Response(VisitSerializer(visit).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=VisitConfirmSerializer, responses={200: VisitSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def confirm(self, request, pk=None):
        """Confirm the cadence's proposal, at its time or another."""
        visit = self.get_object()
        body = VisitConfirmSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        visit = visits.confirm_visit(
            visit=visit,
            actor=request.user,
            scheduled_at=body.validated_data.get("scheduled_at"),
        )
        return Response(VisitSerializer(visit).data)

    @extend_schema(request=VisitCancelSerializer, responses={200: VisitSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a proposed or confirmed visit, with a reason."""
        visit = self.get_object()
        body = VisitCancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        visit = visits.cancel_visit(
            visit=visit, actor=request.user, reason=body.validated_data["reason"]
        )
        return Response(VisitSerializer(visit).data)

    @extend_schema(request=None, responses={200: VisitSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def complete(self, request, pk=None):
        """The visit took place (the anchor of the next routine interval)."""
        visit = self.get_object()
        visit = visits.complete_visit(visit=visit, actor=request.user)
        return Response(VisitSerializer(visit).data)

    @extend_schema(request=VisitPlanInSerializer, responses=VisitPlanSerializer)
    @action(detail=False, methods=["post"])
    def plan(self, request):
        """Re-run the visit cadence for one patient now (the daily task does it for all)."""
        body = VisitPlanInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        patient = patient_for_write(request, body.validated_data["patient"])
        plan = visits.plan_next_visit(patient.pk, actor=request.user)
        self.shows_patients([patient.pk])
        return Response(VisitPlanSerializer(plan).data)


@extend_schema(exclude=True)
class AppointmentAliasViewSet(VisitViewSet):
    """``/api/v1/appointments/``, the path visits had before they were named visits: API.md
    keeps it working. The same view and rules as ``/api/v1/visits/``; left out of the schema,
    where each operation is described once, under its visit name."""
