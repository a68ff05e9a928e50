"""``manage.py register_client``: register an OAuth client (a SMART app or an EHR back-end
service) in an administrator's name; the registration is journalled. Prints the client id
(and, for a confidential app, its secret — shown this once)."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.identity.clients import register_client
from accounts.management.arguments import active_admin, active_care_teams, key_set
from accounts.models import OAuthClient
from core.errors import DomainError


class Command(BaseCommand):
    help = "Register an OAuth client: a SMART app or an EHR back-end service."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--admin", required=True, help="username of the administrator registering it"
        )
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--kind",
            required=True,
            choices=[OAuthClient.Kind.SMART_APP, OAuthClient.Kind.BACKEND_SERVICE],
        )
        parser.add_argument(
            "--scopes",
            required=True,
            help='space-separated, e.g. "openid fhirUser launch/patient patient/*.rs"',
        )
        parser.add_argument(
            "--redirect-uri", action="append", default=[], help="repeat for several"
        )
        parser.add_argument(
            "--launch-uri", default="", help="where an EHR launch from the portal opens the app"
        )
        parser.add_argument(
            "--confidential", action="store_true", help="the app keeps a secret (a server-side app)"
        )
        parser.add_argument(
            "--jwks", type=Path, help="a back-end service's public key set (JSON file)"
        )
        parser.add_argument(
            "--care-team",
            action="append",
            default=[],
            help="care team a back-end service serves (repeat)",
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args, **options) -> None:
        admin = active_admin(options["admin"])
        jwks = key_set(options["jwks"]) if options["jwks"] is not None else None
        teams = active_care_teams(options["care_team"])
        try:
            registration, secret = register_client(
                name=options["name"],
                kind=options["kind"],
                allowed_scopes=options["scopes"],
                redirect_uris=" ".join(options["redirect_uri"]),
                launch_uri=options["launch_uri"],
                confidential=options["confidential"],
                jwks=jwks,
                care_teams=teams,
                actor=admin,
            )
        except DomainError as error:
            raise CommandError(f"{getattr(error, 'field', '') or 'client'}: {error}") from None
        result = {"client_id": registration.application.client_id, "kind": registration.kind}
        if secret:
            result["client_secret"] = secret
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(f"client_id: {result['client_id']}")
        if secret:
            self.stdout.write(f"client_secret: {secret}  (shown once: store it now)")
