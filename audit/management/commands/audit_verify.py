"""``manage.py audit_verify [--full] | --export DIR [--public-key FILE] [--extends OLDER]``.

Exit 0 and one summary line when intact; otherwise exit 1 and one line naming the first bad
entry's sequence number (stderr).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.signing import SigningKeyError, load_public_key


class Command(BaseCommand):
    help = "Verify the audit journal (or an export, offline) and name the first bad entry."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--full", action="store_true", help="recompute every entry, ignoring checkpoints"
        )
        parser.add_argument("--export", metavar="DIR", help="verify an export directory offline")
        parser.add_argument(
            "--public-key", metavar="FILE", help="PEM of the expected key (with --export)"
        )
        parser.add_argument(
            "--extends", metavar="OLDER_DIR", help="with --export: prove DIR extends OLDER_DIR"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["export"]:
            self._verify_export(options)
            return
        if options["public_key"] or options["extends"]:
            raise CommandError("--public-key and --extends only apply with --export DIR")
        from audit.verification import verify_journal

        try:
            result = verify_journal(full=options["full"])
        except SigningKeyError as exc:
            raise CommandError(str(exc)) from exc
        if not result.ok:
            raise CommandError(result.line())
        self.stdout.write(result.line())

    def _verify_export(self, options: dict[str, Any]) -> None:
        from audit.offline import ExportInvalid, verify_export, verify_extension

        try:
            key = None
            if options["public_key"]:
                key = load_public_key(Path(options["public_key"]).read_bytes())
            if options["extends"]:
                self.stdout.write(
                    verify_extension(options["extends"], options["export"], public_key=key)
                )
            else:
                self.stdout.write(str(verify_export(options["export"], public_key=key)))
        except (ExportInvalid, SigningKeyError, OSError) as exc:
            raise CommandError(f"export invalid: {exc}") from exc
