"""Visit reports and the patient's copy of their record (issue #16): the record export's row.
Visit reports are computed from the data and stored nowhere."""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("clinicians", "0009_message_receipts_and_urgency"),
    ]

    operations = [
        migrations.CreateModel(
            name="RecordExport",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("requested_at", models.DateTimeField()),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Requested"),
                            ("running", "Being prepared"),
                            ("ready", "Ready to download"),
                            ("failed", "Failed"),
                            ("expired", "Expired (file deleted)"),
                        ],
                        default="pending",
                        max_length=16,
                    ),
                ),
                (
                    "fhir_base",
                    models.CharField(blank=True, help_text="Bundle entries' fullUrl", max_length=255),
                ),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("expires_at", models.DateTimeField(blank=True, null=True)),
                (
                    "file_name",
                    models.CharField(blank=True, help_text="under record_exports/", max_length=120),
                ),
                ("sha256", models.CharField(blank=True, max_length=64)),
                ("size_bytes", models.PositiveBigIntegerField(blank=True, null=True)),
                (
                    "counts",
                    models.JSONField(default=dict, help_text="resources in the Bundle, by type"),
                ),
                ("error", models.CharField(blank=True, max_length=300)),
                ("downloads", models.PositiveIntegerField(default=0)),
                (
                    "patient",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="record_exports",
                        to="patients.patient",
                    ),
                ),
                (
                    "requested_by",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-requested_at"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("status__in", ["pending", "running", "ready", "failed", "expired"])
                        ),
                        name="record_export_status_valid",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("status__in", ["pending", "running"])),
                        fields=("patient",),
                        name="one_record_export_in_flight",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("status", "ready"), _negated=True),
                            models.Q(
                                ("expires_at__isnull", False),
                                models.Q(("file_name", ""), _negated=True),
                                models.Q(("sha256", ""), _negated=True),
                            ),
                            _connector="OR",
                        ),
                        name="record_export_ready_has_file",
                    ),
                ],
            },
        ),
    ]
