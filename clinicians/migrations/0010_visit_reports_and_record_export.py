"""Reserved for visit reports and the patient's copy of their record (issue #16); filled in by
the change that adds them."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("clinicians", "0009_message_receipts_and_urgency"),
    ]

    operations: list = []
