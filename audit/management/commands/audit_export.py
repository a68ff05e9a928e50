"""``manage.py audit_export --out DIR [--since DATE] [--until DATE] [--patient ID]
[--format jsonl,csv,fhir]`` — a signed export for compliance (see audit/exports.py).

Bad input prints one line and exits non-zero, writing nothing. The export is itself journalled
(component ``manage.py audit_export``, with the operating-system user in the detail).
"""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.exports import ExportError, build_filters, check_destination, write_export


class Command(BaseCommand):
    help = "Export the audit journal (JSON Lines, CSV, FHIR) with a signed manifest."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, metavar="DIR", help="absent or empty directory")
        parser.add_argument("--since", help="YYYY-MM-DD or ISO datetime (inclusive)")
        parser.add_argument(
            "--until", help="YYYY-MM-DD (whole day included) or ISO datetime (exclusive)"
        )
        parser.add_argument("--patient", help="only events concerning this patient id")
        parser.add_argument(
            "--format", default="jsonl", help="comma list of jsonl,csv,fhir (jsonl always)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            check_destination(options["out"])
            filters = build_filters(
                since=options["since"],
                until=options["until"],
                patient=options["patient"],
                formats=options["format"],
            )
            manifest = write_export(
                options["out"], filters, component=f"manage.py audit_export ({_os_user()})"
            )
        except ExportError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"exported {manifest['counts']['events']} events to {options['out']} "
            f"(journal head {manifest['chain_head']['sequence']}, "
            f"key {manifest['public_key_fingerprint']})"
        )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown user"
