"""Caregiver grants (issue #16): a patient lets a family member or carer read parts of their
record, for a time if they wish, until revoked (``patients.caregivers``)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("patients", "0010_reading_codings_and_periods"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="CaregiverGrant",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "name",
                    models.CharField(help_text="how the patient names this person", max_length=120),
                ),
                (
                    "email",
                    models.EmailField(
                        help_text="the address the patient gave for this person", max_length=254
                    ),
                ),
                ("shares_readings", models.BooleanField(default=False)),
                ("shares_alerts", models.BooleanField(default=False)),
                ("shares_medications", models.BooleanField(default=False)),
                ("shares_goals", models.BooleanField(default=False)),
                ("shares_messages", models.BooleanField(default=False)),
                ("live_alerts", models.BooleanField(default=False)),
                ("starts_at", models.DateTimeField(blank=True, null=True)),
                ("ends_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("accepted_at", models.DateTimeField(blank=True, null=True)),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                ("revoked_reason", models.CharField(blank=True, max_length=500)),
                (
                    "caregiver",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="caregiver_grants",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "patient",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="caregiver_grants",
                        to="patients.patient",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-pk"],
            },
        ),
        migrations.AddIndex(
            model_name="caregivergrant",
            index=models.Index(
                fields=["caregiver", "revoked_at"], name="caregiver_grant_by_caregiver"
            ),
        ),
        migrations.AddConstraint(
            model_name="caregivergrant",
            constraint=models.UniqueConstraint(
                condition=models.Q(("revoked_at__isnull", True)),
                fields=("patient", "caregiver"),
                name="caregiver_grant_one_open_per_pair",
            ),
        ),
        migrations.AddConstraint(
            model_name="caregivergrant",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("shares_readings", True),
                    ("shares_alerts", True),
                    ("shares_medications", True),
                    ("shares_goals", True),
                    ("shares_messages", True),
                    _connector="OR",
                ),
                name="caregiver_grant_has_a_scope",
            ),
        ),
        migrations.AddConstraint(
            model_name="caregivergrant",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("live_alerts", False), ("shares_alerts", True), _connector="OR"
                ),
                name="caregiver_grant_live_alerts_need_alerts",
            ),
        ),
        migrations.AddConstraint(
            model_name="caregivergrant",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("starts_at__isnull", True),
                    ("ends_at__isnull", True),
                    ("ends_at__gt", models.F("starts_at")),
                    _connector="OR",
                ),
                name="caregiver_grant_ends_after_start",
            ),
        ),
        migrations.AddConstraint(
            model_name="caregivergrant",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("revoked_at__isnull", False), ("revoked_reason", ""), _connector="OR"
                ),
                name="caregiver_grant_reason_only_when_revoked",
            ),
        ),
    ]
