"""``manage.py import_home_monitor --patient ID --file PATH [--device-id X]``.

Imports a home blood-pressure monitor's export (the OMRON connect app's CSV report:
``patients.home_monitor``) into one patient's record, as the system
(``patients.ingestion.READINGS_IMPORT``), read in the patient's time zone.

Prints the counts, then one line per row or reading not stored; exit 0 once the file was
imported, even when some rows were not (they are listed). Exit 1 and one line on standard error
when nothing could be attempted: an unknown patient, a file that cannot be read or is not UTF-8
text, a file in another format, a discharged patient, a device id registered to another patient.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import DomainError
from patients.home_monitor import MAX_FILE_CHARACTERS, import_home_monitor
from patients.ingestion import READINGS_IMPORT
from patients.models import Patient


class Command(BaseCommand):
    help = "Import a home blood-pressure monitor's export (OMRON connect CSV) for one patient."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patient", type=int, required=True, metavar="ID", help="patient id")
        parser.add_argument("--file", required=True, metavar="PATH", help="the exported CSV")
        parser.add_argument(
            "--device-id",
            metavar="X",
            help="the cuff's id (default: one per patient, omron-connect-patient-<ID>)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        patient = Patient.objects.filter(pk=options["patient"]).first()
        if patient is None:
            raise CommandError(f"No patient has id {options['patient']}.")
        text = _read_text(Path(options["file"]))
        try:
            result = import_home_monitor(
                patient=patient, text=text, actor=READINGS_IMPORT, device_id=options["device_id"]
            )
        except DomainError as error:
            raise CommandError(error.message) from None
        self.stdout.write(
            f"{result.rows} rows read: {result.accepted} readings stored, "
            f"{result.duplicates} already stored, {len(result.problems)} not stored "
            f"(patient {patient.pk}, time zone {result.time_zone}, device {result.device_id})."
        )
        if result.not_imported:
            self.stdout.write(
                f"Columns with values that readings do not hold, not imported: "
                f"{', '.join(result.not_imported)}."
            )
        for problem in result.problems:
            self.stdout.write(str(problem))


def _read_text(path: Path) -> str:
    limit = MAX_FILE_CHARACTERS * 4  # bytes: at most 4 per character in UTF-8
    try:
        with path.open("rb") as file:
            raw = file.read(limit + 1)
    except OSError as error:
        raise CommandError(f"Cannot read {path}: {error.strerror or error}.") from None
    if len(raw) > limit:
        raise CommandError(f"{path} is too large for one import; export a shorter period.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text; export the CSV again.") from None
