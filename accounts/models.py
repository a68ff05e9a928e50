"""Users, roles, care teams."""

from __future__ import annotations

from typing import ClassVar, Self

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models


class Role(models.TextChoices):
    PATIENT = "patient", "Patient"
    CLINICIAN = "clinician", "Clinician"
    ADMIN = "admin", "Administrator"
    AUDITOR = "auditor", "Auditor"
    # Owns the models: reads their evidence, promotes, rolls back and waives gates. Not an
    # administrator: the people who run the system are not the people who decide which model
    # treats patients (separation of duties, as for auditors).
    MODEL_OWNER = "model_owner", "Model owner"
    # An EHR's back-end (SMART Backend Services): one account per registered client, never a
    # person; it signs in only with its client's key and reaches the care teams it serves.
    SERVICE = "service", "EHR integration"
    # A family member or carer a patient granted read-only access to parts of their record
    # (``patients.caregivers``): never staff, never a writer, sees only what a grant allows.
    CAREGIVER = "caregiver", "Caregiver"


class User(AbstractUser):
    """A person who signs in. The role decides what they may reach; it never changes silently
    (a role change is an audited update by an admin)."""

    role = models.CharField(max_length=16, choices=Role.choices)

    objects: ClassVar[UserManager[Self]] = UserManager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="user_role_valid"
            ),
        ]

    @property
    def shown_name(self) -> str:
        """How colleagues see this person on a page: the clinician's display name, else the full
        name, else the username (one query at most; select ``clinician_profile`` on lists)."""
        try:
            profile = self.clinician_profile
        except models.ObjectDoesNotExist:
            profile = None
        return (profile.display_name if profile else "") or self.get_full_name() or self.username


class CareTeam(models.Model):
    """A group of clinicians sharing responsibility for a panel of patients. Deactivated, not
    deleted: its history stays in the journal; it takes no new patients or members."""

    name = models.CharField(max_length=120, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CareTeamMembership(models.Model):
    class TeamRole(models.TextChoices):
        PHYSICIAN = "physician", "Physician"
        NURSE = "nurse", "Nurse"
        PHARMACIST = "pharmacist", "Pharmacist"
        LEAD = "lead", "Team lead"

    care_team = models.ForeignKey(CareTeam, on_delete=models.PROTECT, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="care_team_memberships")
    team_role = models.CharField(
        max_length=16, choices=TeamRole.choices, default=TeamRole.PHYSICIAN
    )
    # The clinician the team's unacknowledged urgent alerts escalate to.
    is_on_call = models.BooleanField(default=False)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["care_team", "user"], name="membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.care_team_id}"


class OneTimeLink(models.Model):
    """A link an administrator hands to a member of staff: to set their password and enrol their
    authenticator (``invite``), or to enrol a new authenticator after a lost one was reset
    (``second_factor``). Only the token's SHA-256 is stored; the link works once, until it
    expires (``accounts.staff``)."""

    class Purpose(models.TextChoices):
        INVITE = "invite", "Invitation"
        SECOND_FACTOR = "second_factor", "Second-factor enrolment"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="one_time_links")
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    token_sha256 = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    # Failed redemptions (wrong password or code); the link is withdrawn at the limit.
    failed_attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(purpose__in=["invite", "second_factor"]),
                name="one_time_link_purpose_valid",
            ),
        ]


class ClinicianProfile(models.Model):
    user = models.OneToOneField(User, on_delete=models.PROTECT, related_name="clinician_profile")
    display_name = models.CharField(max_length=120)
    qualification = models.CharField(max_length=60, blank=True)
    npi = models.CharField("National Provider Identifier", max_length=10, blank=True)

    def __str__(self) -> str:
        return self.display_name


# --- OAuth 2.0 / SMART clients and the context of their tokens (accounts/identity/) ---------------


class OAuthClient(models.Model):
    """What ClinAIOps knows about a registered OAuth client beyond django-oauth-toolkit's
    ``Application``: its kind, the most it may ask for, and for a back-end service its key and
    the care teams it serves. Registered by an admin (``accounts.identity.clients``), audited."""

    class Kind(models.TextChoices):
        FIRST_PARTY = "first_party", "ClinAIOps app (phone, portal scripts)"
        SMART_APP = "smart_app", "SMART app (patient or clinician facing)"
        BACKEND_SERVICE = "backend_service", "EHR back-end service"

    application = models.OneToOneField(
        "oauth2_provider.Application",
        on_delete=models.CASCADE,
        related_name="registration",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Space-separated: the scopes (SMART patterns included) this client may ever be granted.
    allowed_scopes = models.TextField()
    launch_uri = models.URLField(blank=True)  # where an EHR launch from the portal opens it
    # RFC 7517 key set of a back-end service (private_key_jwt client authentication).
    jwks = models.JSONField(default=dict, blank=True)
    service_user = models.OneToOneField(
        User, on_delete=models.PROTECT, null=True, blank=True, related_name="service_client"
    )
    care_teams = models.ManyToManyField(CareTeam, blank=True, related_name="oauth_clients")
    registered_by = models.ForeignKey(
        User, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    registered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=["first_party", "smart_app", "backend_service"]),
                name="oauth_client_kind_valid",
            ),
        ]


class TokenContext(models.Model):
    """How the user behind an access token signed in (``amr``, RFC 8176: ``pwd``, ``otp``) and
    the SMART launch patient, if any. Copied to each token a refresh rotates in; a token without
    one is treated as password-only and without launch context (fails closed)."""

    access_token = models.OneToOneField(
        "oauth2_provider.AccessToken",
        on_delete=models.CASCADE,
        related_name="context",
    )
    amr = models.JSONField(default=list)
    # The launch patient (patients sits above accounts: an id, not a foreign key).
    patient_id = models.BigIntegerField(null=True, blank=True)


class GrantContext(models.Model):
    """The same, for an authorization code between the sign-in and the token exchange."""

    grant = models.OneToOneField(
        "oauth2_provider.Grant", on_delete=models.CASCADE, related_name="context"
    )
    amr = models.JSONField(default=list)
    patient_id = models.BigIntegerField(null=True, blank=True)


class LaunchContext(models.Model):
    """An EHR launch: the portal opens a registered SMART app with ``launch=<code>``; the app's
    authorization request names it and its token carries the patient. Single use, short-lived."""

    code = models.CharField(max_length=64, unique=True)
    client = models.ForeignKey(OAuthClient, on_delete=models.CASCADE, related_name="launches")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    patient_id = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)


class ClientAssertionUse(models.Model):
    """The ``jti`` of every accepted client assertion until it expires, so none is replayed."""

    client = models.ForeignKey(OAuthClient, on_delete=models.CASCADE, related_name="+")
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "jti"], name="client_assertion_once"),
        ]
