"""Registering OAuth clients: an admin's act, audited. A SMART app gets a client id (and a
secret, shown once, if it is confidential); a back-end service gets its key set, the care teams
it serves and its own service account, which its tokens are issued to — so deactivating the
account, or revoking its sessions, stops the service like anybody else."""

from __future__ import annotations

import secrets

from django.contrib.auth.hashers import make_password
from django.db import transaction
from oauth2_provider.models import Application

from accounts.identity import scopes
from accounts.models import CareTeam, OAuthClient, Role, User
from audit.models import Action
from audit.services import record_event
from core import authz
from core.authz import System
from core.errors import DomainError, NotFound


def _check_scopes(kind: str, allowed_scopes: str) -> None:
    listed = allowed_scopes.split()
    if not listed:
        raise DomainError("List at least one scope.", field="scopes")
    for scope in listed:
        if not scopes.is_known(scope):
            raise DomainError(f"{scope} is not a scope this server knows.", field="scopes")
    if scopes.API_SCOPE in listed and kind != OAuthClient.Kind.FIRST_PARTY:
        raise DomainError("Only first-party clients may hold the api scope.", field="scopes")
    contexts = {s.context for s in map(scopes.parse_smart, listed) if s is not None}
    if kind == OAuthClient.Kind.BACKEND_SERVICE and contexts - {"system"}:
        raise DomainError("A back-end service holds system/ scopes only.", field="scopes")
    if kind != OAuthClient.Kind.BACKEND_SERVICE and "system" in contexts:
        raise DomainError("system/ scopes are for back-end services.", field="scopes")


def register_client(
    *,
    name: str,
    kind: str,
    allowed_scopes: str,
    actor: User | System,
    redirect_uris: str = "",
    launch_uri: str = "",
    confidential: bool = False,
    jwks: dict | None = None,
    care_teams: list[CareTeam] | None = None,
) -> tuple[OAuthClient, str | None]:
    """The registration and, for a confidential SMART app, its secret (shown this once)."""
    authz.authorize(actor, "accounts.manage_oauth_clients")
    if kind not in OAuthClient.Kind.values:
        raise DomainError(f"Unknown client kind {kind!r}.", field="kind")
    _check_scopes(kind, allowed_scopes)
    is_service = kind == OAuthClient.Kind.BACKEND_SERVICE
    if is_service and not (jwks and jwks.get("keys")):
        raise DomainError("A back-end service needs its public key set (JWKS).", field="jwks")
    if not is_service and not redirect_uris.split():
        raise DomainError("An app needs at least one redirect URI.", field="redirect_uris")
    secret = secrets.token_urlsafe(32) if confidential and not is_service else None
    with transaction.atomic():
        application = Application(
            name=name,
            client_type=Application.CLIENT_CONFIDENTIAL
            if (is_service or confidential)
            else Application.CLIENT_PUBLIC,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS
            if is_service
            else Application.GRANT_AUTHORIZATION_CODE,
            redirect_uris=redirect_uris,
            algorithm=Application.RS256_ALGORITHM,
            # A service authenticates with its key only: its secret is random and never shown.
            client_secret=secret or secrets.token_urlsafe(48),
        )
        application.full_clean(exclude=["user"])
        application.save()
        service_user = None
        if is_service:
            service_user = User.objects.create(
                username=f"service-{application.client_id}"[:150],
                role=Role.SERVICE,
                password=make_password(None),
            )
        registration = OAuthClient.objects.create(
            application=application,
            kind=kind,
            allowed_scopes=" ".join(allowed_scopes.split()),
            launch_uri=launch_uri,
            jwks=jwks or {},
            service_user=service_user,
            registered_by=actor if isinstance(actor, User) else None,
        )
        if care_teams:
            registration.care_teams.set(care_teams)
        record_event(
            action=Action.CREATE,
            actor=actor,
            object_type="oauth_client",
            object_id=application.client_id,
            detail={
                "kind": kind,
                "scopes": registration.allowed_scopes,
                "redirect_uris": redirect_uris,
                "care_teams": [team.pk for team in care_teams or []],
                "confidential": application.client_type == Application.CLIENT_CONFIDENTIAL,
            },
        )
    return registration, secret


def registered_clients(actor: User | System) -> list[OAuthClient]:
    authz.authorize(actor, "accounts.manage_oauth_clients")
    return list(
        OAuthClient.objects.select_related("application", "registered_by")
        .prefetch_related("care_teams")
        .order_by("registered_at", "pk")
    )


def registered_client(client_id: str, actor: User | System) -> OAuthClient:
    authz.authorize(actor, "accounts.manage_oauth_clients")
    registration = (
        OAuthClient.objects.select_related("application", "registered_by")
        .filter(application__client_id=client_id)
        .first()
    )
    if registration is None:
        raise NotFound("No such client.")
    return registration


def deregister_client(*, client_id: str, actor: User | System) -> None:
    """Remove a client: every token it holds is revoked with it (the library's rows cascade) and
    a back-end service's account is deactivated. The first-party app cannot be removed here."""
    authz.authorize(actor, "accounts.manage_oauth_clients")
    with transaction.atomic():
        registration = (
            OAuthClient.objects.select_for_update(of=("self",))
            .select_related("application", "service_user")
            .filter(application__client_id=client_id)
            .first()
        )
        if registration is None:
            raise NotFound("No such client.")
        if registration.kind == OAuthClient.Kind.FIRST_PARTY:
            raise DomainError("The first-party app cannot be removed.", field="client_id")
        service_user = registration.service_user
        registration.application.delete()
        if service_user is not None:
            service_user.is_active = False
            service_user.save(update_fields=["is_active"])
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="oauth_client",
            object_id=client_id,
            changes={"registered": {"old": True, "new": False}},
        )
