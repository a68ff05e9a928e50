"""The journal's tables.

``AuditEvent`` is the journal: one row per event, numbered without gaps, each holding the exact
canonical text that was hashed (``entry``) and, as indexed columns for queries, the fields
auditors filter on. The columns are a projection of ``entry``; verification checks they agree.
``ChainHead`` is one row naming the last sequence and hash (the lock writers queue on, and the
record that makes deleting the newest entries detectable). ``Checkpoint`` rows are signed
Merkle roots of blocks of events. These three refuse UPDATE and DELETE in the ORM here and in
the database (triggers, migration 0002). ``AuditExport`` is ordinary mutable bookkeeping for
the export API.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from django.conf import settings
from django.db import models
from django.utils import timezone

from audit.canonical import GENESIS_HASH
from audit.statements import CheckpointStatement

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    # Django's fields are generic in django-stubs only, not subscriptable at run time.
    _SequenceBase = models.PositiveBigIntegerField[int, int]
else:
    _SequenceBase = models.PositiveBigIntegerField


class AppendOnlyError(Exception):
    """An attempt to change or remove a journal row through the ORM."""


class Action(models.TextChoices):
    """Every verb the journal knows: ``services.record_event`` refuses any other, so a new kind
    of event is added here, once, with its label. The column itself is plain text — entries
    written under an older vocabulary stay readable and verifiable."""

    CREATE = "create", "Create"
    READ = "read", "Read"
    UPDATE = "update", "Update"
    DECISION = "decision", "Clinician decision"
    EVALUATE = "evaluate", "Patient evaluated"
    LOGIN = "login", "Login"
    LOGOUT = "logout", "Logout"
    LOGIN_FAILED = "login_failed", "Failed login"
    EXPORT = "export", "Export"
    EXPORT_DOWNLOAD = "export_download", "Export downloaded"
    MODEL_REGISTERED = "model_registered", "Model registered"
    MODEL_EVALUATED = "model_evaluated", "Model evaluated against the gates"
    MODEL_REFERENCE_BUILT = "model_reference_built", "Model drift reference built"
    MODEL_PROMOTED = "model_promoted", "Model promoted"
    MODEL_PROMOTION_REFUSED = "model_promotion_refused", "Model promotion refused"
    MODEL_STAGE_CHANGED = "model_stage_changed", "Model stage changed"
    MODEL_ROLLED_BACK = "model_rolled_back", "Model rolled back"
    PATIENT_PRIVACY_SPENT = "patient_privacy_spent", "Patient privacy budget spent"
    NONPRIVATE_TRAINING_WAIVED = "nonprivate_training_waived", "Non-private training waived"
    NONPRIVATE_TRAINING_REFUSED = "nonprivate_training_refused", "Non-private training refused"
    REFUSED = "refused", "Request refused"
    DEACTIVATE = "deactivate", "Deactivated"
    INVITE = "invite", "Invitation issued"
    LINK_REDEEMED = "link_redeemed", "One-time link used"
    SECOND_FACTOR_RESET = "second_factor_reset", "Second factor reset"
    TRANSFER = "transfer", "Patient transferred"
    DISCHARGE = "discharge", "Patient discharged"
    ACTIVATION_ISSUED = "activation_issued", "Phone activation code issued"
    PHONE_ACTIVATED = "phone_activated", "Phone activated"
    PHONE_REVOKED = "phone_revoked", "Phone revoked"
    BOUNDS_CONFIRMED = "bounds_confirmed", "Safety bounds confirmed"
    IMPORT = "import", "Import"
    # Emergency ("break-glass") access to a patient outside one's teams; the auditor's review
    # report lists them with the overrides.
    EMERGENCY_ACCESS = "emergency_access", "Emergency access"
    ALERT_SNOOZED = "alert_snoozed", "Alert condition snoozed"
    ALERT_ESCALATED = "alert_escalated", "Alert escalated"
    ENTERED_IN_ERROR = "entered_in_error", "Marked entered in error"


class Outcome(models.TextChoices):
    SUCCESS = "success", "Success"
    PARTIAL = "partial", "Partly accepted (a batch with rejected items)"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"


_Row = TypeVar("_Row", bound=models.Model)


class AppendOnlyQuerySet(models.QuerySet[_Row]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError(f"{self.model.__name__} is append-only: update refused")

    def delete(self) -> NoReturn:
        raise AppendOnlyError(f"{self.model.__name__} is append-only: delete refused")

    def bulk_update(
        self, objs: Iterable[_Row], fields: Iterable[str], batch_size: int | None = None
    ) -> NoReturn:
        raise AppendOnlyError(f"{self.model.__name__} is append-only: update refused")

    def _raw_delete(self, using: str | None) -> NoReturn:
        raise AppendOnlyError(f"{self.model.__name__} is append-only: delete refused")

    # Django's marker (read by Manager.from_queryset): not copied onto the manager.
    update.queryset_only = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]


class AppendOnlyModel(models.Model):
    """Rows are inserted once; saving an existing row or deleting one raises."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} is append-only: update refused")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError(f"{type(self).__name__} is append-only: delete refused")


class SequenceField(_SequenceBase):
    """A 64-bit sequence number; on SQLite declared ``integer`` so that, as the primary key, it
    is the rowid itself (one B-tree per append instead of a table plus a unique index)."""

    def db_type(self, connection: BaseDatabaseWrapper) -> str | None:
        return "integer" if connection.vendor == "sqlite" else super().db_type(connection)


class AuditEvent(AppendOnlyModel):
    sequence = SequenceField(primary_key=True)
    occurred_at = models.DateTimeField(db_index=True)
    # No database constraint: the journal outlives the accounts it names, and a user row's
    # deletion must neither cascade into nor be blocked by history.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_role = models.CharField(max_length=32, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=128, blank=True)
    patient_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    patient_ids = models.JSONField(default=list)
    outcome = models.CharField(max_length=32)
    # The chain the entry belongs to and its gapless position there (docs/audit.md, "Chains");
    # ``sequence`` is the journal-wide order, increasing along each chain.
    chain = models.PositiveSmallIntegerField(default=1)
    chain_sequence = models.PositiveBigIntegerField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    entry = models.TextField(help_text="The canonical JSON text the hash covers.")

    class Meta:
        ordering = ["sequence"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(sequence__gte=1), name="audit_sequence_positive"
            ),
            models.UniqueConstraint(
                fields=["chain", "chain_sequence"], name="audit_chain_position_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.object_type}:{self.object_id}"

    @cached_property
    def payload(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.entry))

    @property
    def changes(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.payload["changes"])

    @property
    def detail(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.payload["detail"])

    @property
    def component(self) -> str:
        return cast(str, self.payload["component"])

    @property
    def request_id(self) -> str:
        return cast(str, self.payload["request_id"])

    @property
    def client_address(self) -> str:
        return cast(str, self.payload["client_address"])


MAX_CHAINS = 64


class ChainHead(AppendOnlyModel):
    """One row per chain (``id`` = the chain number, 1..64) naming its newest entry
    (``last_sequence`` is the chain's own position). Only the insert trigger moves it."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_sequence = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(id__gte=1, id__lte=MAX_CHAINS), name="audit_chain_head_range"
            )
        ]


class Checkpoint(AppendOnlyModel):
    """A signed tree head over the events at positions ``first_sequence..last_sequence`` of one
    chain (see statements.py); all checkpoints form one signed list across the chains."""

    index = models.PositiveIntegerField(primary_key=True)
    chain = models.PositiveSmallIntegerField(default=1)
    first_sequence = models.PositiveBigIntegerField()
    last_sequence = models.PositiveBigIntegerField()
    merkle_root = models.CharField(max_length=64)
    chain_hash = models.CharField(max_length=64)
    prev_checkpoint = models.CharField(max_length=64)
    key_fingerprint = models.CharField(max_length=64)
    public_key = models.CharField(max_length=64, help_text="base64 of the raw Ed25519 key")
    signature = models.CharField(max_length=128, help_text="base64 Ed25519 signature")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["index"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(last_sequence__gte=models.F("first_sequence")),
                name="audit_checkpoint_range",
            ),
            models.UniqueConstraint(
                fields=["chain", "first_sequence"], name="audit_checkpoint_chain_first"
            ),
            models.UniqueConstraint(
                fields=["chain", "last_sequence"], name="audit_checkpoint_chain_last"
            ),
        ]

    def statement(self) -> CheckpointStatement:
        return CheckpointStatement(
            index=self.index,
            chain=self.chain,
            first_sequence=self.first_sequence,
            last_sequence=self.last_sequence,
            merkle_root=self.merkle_root,
            chain_hash=self.chain_hash,
            prev_checkpoint=self.prev_checkpoint,
            key_fingerprint=self.key_fingerprint,
        )

    def as_record(self) -> dict[str, Any]:
        """The line written to ``checkpoints.jsonl`` in exports."""
        return {
            **json.loads(self.statement().to_bytes()),
            "public_key": self.public_key,
            "signature": self.signature,
        }


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class AuditExport(models.Model):
    """An export requested through the API; the files live under ``DATA_DIR/audit_exports``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(
        max_length=16, choices=ExportStatus.choices, default=ExportStatus.PENDING
    )
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    patient_id = models.BigIntegerField(null=True, blank=True)
    formats = models.JSONField(default=list)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    manifest = models.JSONField(null=True, blank=True)
    directory = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-requested_at"]
