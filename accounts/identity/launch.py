"""EHR launch: a clinician opens a registered SMART app on one of their patients. The app gets a
single-use launch code (5 minutes) with the FHIR base as ``iss``; its authorization request
names the code, and its token carries the patient (SMART App Launch 2, EHR launch)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import LaunchContext, OAuthClient, User
from core import authz
from core.errors import DomainError, NotFound

LAUNCH_LIFETIME = timedelta(minutes=5)


@dataclass(frozen=True)
class Launch:
    code: str
    url: str  # the app's launch URI with iss and launch


def launchable_apps() -> list[OAuthClient]:
    return list(
        OAuthClient.objects.select_related("application")
        .filter(kind=OAuthClient.Kind.SMART_APP)
        .exclude(launch_uri="")
        .order_by("application__name")
    )


def create_launch(*, actor: User, client_id: str, patient_id: int, fhir_base: str) -> Launch:
    authz.authorize(actor, "accounts.launch_smart_app")
    client = (
        OAuthClient.objects.select_related("application")
        .filter(application__client_id=client_id, kind=OAuthClient.Kind.SMART_APP)
        .exclude(launch_uri="")
        .first()
    )
    if client is None:
        raise DomainError("No SMART app with a launch URI by that id.", field="client_id")
    # The patient must be one the clinician reaches (a visibility named by patients/rules.py).
    if not authz.visible(actor, "patients.patient").filter(pk=patient_id).exists():
        raise NotFound("Not found.")
    with transaction.atomic():
        launch = LaunchContext.objects.create(
            code=secrets.token_urlsafe(24),
            client=client,
            user=actor,
            patient_id=patient_id,
            expires_at=timezone.now() + LAUNCH_LIFETIME,
        )
    separator = "&" if "?" in client.launch_uri else "?"
    return Launch(
        code=launch.code,
        url=f"{client.launch_uri}{separator}iss={fhir_base}&launch={launch.code}",
    )
