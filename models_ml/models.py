"""The model registry: dataset snapshots, model versions with lineage and stage, the privacy
ledger, shadow comparisons and model-monitoring alerts."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class DatasetSnapshot(models.Model):
    """A training set frozen by its content hash (features, targets, patient ids)."""

    content_hash = models.CharField(max_length=64, unique=True)
    row_count = models.PositiveIntegerField()
    patient_count = models.PositiveIntegerField()
    feature_set = models.CharField(max_length=40)
    source = models.JSONField(default=dict)
    date_from = models.DateField(null=True)
    date_to = models.DateField(null=True)
    privacy_budget_epsilon = models.FloatField(
        help_text="Total ε this dataset may spend across all private trainings."
    )
    delta = models.FloatField(help_text="δ used for every private training on this dataset.")
    created_at = models.DateTimeField(auto_now_add=True)


class Stage(models.TextChoices):
    CANDIDATE = "candidate", "Candidate"
    SHADOW = "shadow", "Shadow"
    PRODUCTION = "production", "Production"
    RETIRED = "retired", "Retired"
    REJECTED = "rejected", "Rejected by a gate"


class ModelVersion(models.Model):
    version = models.CharField(max_length=40, unique=True)
    kind = models.CharField(max_length=20, help_text="sklearn_gbr | torch_mlp_dp")
    stage = models.CharField(max_length=12, choices=Stage.choices, default=Stage.CANDIDATE)
    artifact_path = models.CharField(max_length=300)
    artifact_sha256 = models.CharField(max_length=64)
    feature_set = models.CharField(max_length=40)
    feature_names = models.JSONField()
    dataset = models.ForeignKey(DatasetSnapshot, on_delete=models.PROTECT, related_name="models")
    code_version = models.CharField(max_length=64)
    parameters = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    fairness_report = models.JSONField(default=dict)
    privacy = models.JSONField(default=dict, help_text="ε, δ, noise, clipping, sampling, epochs")
    gate_results = models.JSONField(default=dict)
    course_rules = models.JSONField(
        default=dict,
        help_text="the treatment-course rules the simulated-policy gate validated the policy "
        "under (patients.course.rules_record); serving under weaker ones is refused",
    )
    reference_sample = models.JSONField(
        default=dict, help_text="feature and prediction sample from training, for drift checks"
    )
    input_ranges = models.JSONField(
        default=dict,
        help_text="per feature, the range seen in training ({name: [low, high]}); at serving an "
        "input outside it sends the proposal to a clinician",
    )
    waiver_reason = models.TextField(blank=True)
    waived_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    promoted_at = models.DateTimeField(null=True, blank=True)
    previous_production = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["stage"], condition=Q(stage="production"), name="one_production_model"
            ),
            models.UniqueConstraint(
                fields=["stage"], condition=Q(stage="shadow"), name="one_shadow_model"
            ),
        ]

    def __str__(self) -> str:
        return self.version


class PrivacyLedgerEntry(models.Model):
    """One private training's spend on a dataset; the ledger's total is composed by RDP."""

    dataset = models.ForeignKey(DatasetSnapshot, on_delete=models.PROTECT, related_name="spend")
    model_version = models.OneToOneField(
        ModelVersion, null=True, on_delete=models.PROTECT, related_name="ledger_entry"
    )
    noise_multiplier = models.FloatField()
    sample_rate = models.FloatField()
    steps = models.PositiveIntegerField()
    epsilon = models.FloatField(help_text="this run alone")
    cumulative_epsilon = models.FloatField(help_text="all runs on the dataset, after this one")
    delta = models.FloatField()
    privacy_unit = models.CharField(
        max_length=10, default="row", help_text="whom ε protects: patient or row"
    )
    created_at = models.DateTimeField(auto_now_add=True)


class ShadowComparison(models.Model):
    """What the shadow model would have proposed beside what was proposed (never delivered)."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    patient_id = models.BigIntegerField()
    production_producer = models.CharField(max_length=64)
    production_medication = models.CharField(max_length=40, blank=True)
    production_dose_mg = models.DecimalField(max_digits=7, decimal_places=2, null=True)
    shadow_medication = models.CharField(max_length=40, blank=True)
    shadow_dose_mg = models.DecimalField(max_digits=7, decimal_places=2, null=True)
    shadow_kind = models.CharField(max_length=20)
    agrees = models.BooleanField()
    created_at = models.DateTimeField(auto_now_add=True)


class ModelAlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    CLOSED = "closed", "Closed"


class ModelAlert(models.Model):
    """An alert for administrators and model owners about a model (drift, outcome decay,
    overrides). Open → acknowledged (someone is looking) → closed with a reason; each step is
    audited. ``is_open`` is true until it is closed."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="alerts")
    kind = models.CharField(max_length=32)
    message = models.CharField(max_length=300)
    evidence = models.JSONField(default=dict)
    is_open = models.BooleanField(default=True)
    status = models.CharField(
        max_length=12, choices=ModelAlertStatus.choices, default=ModelAlertStatus.OPEN
    )
    opened_at = models.DateTimeField(auto_now_add=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.TextField(blank=True)


class DriftReport(models.Model):
    """One monitoring run for one model version: what was compared, with how much data, and the
    verdict — kept so that the history of a version's monitoring can be read."""

    class Verdict(models.TextChoices):
        OK = "ok", "Within limits"
        ALARM = "alarm", "Alarm"
        INSUFFICIENT = "insufficient", "Too little data to judge"

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="drift_reports"
    )
    monitor = models.CharField(max_length=32, help_text="drift | outcome | overrides")
    verdict = models.CharField(max_length=12, choices=Verdict.choices)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField()
    live_rows = models.PositiveIntegerField(default=0)
    reference_rows = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["model_version", "monitor", "created_at"])]


class PatientPrivacySpend(models.Model):
    """One private training's spend on one real patient, and that patient's composed ε across
    every private training that touched them so far (RDP; PLD beside it). A run that would push
    any patient past the budget is refused before it trains."""

    patient = models.ForeignKey(
        "patients.Patient", on_delete=models.PROTECT, related_name="privacy_spend"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="patient_spend"
    )
    noise_multiplier = models.FloatField()
    sample_rate = models.FloatField()
    steps = models.PositiveIntegerField()
    delta = models.FloatField()
    epsilon = models.FloatField(help_text="this run alone")
    cumulative_epsilon_rdp = models.FloatField(help_text="all runs on this patient, RDP")
    cumulative_epsilon_pld = models.FloatField(
        null=True, help_text="all runs on this patient, PLD accountant (tighter; reported)"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "model_version"], name="one_spend_per_patient_per_model"
            )
        ]
        indexes = [models.Index(fields=["patient", "created_at"])]
