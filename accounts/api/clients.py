"""``/api/v1/oauth-clients/``: administrators register, list and remove OAuth clients (SMART apps,
EHR back-end services). The admin workspace builds on these; ``manage.py register_client`` does
the same from a shell. Every registration and removal is journalled by the service."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.identity import clients
from accounts.models import CareTeam, OAuthClient
from core.api.serializers import StrictInputSerializer


class ClientInput(StrictInputSerializer):
    name = serializers.CharField(max_length=255)
    kind = serializers.ChoiceField(
        choices=[OAuthClient.Kind.SMART_APP, OAuthClient.Kind.BACKEND_SERVICE]
    )
    scopes = serializers.CharField(max_length=2000)
    redirect_uris = serializers.ListField(
        child=serializers.URLField(max_length=500), required=False, default=list, max_length=20
    )
    launch_uri = serializers.URLField(max_length=500, required=False, default="")
    confidential = serializers.BooleanField(required=False, default=False)
    jwks = serializers.DictField(required=False, allow_null=True, default=None)
    care_teams = serializers.PrimaryKeyRelatedField(
        queryset=CareTeam.objects.all(), many=True, required=False, default=list
    )


class ClientOutput(serializers.Serializer):
    client_id = serializers.CharField(source="application.client_id")
    name = serializers.CharField(source="application.name")
    kind = serializers.CharField()
    scopes = serializers.CharField(source="allowed_scopes")
    redirect_uris = serializers.SerializerMethodField()
    launch_uri = serializers.CharField()
    confidential = serializers.SerializerMethodField()
    care_teams = serializers.SerializerMethodField()
    registered_at = serializers.DateTimeField()
    registered_by = serializers.IntegerField(source="registered_by_id", allow_null=True)

    def get_redirect_uris(self, registration) -> list[str]:
        return registration.application.redirect_uris.split()

    def get_confidential(self, registration) -> bool:
        return registration.application.client_type == "confidential"

    def get_care_teams(self, registration) -> list[int]:
        return [team.pk for team in registration.care_teams.all()]


class ClientListView(APIView):
    @extend_schema(tags=["oauth clients"], responses={200: ClientOutput(many=True)})
    def get(self, request):
        return Response(ClientOutput(clients.registered_clients(request.user), many=True).data)

    @extend_schema(tags=["oauth clients"], request=ClientInput, responses={201: ClientOutput})
    def post(self, request):
        data = ClientInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        registration, secret = clients.register_client(
            name=fields["name"],
            kind=fields["kind"],
            allowed_scopes=fields["scopes"],
            redirect_uris=" ".join(fields["redirect_uris"]),
            launch_uri=fields["launch_uri"],
            confidential=fields["confidential"],
            jwks=fields["jwks"],
            care_teams=fields["care_teams"],
            actor=request.user,
        )
        body = dict(ClientOutput(registration).data)
        if secret:
            body["client_secret"] = secret  # shown this once
        return Response(body, status=status.HTTP_201_CREATED)


class ClientDetailView(APIView):
    @extend_schema(tags=["oauth clients"], responses={200: ClientOutput})
    def get(self, request, client_id: str):
        return Response(ClientOutput(clients.registered_client(client_id, request.user)).data)

    @extend_schema(tags=["oauth clients"], responses={204: None})
    def delete(self, request, client_id: str):
        clients.deregister_client(client_id=client_id, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
