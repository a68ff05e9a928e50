"""The patient record. Demographic codes follow US Core (OMB race and ethnicity categories,
FHIR administrative gender), each with an explicit ``unknown``."""

from __future__ import annotations

import functools
import operator

from django.conf import settings
from django.db import models

from accounts.models import CareTeam
from patients.labs import LAB_CODES


class Sex(models.TextChoices):
    # FHIR AdministrativeGender (http://hl7.org/fhir/administrative-gender)
    FEMALE = "female", "Female"
    MALE = "male", "Male"
    OTHER = "other", "Other"
    UNKNOWN = "unknown", "Unknown"


class Race(models.TextChoices):
    # OMB race categories as used by US Core (urn:oid:2.16.840.1.113883.6.238), plus unknown.
    AMERICAN_INDIAN_OR_ALASKA_NATIVE = (
        "american_indian_or_alaska_native",
        "American Indian or Alaska Native",
    )
    ASIAN = "asian", "Asian"
    BLACK_OR_AFRICAN_AMERICAN = "black_or_african_american", "Black or African American"
    NATIVE_HAWAIIAN_OR_OTHER_PACIFIC_ISLANDER = (
        "native_hawaiian_or_other_pacific_islander",
        "Native Hawaiian or Other Pacific Islander",
    )
    WHITE = "white", "White"
    UNKNOWN = "unknown", "Unknown"


class Ethnicity(models.TextChoices):
    HISPANIC_OR_LATINO = "hispanic_or_latino", "Hispanic or Latino"
    NOT_HISPANIC_OR_LATINO = "not_hispanic_or_latino", "Not Hispanic or Latino"
    UNKNOWN = "unknown", "Unknown"


# CDC race & ethnicity code system codes, for FHIR/US Core output.
OMB_CODES: dict[str, str] = {
    Race.AMERICAN_INDIAN_OR_ALASKA_NATIVE: "1002-5",
    Race.ASIAN: "2028-9",
    Race.BLACK_OR_AFRICAN_AMERICAN: "2054-5",
    Race.NATIVE_HAWAIIAN_OR_OTHER_PACIFIC_ISLANDER: "2076-8",
    Race.WHITE: "2106-3",
    Ethnicity.HISPANIC_OR_LATINO: "2135-2",
    Ethnicity.NOT_HISPANIC_OR_LATINO: "2186-5",
}


class Patient(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="patient",
        null=True,
        blank=True,
        help_text="The patient's own login for the mobile app (absent for EHR-only records).",
    )
    given_name = models.CharField(max_length=100)
    family_name = models.CharField(max_length=100)
    birth_year = models.PositiveSmallIntegerField()
    # The full date when the clinic enrols the patient (matching, the portal's lists); records
    # made from the simulator or an EHR-only import may carry the year alone.
    birth_date = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=16, choices=Sex.choices, default=Sex.UNKNOWN)
    race = models.CharField(max_length=48, choices=Race.choices, default=Race.UNKNOWN)
    ethnicity = models.CharField(
        max_length=32, choices=Ethnicity.choices, default=Ethnicity.UNKNOWN
    )
    care_teams: models.ManyToManyField[CareTeam, CareTeamAssignment] = models.ManyToManyField(
        CareTeam, through="CareTeamAssignment", related_name="patients"
    )
    # The EHR's medical record number, as the clinic's EHR issues it (matching, FHIR identifier).
    mrn = models.CharField("MRN", max_length=64, null=True, blank=True, unique=True)
    # IANA zone of where the patient lives: visits, "today" and readings' local times.
    time_zone = models.CharField(max_length=64, default="UTC")
    contact_phone = models.CharField(max_length=32, blank=True)
    # Discharged: the record is kept and readable; nothing new is processed (uploads refused,
    # no evaluation, no proposals) and the phone's tokens are revoked.
    discharged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # When the record last changed: the FHIR Patient's meta.lastUpdated, which an EHR polls by
    # (_lastUpdated). Kept by save(), also when it names the fields it writes.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(birth_year__gte=1900, birth_year__lte=2100),
                name="patient_birth_year_plausible",
            ),
            models.CheckConstraint(
                condition=models.Q(sex__in=Sex.values), name="patient_sex_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(race__in=Race.values), name="patient_race_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(ethnicity__in=Ethnicity.values), name="patient_ethnicity_valid"
            ),
        ]

    def __str__(self) -> str:  # never a name: str() ends up in logs and admin breadcrumbs
        return f"Patient {self.pk}"

    def save(self, *args, **kwargs) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "updated_at" not in update_fields:
            kwargs["update_fields"] = [*update_fields, "updated_at"]
        super().save(*args, **kwargs)

    @property
    def display_name(self) -> str:
        return f"{self.family_name}, {self.given_name}"

    @property
    def born(self) -> str:
        """The birth date, or the year where only the year is known (ISO, unambiguous)."""
        return self.birth_date.isoformat() if self.birth_date else str(self.birth_year)

    @property
    def identity(self) -> str:
        """What tells two patients of the same name apart on every list: name, birth, MRN."""
        mrn = f" · MRN {self.mrn}" if self.mrn else ""
        return f"{self.display_name} · born {self.born}{mrn}"


class PatientIdentifier(models.Model):
    """An identifier another system gives the patient (an EHR's MRN under that EHR's system
    URI), for matching: FHIR ``Patient.identifier`` and ``Patient?identifier=system|value``.
    One value per system and patient; a (system, value) names one patient."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="identifiers")
    system = models.CharField(max_length=255)
    value = models.CharField(max_length=128)
    assigned_at = models.DateTimeField(auto_now_add=True)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["system", "value"]
        constraints = [
            models.UniqueConstraint(
                fields=["system", "value"], name="identifier_names_one_patient"
            ),
            models.UniqueConstraint(fields=["patient", "system"], name="one_identifier_per_system"),
        ]

    def __str__(self) -> str:
        return f"Identifier {self.pk}"


class CareTeamAssignment(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="assignments")
    care_team = models.ForeignKey(CareTeam, on_delete=models.PROTECT, related_name="assignments")
    assigned_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["patient", "care_team"], name="assignment_unique"),
        ]


class Device(models.Model):
    """A wearable registered to one patient; the first upload from a new device id registers it."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="devices")
    device_id = models.CharField(max_length=64)
    registered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "device_id"], name="device_unique_per_patient"
            ),
        ]


class PhoneActivation(models.Model):
    """A short-lived, single-use code (and its QR) that the patient's phone app exchanges for its
    credentials (``patients.activation``); then the phone itself, listed per patient and revocable.
    Only the code's SHA-256 is stored. ``token_family`` names the refresh-token family the phone
    holds (django-oauth-toolkit rotates refresh tokens within one family), so revoking the phone
    revokes exactly its tokens."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="activations")
    code_sha256 = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    activated_at = models.DateTimeField(null=True, blank=True)
    device_label = models.CharField(max_length=80, blank=True)
    token_family = models.UUIDField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class ReadingType(models.TextChoices):
    BLOOD_PRESSURE = "blood_pressure", "Blood pressure"
    HEART_RATE = "heart_rate", "Heart rate"
    STEPS = "steps", "Steps"


class ReadingQuerySet(models.QuerySet):
    def in_use(self) -> models.QuerySet:
        """The readings that count: a reading marked entered in error stays in the record and the
        journal but leaves features, charts' figures and alert rules."""
        return self.filter(entered_in_error_at__isnull=True)


class Reading(models.Model):
    """One wearable measurement. Stored once per (patient, client_id), whatever the retries."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="readings")
    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="readings")
    client_id = models.CharField(max_length=64)
    reading_type = models.CharField(max_length=16, choices=ReadingType.choices)
    systolic_mmhg = models.PositiveSmallIntegerField(null=True, blank=True)
    diastolic_mmhg = models.PositiveSmallIntegerField(null=True, blank=True)
    value = models.PositiveIntegerField(
        null=True, blank=True, help_text="Heart rate in /min or step count, by reading_type."
    )
    measured_at = models.DateTimeField()
    utc_offset_minutes = models.SmallIntegerField(
        default=0, help_text="The device's UTC offset when measuring (local time of day features)."
    )
    received_at = models.DateTimeField()
    # Steps counted over a period (a daily total, FHIR effectivePeriod): its start; the end is
    # ``measured_at``, so windows, features and de-duplication keep one instant per reading.
    period_start = models.DateTimeField(null=True, blank=True)
    # The codings of the code a client sent beside the one we store by (FHIR code.coding, e.g.
    # LOINC 55284-4 beside 85354-9, a SNOMED CT code): [{"system", "code", "version"?,
    # "display"?}, ...] in the order sent; NULL when there were none.
    codings = models.JSONField(null=True, blank=True)
    # "Entered in error" (a cuff on the wrong arm, someone else's reading): kept, never deleted.
    entered_in_error_at = models.DateTimeField(null=True, blank=True)
    entered_in_error_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    entered_in_error_reason = models.CharField(max_length=300, blank=True, db_default="")

    objects = ReadingQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "client_id"], name="reading_once_per_client_id"
            ),
            models.CheckConstraint(
                condition=models.Q(entered_in_error_at__isnull=True)
                | (
                    models.Q(entered_in_error_by__isnull=False)
                    & ~models.Q(entered_in_error_reason="")
                ),
                name="reading_error_has_who_and_why",
            ),
            models.CheckConstraint(
                condition=models.Q(reading_type__in=ReadingType.values), name="reading_type_valid"
            ),
            models.CheckConstraint(
                condition=~models.Q(reading_type="blood_pressure")
                | models.Q(
                    systolic_mmhg__gte=50,
                    systolic_mmhg__lte=300,
                    diastolic_mmhg__gte=20,
                    diastolic_mmhg__lte=200,
                    systolic_mmhg__gt=models.F("diastolic_mmhg"),
                ),
                name="reading_bp_physiological",
            ),
            models.CheckConstraint(
                condition=models.Q(reading_type="blood_pressure") | models.Q(value__isnull=False),
                name="reading_value_present",
            ),
            models.CheckConstraint(
                condition=models.Q(period_start__isnull=True)
                | models.Q(reading_type="steps", period_start__lt=models.F("measured_at")),
                name="reading_period_steps_before_end",
            ),
        ]
        indexes = [
            models.Index(fields=["patient", "reading_type", "measured_at"], name="reading_series"),
            # An evaluation's watermark, MAX(id) of one patient's readings of one type: one index
            # lookup, however few readings the patient has among the table's (issue 17).
            models.Index(fields=["patient", "reading_type", "id"], name="reading_watermark"),
        ]


class MedicationIntake(models.Model):
    """A dose the patient reports having taken (adherence log). Stored once per client_id."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="intakes")
    client_id = models.CharField(max_length=64)
    medication = models.CharField(max_length=40)
    dose_mg = models.DecimalField(max_digits=7, decimal_places=2)
    taken_at = models.DateTimeField()
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "client_id"], name="intake_once_per_client_id"
            ),
            models.CheckConstraint(condition=models.Q(dose_mg__gt=0), name="intake_dose_positive"),
        ]
        indexes = [
            models.Index(fields=["patient", "taken_at"], name="intake_series"),
            # MAX(id) of one patient's intakes (an evaluation's watermark): one index lookup.
            models.Index(fields=["patient", "id"], name="intake_watermark"),
        ]


class Prescription(models.Model):
    """One medication at one dose over a period: the patient's regimen is the open ones.

    A dose change closes the current row (``ended_at``) and opens a new one, so the history of
    the regimen is never edited."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="prescriptions")
    medication = models.CharField(max_length=40)
    dose_mg = models.DecimalField(max_digits=7, decimal_places=2)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(
        max_length=40, help_text="who set it: 'clinician', 'recommendation:<id>', 'import'"
    )
    # The person who ordered it (FHIR MedicationRequest.requester): the clinician who decided
    # the change or signed the EHR's order; empty for imports and for records made before it
    # was kept.
    prescribed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "medication"],
                condition=models.Q(ended_at__isnull=True),
                name="one_open_prescription_per_medication",
            ),
            models.CheckConstraint(
                condition=models.Q(dose_mg__gt=0), name="prescription_dose_positive"
            ),
        ]


class LabResult(models.Model):
    """One laboratory result the course rules need (potassium, creatinine, eGFR), stored in its
    code's canonical UCUM unit beside the value and unit as sent (``patients.labs``). Stored
    once per (patient, client_id); never edited."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="lab_results")
    client_id = models.CharField(max_length=64)
    code = models.CharField(max_length=16, help_text="LOINC code (patients.labs.LAB_CODES).")
    value = models.DecimalField(
        max_digits=9, decimal_places=3, help_text="In the code's canonical unit."
    )
    unit = models.CharField(max_length=32, help_text="The canonical UCUM unit of the code.")
    original_value = models.DecimalField(max_digits=9, decimal_places=3)
    original_unit = models.CharField(max_length=32, help_text="The UCUM unit as sent.")
    observed_at = models.DateTimeField()
    received_at = models.DateTimeField()
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The clinician who entered it (absent for a system import).",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["patient", "client_id"], name="lab_once_per_client_id"),
            models.CheckConstraint(
                condition=models.Q(code__in=list(LAB_CODES)), name="lab_code_supported"
            ),
            models.CheckConstraint(
                condition=functools.reduce(
                    operator.or_,
                    (models.Q(code=code.loinc, unit=code.unit) for code in LAB_CODES.values()),
                ),
                name="lab_unit_canonical",
            ),
            models.CheckConstraint(condition=models.Q(value__gt=0), name="lab_value_positive"),
        ]
        indexes = [
            models.Index(fields=["patient", "code", "observed_at"], name="lab_series"),
            # MAX(id) of one patient's results (an evaluation's watermark): one index lookup.
            models.Index(fields=["patient", "id"], name="lab_watermark"),
        ]


class SafetyCheckDue(models.Model):
    """A patient whose new readings the safety rules have not yet seen (an outbox row).

    Written in the same transaction as the readings, so a crisis in stored data can never be
    forgotten; removed by the safety check (``clinicians.safety_path``), which normally runs
    inline right after the upload commits. ``due_since`` is the oldest unchecked upload: its
    age is what ``/readyz`` reports as the oldest due alert."""

    patient = models.OneToOneField(
        Patient, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    due_since = models.DateTimeField(db_index=True)
    # Bumped by every upload: a check removes the row only if no upload came in meanwhile.
    generation = models.PositiveBigIntegerField(default=1)


class EmergencyAccess(models.Model):
    """A clinician opening the record of a patient outside their care teams ("break the glass"):
    with a stated reason, for a limited time, journalled and listed for the auditor. It lets them
    read what the care team reads; it does not make them the patient's care team (no decisions,
    no orders, no bounds)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="emergency_accesses"
    )
    patient = models.ForeignKey(
        Patient, on_delete=models.PROTECT, related_name="emergency_accesses"
    )
    reason = models.CharField(max_length=500)
    started_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["user", "expires_at"], name="emergency_user_expiry")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(expires_at__gt=models.F("started_at")) & ~models.Q(reason=""),
                name="emergency_access_reasoned_and_limited",
            ),
        ]


# What a patient may let a caregiver read (``patients.caregivers``); messages only when named.
CAREGIVER_SCOPES = ("readings", "alerts", "medications", "goals", "messages")


class CaregiverGrantQuerySet(models.QuerySet):
    def in_force(self, at=None):
        """Grants that let their caregiver read now (or ``at``): accepted, started, not ended,
        not revoked."""
        from django.utils import timezone

        at = at or timezone.now()
        return self.filter(
            models.Q(starts_at__isnull=True) | models.Q(starts_at__lte=at),
            models.Q(ends_at__isnull=True) | models.Q(ends_at__gt=at),
            accepted_at__isnull=False,
            revoked_at__isnull=True,
        )

    def sharing(self, scope: str):
        if scope not in CAREGIVER_SCOPES:
            raise ValueError(f"no caregiver scope named {scope!r}")
        return self.filter(**{f"shares_{scope}": True})


class CaregiverGrant(models.Model):
    """A patient lets a family member or carer read parts of their record: the scopes chosen,
    for a time if they wish, until revoked. Read-only whatever the scopes. The grant counts once
    the person accepted it with their one-time link (``accepted_at``); a revoked grant is kept
    (with why) for the access log, and changing scopes edits the one open grant of the pair."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="caregiver_grants")
    caregiver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="caregiver_grants"
    )
    name = models.CharField(max_length=120, help_text="how the patient names this person")
    email = models.EmailField(help_text="the address the patient gave for this person")
    shares_readings = models.BooleanField(default=False)
    shares_alerts = models.BooleanField(default=False)
    shares_medications = models.BooleanField(default=False)
    shares_goals = models.BooleanField(default=False)
    shares_messages = models.BooleanField(default=False)
    # The patient's urgent alerts pushed live to the caregiver's open pages (needs alerts).
    live_alerts = models.BooleanField(default=False)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=500, blank=True)

    objects = CaregiverGrantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["caregiver", "revoked_at"], name="caregiver_grant_by_caregiver")
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "caregiver"],
                condition=models.Q(revoked_at__isnull=True),
                name="caregiver_grant_one_open_per_pair",
            ),
            models.CheckConstraint(
                condition=functools.reduce(
                    operator.or_, (models.Q(**{f"shares_{s}": True}) for s in CAREGIVER_SCOPES)
                ),
                name="caregiver_grant_has_a_scope",
            ),
            models.CheckConstraint(
                condition=models.Q(live_alerts=False) | models.Q(shares_alerts=True),
                name="caregiver_grant_live_alerts_need_alerts",
            ),
            models.CheckConstraint(
                condition=models.Q(starts_at__isnull=True)
                | models.Q(ends_at__isnull=True)
                | models.Q(ends_at__gt=models.F("starts_at")),
                name="caregiver_grant_ends_after_start",
            ),
            models.CheckConstraint(
                condition=models.Q(revoked_at__isnull=False) | models.Q(revoked_reason=""),
                name="caregiver_grant_reason_only_when_revoked",
            ),
        ]

    def __str__(self) -> str:  # never a name (logs, admin breadcrumbs)
        return f"Caregiver grant {self.pk}"

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(scope for scope in CAREGIVER_SCOPES if getattr(self, f"shares_{scope}"))
