"""``manage.py register_cds_client``: register an EHR as a CDS Hooks client (its issuer, its public
key set, the care teams it serves) and the practitioners it may name, in an administrator's name;
each registration is journalled (``clinaiops.cds_hooks.registration``). Bad input: a non-zero exit
and one readable line, nothing registered."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.management.arguments import active_admin, active_care_teams, key_set
from accounts.models import User
from clinaiops.cds_hooks.registration import link_practitioner, register_cds_client
from core.errors import DomainError


class Command(BaseCommand):
    help = "Register an EHR as a CDS Hooks client, and the practitioners it may name."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--admin", required=True, help="username of the administrator registering it"
        )
        parser.add_argument("--name", required=True, help="the EHR's name, as staff know it")
        parser.add_argument("--issuer", required=True, help="the iss of the EHR's JWTs")
        parser.add_argument(
            "--jwks", type=Path, required=True, help="the EHR's public key set (JSON file)"
        )
        parser.add_argument(
            "--care-team", action="append", default=[], help="care team the EHR serves (repeat)"
        )
        parser.add_argument(
            "--origin", action="append", default=[], help="browser origin allowed by CORS (repeat)"
        )
        parser.add_argument("--mrn-system", default="", help="the EHR's MRN identifier system")
        parser.add_argument(
            "--patient-id-is-mrn",
            action="store_true",
            help="the EHR's context.patientId is the patient's MRN",
        )
        parser.add_argument("--fhir-server", default="", help="the EHR's FHIR base (for fetches)")
        parser.add_argument(
            "--smart-client-id", default="", help="our client_id at the EHR (SMART EHR launch)"
        )
        parser.add_argument(
            "--smart-client-secret-file",
            type=Path,
            help="file holding our client secret at the EHR (confidential client; else public)",
        )
        parser.add_argument("--smart-scope", default="", help="the scope asked at launch")
        parser.add_argument(
            "--smart-authorize-url", default="", help="else from its smart-configuration"
        )
        parser.add_argument(
            "--smart-token-url", default="", help="else from its smart-configuration"
        )
        parser.add_argument(
            "--smart-jwks-url", default="", help="its id_token keys, else from smart-configuration"
        )
        parser.add_argument(
            "--practitioner",
            action="append",
            default=[],
            metavar="REFERENCE=USERNAME",
            help="an EHR practitioner and the clinician it is, e.g. Practitioner/42=clinician1",
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args, **options) -> None:
        admin = active_admin(options["admin"])
        jwks = key_set(options["jwks"])
        teams = active_care_teams(options["care_team"])
        secret = ""
        if options["smart_client_secret_file"] is not None:
            try:
                secret = options["smart_client_secret_file"].read_text().strip()
            except OSError as error:
                raise CommandError(f"--smart-client-secret-file: {error.strerror}") from None
        practitioners = []
        for pair in options["practitioner"]:
            reference, _, username = pair.partition("=")
            clinician = User.objects.filter(username=username.strip(), is_active=True).first()
            if not reference or clinician is None:
                raise CommandError(
                    f"--practitioner {pair}: expected Practitioner/<id>=<username of an active "
                    "clinician>"
                )
            practitioners.append((reference.strip(), clinician))
        try:
            with transaction.atomic():  # all or nothing: no EHR without the people it names
                client = register_cds_client(
                    name=options["name"],
                    issuer=options["issuer"],
                    jwks=jwks,
                    care_teams=teams,
                    actor=admin,
                    allowed_origins=" ".join(options["origin"]),
                    mrn_system=options["mrn_system"],
                    patient_id_is_mrn=options["patient_id_is_mrn"],
                    fhir_server=options["fhir_server"],
                    smart_client_id=options["smart_client_id"],
                    smart_client_secret=secret,
                    smart_scope=options["smart_scope"],
                    smart_authorize_url=options["smart_authorize_url"],
                    smart_token_url=options["smart_token_url"],
                    smart_jwks_url=options["smart_jwks_url"],
                )
                for reference, clinician in practitioners:
                    link_practitioner(
                        client=client, reference=reference, user=clinician, actor=admin
                    )
        except DomainError as error:
            where = f"--{error.field.replace('_', '-')}: " if error.field else ""
            raise CommandError(f"{where}{error.message}") from None
        team_names = [team.name for team in teams]
        references = [reference for reference, _ in practitioners]
        if options["json"]:
            result = {
                "id": client.pk,
                "issuer": client.issuer,
                "care_teams": team_names,
                "practitioners": references,
            }
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(
                f"Registered {client.name} (issuer {client.issuer}) for {', '.join(team_names)}; "
                f"practitioners: {', '.join(references) or 'none'}."
            )
