"""Registering OAuth clients: admins only, validated, journalled; removing one revokes its
tokens. The management command does the same from a shell."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from oauth2_provider.models import AccessToken, Application

from accounts.models import OAuthClient
from audit.models import AuditEvent
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db

SMART = {
    "name": "Cuff coach",
    "kind": "smart_app",
    "scopes": "openid fhirUser launch/patient patient/Observation.rs",
    "redirect_uris": ["https://coach.example/cb"],
}


def test_an_admin_registers_lists_and_removes_a_smart_app(admin_user):
    client = bearer_client(admin_user)
    created = client.post("/api/v1/oauth-clients/", SMART, format="json")
    assert created.status_code == 201, created.content
    client_id = created.json()["client_id"]
    assert "client_secret" not in created.json()  # a public app keeps no secret
    assert AuditEvent.objects.filter(
        action="create", object_type="oauth_client", object_id=client_id
    ).exists()
    listed = client.get("/api/v1/oauth-clients/").json()
    assert client_id in [row["client_id"] for row in listed]
    assert client.delete(f"/api/v1/oauth-clients/{client_id}/").status_code == 204
    assert not Application.objects.filter(client_id=client_id).exists()


def test_a_confidential_app_gets_its_secret_once(admin_user):
    client = bearer_client(admin_user)
    created = client.post("/api/v1/oauth-clients/", {**SMART, "confidential": True}, format="json")
    secret = created.json()["client_secret"]
    application = Application.objects.get(client_id=created.json()["client_id"])
    assert secret and application.client_secret != secret  # stored hashed
    listed = client.get("/api/v1/oauth-clients/").json()
    assert all("client_secret" not in row for row in listed)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scopes": "api"}, "scopes"),
        ({"scopes": "system/Observation.rs"}, "scopes"),
        ({"scopes": "patient/Observation.rs?category=vital-signs"}, "scopes"),
        ({"redirect_uris": []}, "redirect_uris"),
        ({"kind": "backend_service", "scopes": "system/Observation.rs"}, "jwks"),
        ({"redirect_uris": ["not a url"]}, "redirect_uris"),
    ],
)
def test_bad_registrations_name_the_field(admin_user, change, field):
    answer = bearer_client(admin_user).post(
        "/api/v1/oauth-clients/", {**SMART, **change}, format="json"
    )
    assert answer.status_code == 400, answer.content
    assert answer.json()["errors"][0]["field"].startswith(field)
    assert not OAuthClient.objects.exclude(kind="first_party").exists()


def test_only_admins_register_clients(clinician_a, auditor):
    for user in (clinician_a, auditor):
        answer = bearer_client(user).post("/api/v1/oauth-clients/", SMART, format="json")
        assert answer.status_code == 403


def test_removing_a_backend_service_revokes_its_tokens_and_account(team_a):
    from accounts.identity.clients import deregister_client
    from core.authz import System
    from tests.oauth_clients import backend_service

    registration, _ = backend_service([team_a])
    AccessToken.objects.create(
        user=registration.service_user,
        application=registration.application,
        token="x" * 40,
        expires="2099-01-01T00:00:00Z",
        scope="system/Observation.rs",
    )
    deregister_client(client_id=registration.application.client_id, actor=System("tests"))
    assert not AccessToken.objects.filter(user=registration.service_user).exists()
    registration.service_user.refresh_from_db()
    assert not registration.service_user.is_active


def test_register_client_command(admin_user, tmp_path, capsys):
    call_command(
        "register_client",
        "--admin",
        admin_user.username,
        "--name",
        "Cuff coach",
        "--kind",
        "smart_app",
        "--scopes",
        "openid patient/Observation.rs",
        "--redirect-uri",
        "https://coach.example/cb",
        "--json",
    )
    out = json.loads(capsys.readouterr().out)
    assert Application.objects.filter(client_id=out["client_id"]).exists()
    with pytest.raises(CommandError, match="scopes: Only first-party clients"):
        call_command(
            "register_client",
            "--admin",
            admin_user.username,
            "--name",
            "x",
            "--kind",
            "smart_app",
            "--scopes",
            "api",
            "--redirect-uri",
            "https://x.example/cb",
        )
    with pytest.raises(CommandError, match="no active administrator"):
        call_command(
            "register_client",
            "--admin",
            "nobody",
            "--name",
            "x",
            "--kind",
            "smart_app",
            "--scopes",
            "openid",
            "--redirect-uri",
            "https://x.example/cb",
        )
