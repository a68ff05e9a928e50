"""Indexes for an evaluation's watermark (issue 17): MAX(id) of one patient's blood-pressure
readings, intakes and lab results becomes one index lookup on PostgreSQL. Without them the
planner walks the primary key backwards until it meets the patient's newest row, which for a
quiet patient in a large table took seconds. A plain CREATE INDEX, as every index here is made
(it holds off writes to the table while it builds: seconds per million rows)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("patients", "0011_caregivers"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="reading",
            index=models.Index(fields=["patient", "reading_type", "id"], name="reading_watermark"),
        ),
        migrations.AddIndex(
            model_name="medicationintake",
            index=models.Index(fields=["patient", "id"], name="intake_watermark"),
        ),
        migrations.AddIndex(
            model_name="labresult",
            index=models.Index(fields=["patient", "id"], name="lab_watermark"),
        ),
    ]
