"""Readings' extra codings and daily step periods (issue #15): the codings a FHIR client sent
beside the one a reading is stored by, and the start of the period a step count covers."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("patients", "0009_ehr_identifiers_and_prescriber"),
    ]

    operations = [
        migrations.AddField(
            model_name="reading",
            name="codings",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="reading",
            name="period_start",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddConstraint(
            model_name="reading",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("period_start__isnull", True),
                    models.Q(
                        ("period_start__lt", models.F("measured_at")), ("reading_type", "steps")
                    ),
                    _connector="OR",
                ),
                name="reading_period_steps_before_end",
            ),
        ),
    ]
