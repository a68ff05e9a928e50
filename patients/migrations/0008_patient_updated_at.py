"""Patient.updated_at: when the record last changed (FHIR meta.lastUpdated, _lastUpdated).
Existing records start at their creation time."""

import django.utils.timezone
from django.db import migrations, models


def from_created_at(apps, schema_editor):
    Patient = apps.get_model("patients", "Patient")
    Patient.objects.update(updated_at=models.F("created_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("patients", "0007_portal_evidence"),
    ]

    operations = [
        migrations.AddField(
            model_name="patient",
            name="updated_at",
            field=models.DateTimeField(auto_now=True, default=django.utils.timezone.now),
            preserve_default=False,
        ),
        migrations.RunPython(from_created_at, migrations.RunPython.noop),
    ]
