"""Reserved for readings' extra codings and daily step periods (issue #15); filled in by the
change that adds them."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("patients", "0009_ehr_identifiers_and_prescriber"),
    ]

    operations: list = []
