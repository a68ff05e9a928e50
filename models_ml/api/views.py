"""Model versions and their cards over the API (issue: model lifecycle integrity).

Staff read them: clinicians see the card a proposal's model has (``audience=clinician``);
admins — the model owners — see the owners' card, with figures computed on private data.
Patients are refused: what they need about a proposal is in ``/api/v1/me/decisions/``.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core import authz
from core.api.permissions import allowed_to
from core.errors import NotFound
from models_ml.model_card import model_card
from models_ml.models import ModelVersion

_ERRORS = OpenApiResponse(description='{"errors": [{"field", "message", "code"}]}')
# Who reads and who owns model records: ``models_ml/rules.py``.
READ_MODEL_RECORDS = allowed_to("models_ml.read_model_records")


def audience_for(user, model_version: ModelVersion) -> str:
    return "owner" if authz.can(user, "models_ml.own_models", model_version) else "clinician"


def card_of(user, version: str) -> tuple[ModelVersion, str] | None:
    """The version ``user`` may read (``models_ml.model_version``) with what its card names,
    and the card's audience for them; None when there is none (the API and the portal)."""
    model_version = (
        authz.visible(user, "models_ml.model_version")
        .select_related("dataset", "previous_production", "waived_by")
        .filter(version=version)
        .first()
    )
    return None if model_version is None else (model_version, audience_for(user, model_version))


class ModelVersionSummarySerializer(serializers.Serializer):
    version = serializers.CharField()
    kind = serializers.CharField()
    stage = serializers.CharField()
    created_at = serializers.DateTimeField()
    promoted_at = serializers.DateTimeField(allow_null=True)
    card = serializers.CharField(help_text="path of the model card")


_VERSION = ModelVersionSummarySerializer


@extend_schema(tags=["models"])
class ModelVersionListView(APIView):
    permission_classes = [permissions.IsAuthenticated, READ_MODEL_RECORDS]

    @extend_schema(
        summary="Model versions, newest first",
        responses={200: _VERSION(many=True), 403: _ERRORS},
    )
    def get(self, request):
        rows = [
            {
                "version": mv.version,
                "kind": mv.kind,
                "stage": mv.stage,
                "created_at": mv.created_at,
                "promoted_at": mv.promoted_at,
                "card": f"/api/v1/models/{mv.version}/card/",
            }
            for mv in authz.visible(request.user, "models_ml.model_version").order_by(
                "-created_at", "-id"
            )[:200]
        ]
        return Response(_VERSION(rows, many=True).data)


@extend_schema(tags=["models"])
class ModelCardView(APIView):
    permission_classes = [permissions.IsAuthenticated, READ_MODEL_RECORDS]

    @extend_schema(
        summary="The model card of a version, generated from its record",
        responses={200: OpenApiTypes.OBJECT, 403: _ERRORS, 404: _ERRORS},
    )
    def get(self, request, version: str):
        found = card_of(request.user, version)
        if found is None:
            raise NotFound(f"No model version {version!r}.", field="version")
        model_version, audience = found
        return Response(model_card(model_version, audience=audience))
