"""The first-party client: the ClinAIOps phone app (authorization code + PKCE, RFC 8252) and the
direct token endpoint's tokens. Public (a native app keeps no secret), consent skipped (it is
ours), redirect to the app's own scheme or the loopback."""

from django.db import migrations

# The values live once, beside the code that issues the first-party tokens.
from accounts.identity.tokens import (
    FIRST_PARTY_CLIENT_ID as CLIENT_ID,
)
from accounts.identity.tokens import (
    FIRST_PARTY_REDIRECT_URIS,
)
from accounts.identity.tokens import (
    FIRST_PARTY_SCOPES as SCOPES,
)


def create_client(apps, schema_editor):
    Application = apps.get_model("oauth2_provider", "Application")
    OAuthClient = apps.get_model("accounts", "OAuthClient")
    application, _ = Application.objects.get_or_create(
        client_id=CLIENT_ID,
        defaults={
            "name": "ClinAIOps app",
            "client_type": "public",
            "authorization_grant_type": "authorization-code",
            "redirect_uris": FIRST_PARTY_REDIRECT_URIS,
            "skip_authorization": True,
            "algorithm": "RS256",
            "client_secret": "",
        },
    )
    OAuthClient.objects.get_or_create(
        application=application, defaults={"kind": "first_party", "allowed_scopes": SCOPES}
    )


def remove_client(apps, schema_editor):
    apps.get_model("oauth2_provider", "Application").objects.filter(client_id=CLIENT_ID).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_oauth_clients_and_token_context"),
        ("oauth2_provider", "0022_refreshtoken_token_family_index"),
    ]

    operations = [migrations.RunPython(create_client, remove_client)]
