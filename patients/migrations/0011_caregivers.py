"""Reserved for caregiver grants (issue #16); filled in by the change that adds them."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("patients", "0010_reading_codings_and_periods"),
    ]

    operations: list = []
