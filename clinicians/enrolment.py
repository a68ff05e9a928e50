"""Enrolling patients, one from the admin's form or many from a CSV file, and discharging them.

An enrolment is one transaction: the record (demographics, the EHR's MRN, time zone, contact
phone), the care team, the regimen the patient arrives with (``patients.services.start_regimen``)
and the initial safety bounds the clinician prescribed, entered by the administrator and
**pending** until a clinician of the team confirms them (``clinicians.services``): nothing is
half-enrolled, and no proposal uses bounds a clinician has not confirmed.

A CSV import enrols each row in its own transaction and reports per row (its line number, the
patient created or each problem with its column). A file without the required columns is
refused whole. Every refusal is journalled (``audit.services.record_refusal``).

The CSV format (``fixtures/enrolment.csv`` is an example, ``fixtures/README.md`` documents it):
required ``mrn, given_name, family_name, birth_date, sex, care_team, time_zone``; optional
``race, ethnicity, contact_phone, regimen, regimen_since, bounds, target_systolic,
target_diastolic, identifiers``. ``regimen``: ``drug:dose_mg`` pairs joined by ``;``, taken since
``regimen_since`` (a date; unknown, the interval between changes counts from enrolment);
``bounds``: ``drug:min-max:step`` joined by ``;``; the targets default to the guideline's
130/80 mmHg; ``identifiers``: the EHR's own identifiers of the patient, ``system|value`` joined
by ``;`` (``patients.identifiers``: one per system, a system URI, a value of 1–128 characters,
none naming another patient).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import CareTeam, User
from audit.models import Action
from audit.services import record_event, record_refusal
from clinicians.evaluation import supersede_open
from clinicians.models import Alert, AlertStatus, Visit, VisitStatus
from clinicians.services import propose_safety_bounds
from core import authz
from core.errors import DomainError
from patients import clinical_defaults as defaults
from patients.identifiers import Identifier, assign_at_enrolment, parse_identifiers
from patients.models import Ethnicity, Patient, Race, Sex
from patients.services import discharge_patient, register_patient, start_regimen

logger = logging.getLogger(__name__)
REQUIRED_COLUMNS = (
    "mrn",
    "given_name",
    "family_name",
    "birth_date",
    "sex",
    "care_team",
    "time_zone",
)
OPTIONAL_COLUMNS = (
    "race",
    "ethnicity",
    "contact_phone",
    "regimen",
    "regimen_since",
    "bounds",
    "target_systolic",
    "target_diastolic",
    "identifiers",
)
MAX_ROWS = 2000
MAX_FILE_BYTES = 2_000_000


@dataclass(frozen=True)
class ProposedBounds:
    medication: str
    min_dose_mg: Decimal
    max_dose_mg: Decimal
    max_auto_step_mg: Decimal


@dataclass
class Enrolment:
    """What the admin enters for one patient (from the form or one CSV row)."""

    given_name: str
    family_name: str
    birth_date: date
    sex: str
    care_team: CareTeam
    time_zone: str
    mrn: str = ""
    race: str = Race.UNKNOWN
    ethnicity: str = Ethnicity.UNKNOWN
    contact_phone: str = ""
    regimen: dict[str, Decimal] = field(default_factory=dict)
    regimen_since: date | None = None  # on this regimen since (unknown: from enrolment)
    bounds: list[ProposedBounds] = field(default_factory=list)
    target_systolic_mmhg: int = defaults.TARGET_SYSTOLIC_MMHG
    target_diastolic_mmhg: int = defaults.TARGET_DIASTOLIC_MMHG
    # The EHR's identifiers of the patient (an EHR's MRN under its system), beside the MRN.
    identifiers: list[Identifier] = field(default_factory=list)


class EnrolmentRefused(DomainError):
    """Several problems at once (a form or a CSV row): each with its field."""

    def __init__(self, problems: list[DomainError]):
        super().__init__(problems[0].message, field=problems[0].field)
        self.problems = problems


def enrol_patient(enrolment: Enrolment, *, actor: User) -> Patient:
    """Enrol one patient with everything they arrive with, all or nothing."""
    try:
        authz.authorize(actor, "patients.enrol")
        if not enrolment.care_team.is_active:
            raise DomainError("That care team is deactivated.", field="care_team")
        if enrolment.birth_date > timezone.localdate() or enrolment.birth_date.year < 1900:
            raise DomainError("The birth date is not plausible.", field="birth_date")
        drugs_with_bounds = [b.medication for b in enrolment.bounds]
        if len(set(drugs_with_bounds)) != len(drugs_with_bounds):
            raise DomainError("Each drug has one set of bounds.", field="bounds")
        with transaction.atomic():
            patient = register_patient(
                given_name=enrolment.given_name,
                family_name=enrolment.family_name,
                birth_year=enrolment.birth_date.year,
                sex=enrolment.sex,
                race=enrolment.race,
                ethnicity=enrolment.ethnicity,
                care_team=enrolment.care_team,
                mrn=enrolment.mrn,
                time_zone=enrolment.time_zone,
                contact_phone=enrolment.contact_phone,
                actor=actor,
            )
            patient.birth_date = enrolment.birth_date
            patient.save(update_fields=["birth_date"])
            assign_at_enrolment(patient=patient, identifiers=enrolment.identifiers, actor=actor)
            if enrolment.regimen:
                start_regimen(
                    patient=patient,
                    regimen=enrolment.regimen,
                    since=enrolment.regimen_since,
                    actor=actor,
                )
            for bounds in enrolment.bounds:
                propose_safety_bounds(
                    patient=patient,
                    medication=bounds.medication,
                    actor=actor,
                    min_dose_mg=bounds.min_dose_mg,
                    max_dose_mg=bounds.max_dose_mg,
                    max_auto_step_mg=bounds.max_auto_step_mg,
                    target_systolic_mmhg=enrolment.target_systolic_mmhg,
                    target_diastolic_mmhg=enrolment.target_diastolic_mmhg,
                )
        return patient
    except IntegrityError:
        # Another enrolment took the MRN between the check and the insert.
        error = DomainError("Another patient already has this MRN.", field="mrn")
        _journal_enrolment_refusal(actor, error)
        raise error from None
    except DomainError as error:
        _journal_enrolment_refusal(actor, error)
        raise


def _journal_enrolment_refusal(actor: User, error: DomainError) -> None:
    """The field refused and why in general terms; not the submitted value (a refused MRN or
    name would be patient data attached to no patient)."""
    record_refusal(
        actor=actor,
        attempted="enrol_patient",
        message=f"refused on {error.field or 'the request'}",
        field=error.field,
        object_type="patient",
    )


def discharge(*, patient: Patient, reason: str, actor: User) -> Patient:
    """Discharge (``patients.services.discharge_patient``) and withdraw what was waiting: no
    proposal of a discharged patient is acknowledged or decided any more."""
    try:
        with transaction.atomic():
            discharge_patient(patient=patient, reason=reason, actor=actor)
            now = timezone.now()
            supersede_open(patient, except_pk=None, why="discharged", now=now, actor=actor)
            _close_what_was_open(patient, actor, now)
        return patient
    except DomainError as error:
        record_refusal(
            actor=actor,
            attempted="discharge_patient",
            message=error.message,
            field=error.field,
            object_type="patient",
            object_id=patient.pk,
            patient_id=patient.pk,
        )
        raise


def _close_what_was_open(patient: Patient, actor: User, now) -> None:
    """A discharged patient leaves nothing waiting on the care team: open alerts are resolved
    and visits not yet held are cancelled, each journalled with the reason."""
    for alert in (
        Alert.objects.select_for_update()
        .filter(patient=patient)
        .exclude(status=AlertStatus.RESOLVED)
    ):
        old = alert.status
        alert.status, alert.resolved_at = AlertStatus.RESOLVED, now
        alert.save(update_fields=["status", "resolved_at"])
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="alert",
            object_id=alert.pk,
            patient_id=patient.pk,
            changes={"status": {"old": old, "new": AlertStatus.RESOLVED}},
            detail={"why": "discharged"},
        )
    for visit in Visit.objects.select_for_update().filter(
        patient=patient, status__in=[VisitStatus.PROPOSED, VisitStatus.CONFIRMED]
    ):
        old = visit.status
        visit.status = VisitStatus.CANCELLED
        visit.save(update_fields=["status"])
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="visit",
            object_id=visit.pk,
            patient_id=patient.pk,
            changes={"status": {"old": old, "new": VisitStatus.CANCELLED}},
            detail={"why": "discharged"},
        )


# --- parsing what an admin types or uploads ---------------------------------------------------


def parse_choice(value: str, choices, field_name: str, *, default: str | None = None) -> str:
    value = (value or "").strip().lower()
    if not value and default is not None:
        return default
    if value not in choices.values:
        raise DomainError(f"Expected one of {', '.join(choices.values)}.", field=field_name)
    return value


def parse_date(value: str, field_name: str = "birth_date") -> date:
    try:
        return date.fromisoformat((value or "").strip())
    except ValueError:
        raise DomainError("Expected a date as YYYY-MM-DD.", field=field_name) from None


def _decimal(text: str, field_name: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise DomainError(f"{text.strip()!r} is not a number of mg.", field=field_name) from None
    if not value.is_finite():
        raise DomainError(f"{text.strip()!r} is not a number of mg.", field=field_name)
    return value


def parse_regimen(text: str) -> dict[str, Decimal]:
    """``amlodipine:5;lisinopril:10`` (drug names as in the formulary; the doses are checked
    against the label when the regimen is started)."""
    regimen: dict[str, Decimal] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(";"))):
        drug, sep, dose = part.partition(":")
        drug = drug.strip().lower()
        if not sep or not drug:
            raise DomainError(f"{part!r}: write each drug as drug:dose_mg.", field="regimen")
        if drug in regimen:
            raise DomainError(f"{drug} appears twice.", field="regimen")
        regimen[drug] = _decimal(dose, "regimen")
    return regimen


def parse_bounds(text: str) -> list[ProposedBounds]:
    """``amlodipine:2.5-10:2.5`` — minimum and maximum dose and the largest step the patient may
    take without review, in mg."""
    rows: list[ProposedBounds] = []
    for part in filter(None, (p.strip() for p in (text or "").split(";"))):
        pieces = [p.strip() for p in part.split(":")]
        low, dash, high = pieces[1].partition("-") if len(pieces) == 3 else ("", "", "")
        if len(pieces) != 3 or not dash or not pieces[0]:
            raise DomainError(f"{part!r}: write bounds as drug:min-max:step.", field="bounds")
        rows.append(
            ProposedBounds(
                medication=pieces[0].lower(),
                min_dose_mg=_decimal(low, "bounds"),
                max_dose_mg=_decimal(high, "bounds"),
                max_auto_step_mg=_decimal(pieces[2], "bounds"),
            )
        )
    return rows


def parse_target(value: str, field_name: str, default: int) -> int:
    value = (value or "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise DomainError("Expected a whole number of mmHg.", field=field_name) from None


def care_team_named(name: str) -> CareTeam:
    team = CareTeam.objects.filter(name__iexact=" ".join((name or "").split())).first()
    if team is None:
        raise DomainError(f"No care team is called {name.strip()!r}.", field="care_team")
    if not team.is_active:
        raise DomainError("That care team is deactivated.", field="care_team")
    return team


def enrolment_from_row(row: dict[str, str]) -> Enrolment:
    """One CSV row as an ``Enrolment``; every problem found at once (``EnrolmentRefused``)."""
    problems: list[DomainError] = []
    values: dict[str, object] = {}

    def take(name: str, parse) -> None:
        try:
            values[name] = parse()
        except DomainError as error:
            problems.append(error)

    for required in ("given_name", "family_name", "mrn"):
        text = (row.get(required) or "").strip()
        if not text:
            problems.append(DomainError("This value is required.", field=required))
        values[required] = text
    take("birth_date", lambda: parse_date(row.get("birth_date", "")))
    take("sex", lambda: parse_choice(row.get("sex", ""), Sex, "sex"))
    take("race", lambda: parse_choice(row.get("race", ""), Race, "race", default=Race.UNKNOWN))
    take(
        "ethnicity",
        lambda: parse_choice(
            row.get("ethnicity", ""), Ethnicity, "ethnicity", default=Ethnicity.UNKNOWN
        ),
    )
    take("care_team", lambda: care_team_named(row.get("care_team", "")))
    take("regimen", lambda: parse_regimen(row.get("regimen", "")))
    take("bounds", lambda: parse_bounds(row.get("bounds", "")))
    take("identifiers", lambda: parse_identifiers(row.get("identifiers", "")))
    since_text = (row.get("regimen_since") or "").strip()
    values["regimen_since"] = None
    if since_text:
        take("regimen_since", lambda: parse_date(since_text, "regimen_since"))
    take(
        "target_systolic_mmhg",
        lambda: parse_target(
            row.get("target_systolic", ""), "target_systolic", defaults.TARGET_SYSTOLIC_MMHG
        ),
    )
    take(
        "target_diastolic_mmhg",
        lambda: parse_target(
            row.get("target_diastolic", ""), "target_diastolic", defaults.TARGET_DIASTOLIC_MMHG
        ),
    )
    time_zone = (row.get("time_zone") or "").strip()
    if not time_zone:
        problems.append(DomainError("This value is required.", field="time_zone"))
    if problems:
        raise EnrolmentRefused(problems)
    return Enrolment(
        given_name=str(values["given_name"]),
        family_name=str(values["family_name"]),
        birth_date=values["birth_date"],  # type: ignore[arg-type]
        sex=str(values["sex"]),
        race=str(values["race"]),
        ethnicity=str(values["ethnicity"]),
        care_team=values["care_team"],  # type: ignore[arg-type]
        time_zone=time_zone,
        mrn=str(values["mrn"]),
        contact_phone=(row.get("contact_phone") or "").strip(),
        regimen=values["regimen"],  # type: ignore[arg-type]
        regimen_since=values["regimen_since"],  # type: ignore[arg-type]
        bounds=values["bounds"],  # type: ignore[arg-type]
        target_systolic_mmhg=int(values["target_systolic_mmhg"]),  # type: ignore[call-overload]
        target_diastolic_mmhg=int(values["target_diastolic_mmhg"]),  # type: ignore[call-overload]
        identifiers=values["identifiers"],  # type: ignore[arg-type]
    )


@dataclass
class RowReport:
    line: int  # the file's line number (the header is line 1)
    mrn: str
    patient_id: int | None = None
    problems: list[dict[str, str | None]] = field(default_factory=list)

    @property
    def enrolled(self) -> bool:
        return self.patient_id is not None

    def as_dict(self) -> dict:
        return {
            "line": self.line,
            "mrn": self.mrn,
            "status": "enrolled" if self.enrolled else "refused",
            "patient_id": self.patient_id,
            "problems": self.problems,
        }


@dataclass
class ImportReport:
    rows: list[RowReport]
    digest: str

    @property
    def enrolled(self) -> int:
        return sum(row.enrolled for row in self.rows)

    @property
    def refused(self) -> int:
        return len(self.rows) - self.enrolled

    def as_dict(self) -> dict:
        return {
            "enrolled": self.enrolled,
            "refused": self.refused,
            "sha256": self.digest,
            "rows": [row.as_dict() for row in self.rows],
        }


def _problems_of(error: DomainError) -> list[dict[str, str | None]]:
    problems = error.problems if isinstance(error, EnrolmentRefused) else [error]
    return [{"field": p.field, "message": p.message} for p in problems]


def _read_rows(content: bytes | str) -> tuple[bytes, list[tuple[int, dict[str, str], bool]]]:
    """The file's rows as (line, cells, has_extra_cells), or ``DomainError`` on ``file``."""
    raw = content.encode() if isinstance(content, str) else content
    if len(raw) > MAX_FILE_BYTES:
        raise DomainError(f"The file is larger than {MAX_FILE_BYTES // 1000} kB.", field="file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DomainError("The file is not UTF-8 text.", field="file") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [(name or "").strip().lower() for name in (reader.fieldnames or [])]
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise DomainError(
                f"The file lacks the required column(s) {', '.join(missing)} (the header row "
                f"needs {', '.join(REQUIRED_COLUMNS)}).",
                field="file",
            )
        unknown = [n for n in header if n not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        if unknown:
            raise DomainError(f"Unknown column(s): {', '.join(unknown)}.", field="file")
        reader.fieldnames = header
        rows: list[tuple[int, dict[str, str], bool]] = []
        for row in reader:
            if len(rows) >= MAX_ROWS:
                raise DomainError(f"At most {MAX_ROWS} rows per file.", field="file")
            # The line the row ends on (a quoted cell may span lines); missing cells are empty.
            cells = {k: (v or "") for k, v in row.items() if k is not None}
            rows.append((reader.line_num, cells, None in row))
    except csv.Error as error:
        raise DomainError(
            f"The file is not valid CSV (line {reader.line_num}: {error}).", field="file"
        ) from None
    return raw, rows


def import_enrolment_csv(content: bytes | str, *, actor: User) -> ImportReport:
    """Enrol every valid row of an enrolment CSV, each in its own transaction; report per row.
    Refused whole (``DomainError`` on ``file``) when the file is not UTF-8 CSV, too large, or
    lacks a required column. An MRN repeated within the file is refused after a row enrolled it
    (and any MRN already enrolled, by the record's own check). A row that fails for a reason
    nobody foresaw is reported as such (and logged), never half-enrolled, and the rest of the
    file still runs; the import's journal event is written whatever happens."""
    try:
        authz.authorize(actor, "patients.enrol")
        raw, rows = _read_rows(content)
    except DomainError as error:
        record_refusal(
            actor=actor, attempted="import_enrolment_csv", message=error.message, field="file"
        )
        raise
    digest = hashlib.sha256(raw).hexdigest()
    reports: list[RowReport] = []
    enrolled_mrns: dict[str, int] = {}
    try:
        for line, row, has_extra_cells in rows:
            mrn = row.get("mrn", "").strip()
            report = RowReport(line=line, mrn=mrn)
            reports.append(report)
            if has_extra_cells:
                problem = DomainError("The row has more cells than the header.", field="row")
            elif mrn and mrn in enrolled_mrns:
                problem = DomainError(
                    f"MRN {mrn} was enrolled from line {enrolled_mrns[mrn]} of this file.",
                    field="mrn",
                )
            else:
                problem = _enrol_row(row, line, report, actor)
                if report.enrolled:
                    enrolled_mrns[mrn] = line
            if problem is not None:
                _journal_row(actor, line, problem)
                report.problems = _problems_of(problem)
    finally:
        with transaction.atomic():
            record_event(
                action=Action.IMPORT,
                actor=actor,
                object_type="enrolment_csv",
                patient_ids=[r.patient_id for r in reports if r.patient_id is not None],
                detail={
                    "sha256": digest,
                    "rows": len(rows),
                    "enrolled": sum(r.enrolled for r in reports),
                    "refused_lines": [r.line for r in reports if not r.enrolled],
                },
            )
    return ImportReport(rows=reports, digest=digest)


def _enrol_row(row: dict[str, str], line: int, report: RowReport, actor: User):
    """Enrol one row; the problem to report and journal, or None (enrolled, or refused by
    ``enrol_patient``, which journals its own refusal)."""
    try:
        report.patient_id = enrol_patient(enrolment_from_row(row), actor=actor).pk
    except EnrolmentRefused as refused:  # the row's values, found before enrolling
        return refused
    except DomainError as refused:
        report.problems = _problems_of(refused)
    except Exception:  # a bug must not stop the file or leave it unreported
        logger.exception("enrolment_row_failed", extra={"line": line})
        return DomainError("This row could not be enrolled (an internal error, logged).")
    return None


def _journal_row(actor: User, line: int, error: DomainError) -> None:
    """The journal names the line and the columns refused, never the values submitted (an MRN
    or a name in a refusal would be patient data attached to no patient)."""
    fields = sorted({p["field"] or "row" for p in _problems_of(error)})
    record_refusal(
        actor=actor,
        attempted="enrol_patient",
        message=f"CSV line {line} refused on {', '.join(fields)}",
        field=error.field,
        object_type="enrolment_csv",
        detail={"line": line, "fields": fields},
    )
