"""Caregivers over the API (``patients.caregivers``; docs/caregivers.md).

The patient: ``GET|POST /api/v1/me/caregivers/`` (who may read their record; grant access, the
answer carries the one-time link to hand over, shown once), ``GET|PATCH
/api/v1/me/caregivers/{id}/`` (change what they see), ``POST /api/v1/me/caregivers/{id}/revoke/``
and ``GET /api/v1/me/caregivers/access-log/`` (who looked, what, when). API.md's
``/api/v1/caregiver-grants/`` names the same views.

The caregiver: ``GET /api/v1/me/following/`` — the patients they follow, with what each grant
lets them read; the reads themselves go through the patients' own endpoints
(``/api/v1/patients/{id}/readings/``, ``/api/v1/alerts/?patient=``, …), whose rules narrow a
caregiver to the granted scopes.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core import authz
from core.api.schema import CONFLICT
from core.api.serializers import StrictInputSerializer
from core.errors import NotFound
from patients import caregivers
from patients.models import CAREGIVER_SCOPES, CaregiverGrant, Patient

SCOPES_HELP = "any of: " + ", ".join(CAREGIVER_SCOPES) + " (messages only when named)"


class GrantInSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200, help_text="the person's name, as you know them")
    email = serializers.CharField(max_length=254, help_text="the person's email address")
    scopes = serializers.ListField(
        child=serializers.CharField(max_length=32), help_text=SCOPES_HELP
    )
    live_alerts = serializers.BooleanField(
        required=False,
        default=False,
        help_text="push your urgent alerts to them live (needs alerts)",
    )
    starts_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    ends_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class GrantChangeSerializer(StrictInputSerializer):
    scopes = serializers.ListField(
        child=serializers.CharField(max_length=32), required=False, help_text=SCOPES_HELP
    )
    live_alerts = serializers.BooleanField(required=False)
    starts_at = serializers.DateTimeField(required=False, allow_null=True)
    ends_at = serializers.DateTimeField(required=False, allow_null=True)


class RevokeInSerializer(StrictInputSerializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")


class GrantSerializer(serializers.ModelSerializer):
    scopes = serializers.ListField(child=serializers.CharField(), read_only=True)
    status = serializers.SerializerMethodField(
        help_text="pending | scheduled | active | expired | revoked"
    )

    class Meta:
        model = CaregiverGrant
        fields = [
            "id",
            "name",
            "email",
            "scopes",
            "live_alerts",
            "starts_at",
            "ends_at",
            "created_at",
            "accepted_at",
            "revoked_at",
            "revoked_reason",
            "status",
        ]
        read_only_fields = fields

    def get_status(self, grant: CaregiverGrant) -> str:
        return caregivers.status_of(grant)


class InvitationSerializer(GrantSerializer):
    activation_link = serializers.CharField(
        help_text="the one-time link to hand to the person (shown once, never again)"
    )
    link_expires_at = serializers.DateTimeField()

    class Meta(GrantSerializer.Meta):
        fields = [*GrantSerializer.Meta.fields, "activation_link", "link_expires_at"]
        read_only_fields = fields


class AccessLogEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    caregiver = serializers.CharField(help_text="the name you gave them")
    caregiver_id = serializers.IntegerField(allow_null=True)
    grant = serializers.IntegerField(allow_null=True)
    what = serializers.CharField(help_text="what was read: reading, alert, goal, …")
    view = serializers.CharField(help_text="the screen or endpoint that showed it")


class FollowedPatientSerializer(serializers.Serializer):
    patient = serializers.IntegerField(source="patient_id")
    patient_name = serializers.CharField(source="patient.display_name")
    grant = serializers.IntegerField(source="pk")
    scopes = serializers.ListField(child=serializers.CharField())
    live_alerts = serializers.BooleanField()
    ends_at = serializers.DateTimeField(allow_null=True)


def _own_patient(request) -> Patient:
    """The signed-in patient's record (403 for anyone without one: the rule's message)."""
    patient = Patient.objects.filter(user_id=request.user.pk).first()
    authz.authorize_read(
        request.user, "patients.view_caregivers", patient, detail={"view": "me.caregivers"}
    )
    assert patient is not None  # the rule refuses a caller without a record
    return patient


def _own_grant(request, pk: int) -> CaregiverGrant:
    patient = _own_patient(request)
    grant = caregivers.grants_of_patient(patient).filter(pk=pk).first()
    if grant is None:
        raise NotFound("Not found.")
    return grant


class CaregiverListView(APIView):
    @extend_schema(responses=GrantSerializer(many=True), tags=["caregivers"])
    def get(self, request):
        """Everyone you granted access to, newest first (revoked and expired ones too)."""
        patient = _own_patient(request)
        return Response(GrantSerializer(caregivers.grants_of_patient(patient), many=True).data)

    @extend_schema(
        request=GrantInSerializer, responses={201: InvitationSerializer}, tags=["caregivers"]
    )
    def post(self, request):
        """Grant a family member or carer read access. Hand them the one-time link yourself: it
        is shown once. If they already follow someone with this address, they confirm with
        their own password."""
        body = GrantInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        patient = Patient.objects.filter(user_id=request.user.pk).first()
        if patient is None:
            authz.authorize(request.user, "patients.grant_caregiver_access", None)
        assert patient is not None  # the rule refuses a caller without a record
        invitation = caregivers.grant_caregiver_access(
            patient=patient, actor=request.user, **body.validated_data
        )
        data = {
            **GrantSerializer(invitation.grant).data,
            "activation_link": request.build_absolute_uri(invitation.path),
            "link_expires_at": invitation.expires_at,
        }
        return Response(data, status=status.HTTP_201_CREATED)


class CaregiverDetailView(APIView):
    @extend_schema(responses=GrantSerializer, tags=["caregivers"])
    def get(self, request, pk: int):
        return Response(GrantSerializer(_own_grant(request, pk)).data)

    @extend_schema(
        request=GrantChangeSerializer,
        responses={200: GrantSerializer, 409: CONFLICT},
        tags=["caregivers"],
    )
    def patch(self, request, pk: int):
        """Change what this person may read (only the fields sent)."""
        grant = _own_grant(request, pk)
        body = GrantChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        grant = caregivers.change_caregiver_grant(
            grant=grant, actor=request.user, **body.validated_data
        )
        return Response(GrantSerializer(grant).data)


class CaregiverRevokeView(APIView):
    @extend_schema(
        request=RevokeInSerializer,
        responses={200: GrantSerializer, 409: CONFLICT},
        tags=["caregivers"],
    )
    def post(self, request, pk: int):
        """End this person's access now; their open page closes at once."""
        grant = _own_grant(request, pk)
        body = RevokeInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        grant = caregivers.revoke_caregiver_grant(
            grant=grant, actor=request.user, reason=body.validated_data["reason"]
        )
        return Response(GrantSerializer(grant).data)


class AccessLogView(APIView):
    @extend_schema(responses=AccessLogEntrySerializer(many=True), tags=["caregivers"])
    def get(self, request):
        """Who looked at your record through the access you gave, what and when (newest first,
        the last 200), from the audit journal."""
        patient = _own_patient(request)
        return Response(AccessLogEntrySerializer(caregivers.access_log(patient), many=True).data)


class FollowingView(APIView):
    @extend_schema(responses=FollowedPatientSerializer(many=True), tags=["caregivers"])
    def get(self, request):
        """The caregiver's patients: whose access is in force now, and what it covers."""
        authz.authorize(request.user, "patients.follow_granted_patients")
        grants = caregivers.grants_in_force_for(request.user)
        authz.authorize_read(
            request.user,
            "patients.view_patient",
            shown=[grant.patient_id for grant in grants],
            detail={"view": "me.following"},
        )
        return Response(FollowedPatientSerializer(grants, many=True).data)


# API.md's ``/api/v1/caregiver-grants/`` paths: the same views, described once (under
# ``/api/v1/me/caregivers/``) in the schema.


@extend_schema(exclude=True)
class CaregiverGrantsAliasListView(CaregiverListView):
    pass


@extend_schema(exclude=True)
class CaregiverGrantsAliasRevokeView(CaregiverRevokeView):
    pass
