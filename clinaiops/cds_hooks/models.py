"""The EHRs that call ClinAIOps as CDS Clients, the tokens they spent, the cards they were given.

An EHR is registered by an administrator (``registration``): the issuer (``iss``) of its JWTs,
its public key set, the care teams whose patients it may ask about, the origins its browser
front end calls from (CORS), how its patient ids relate to our MRNs, and the practitioners it
may name — each mapped to a ClinAIOps clinician. Nothing here is fetched at run time: the key
set is stored (a ``jku`` in a JWT must be the registered one, and is not fetched).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from accounts.models import CareTeam


class CdsClient(models.Model):
    name = models.CharField(max_length=120)
    # The ``iss`` of the EHR's JWTs, exactly (CDS Hooks 2.0, "Trusting CDS Clients": the allow
    # list of issuers).
    issuer = models.CharField(max_length=255, unique=True)
    # RFC 7517 key set (public keys only) that verifies its JWTs.
    jwks = models.JSONField(default=dict)
    # The ``jku`` its JWTs may name (blank: none may); recorded, never fetched.
    jku = models.URLField(max_length=255, blank=True)
    care_teams = models.ManyToManyField(CareTeam, related_name="cds_clients")
    # Space-separated browser origins (``https://ehr.example.org``) allowed by CORS.
    allowed_origins = models.TextField(blank=True)
    # The identifier system of the MRN in the EHR's ``Patient.identifier`` (blank: the
    # identifier typed ``MR``, HL7 v2 table 0203).
    mrn_system = models.CharField(max_length=255, blank=True)
    # The EHR's ``Patient.id`` is the MRN itself (then a hook needs no ``patient`` prefetch).
    patient_id_is_mrn = models.BooleanField(default=False)
    # The EHR's FHIR base (``fhirServer``) this service may read with a ``fhirAuthorization``
    # token when the prefetch lacks the patient (blank: never).
    fhir_server = models.URLField(max_length=255, blank=True)
    # SMART App Launch (EHR launch of the review page): our client id at the EHR's
    # authorization server (blank: the EHR may not launch ClinAIOps), the secret of a
    # confidential client (blank: a public client, PKCE only), the scope asked, and the EHR's
    # endpoints (blank: discovered from ``{fhir_server}/.well-known/smart-configuration``).
    smart_client_id = models.CharField(max_length=255, blank=True)
    smart_client_secret = models.CharField(max_length=255, blank=True)
    smart_scope = models.CharField(
        max_length=255, default="launch openid fhirUser patient/Patient.rs"
    )
    smart_authorize_url = models.URLField(max_length=255, blank=True)
    smart_token_url = models.URLField(max_length=255, blank=True)
    smart_jwks_url = models.URLField(max_length=255, blank=True)
    is_active = models.BooleanField(default=True)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    registered_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(self.allowed_origins.split())


class CdsPractitioner(models.Model):
    """A user the EHR may name in ``context.userId`` (``Practitioner/abc`` or
    ``PractitionerRole/123``), and the ClinAIOps clinician that is."""

    client = models.ForeignKey(CdsClient, on_delete=models.CASCADE, related_name="practitioners")
    reference = models.CharField(max_length=255)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "reference"], name="cds_practitioner_once"),
        ]


class CdsTokenUse(models.Model):
    """The ``jti`` of every accepted JWT until it expires: a token is good for one call. In the
    database (not the cache) so that every worker sees it and a restart forgets nothing."""

    client = models.ForeignKey(CdsClient, on_delete=models.CASCADE, related_name="+")
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "jti"], name="cds_token_once"),
        ]


class CdsCardKind(models.TextChoices):
    CRISIS = "crisis", "Open hypertensive crisis"
    PROPOSAL = "proposal", "Proposal waiting for a clinician"
    ORDER_CHECK = "order_check", "Draft order against the course rules"


class CdsCard(models.Model):
    """A card as issued: whom to, about what. Feedback names a card by ``uuid``; only the
    client it was issued to may report on it, and the decision is that of the practitioner it
    was shown to."""

    uuid = models.UUIDField(unique=True)
    client = models.ForeignKey(CdsClient, on_delete=models.PROTECT, related_name="cards")
    service = models.CharField(max_length=64)
    hook_instance = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=CdsCardKind.choices)
    patient = models.ForeignKey("patients.Patient", on_delete=models.PROTECT, related_name="+")
    practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    recommendation = models.ForeignKey(
        "clinicians.Recommendation",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    suggestion_uuid = models.UUIDField(null=True, blank=True)
    issued_at = models.DateTimeField()
    feedback_outcome = models.CharField(max_length=16, blank=True)
    feedback_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=["crisis", "proposal", "order_check"]),
                name="cds_card_kind_valid",
            ),
        ]


class SmartLaunchStatus(models.TextChoices):
    STARTED = "started", "Sent to the EHR's authorization server"
    COMPLETED = "completed", "Patient matched, waiting for the portal sign-in"
    SHOWN = "shown", "Shown to the signed-in clinician"
    REFUSED = "refused", "Refused"


class SmartLaunch(models.Model):
    """One SMART EHR launch of the review page (``clinaiops.cds_hooks.launch``): the ``state``
    and PKCE verifier sent to the EHR, then what its token response named. Bound to the
    browser session that started it; good for ``launch.LIFETIME`` and shown once."""

    client = models.ForeignKey(CdsClient, on_delete=models.CASCADE, related_name="launches")
    state = models.CharField(max_length=64, unique=True)
    code_verifier = models.CharField(max_length=128)
    nonce = models.CharField(max_length=64)
    token_url = models.URLField(max_length=255)
    jwks_url = models.URLField(max_length=255, blank=True)
    oidc_issuer = models.CharField(max_length=255, blank=True)
    status = models.CharField(
        max_length=16, choices=SmartLaunchStatus.choices, default=SmartLaunchStatus.STARTED
    )
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    ehr_patient = models.CharField(max_length=255, blank=True)
    fhir_user = models.CharField(max_length=255, blank=True)
    patient = models.ForeignKey(
        "patients.Patient", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    recommendation = models.ForeignKey(
        "clinicians.Recommendation",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
