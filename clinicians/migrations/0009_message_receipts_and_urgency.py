"""Reserved for messaging: read receipts and urgency (issue #16);
filled in by the change that adds them."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("clinicians", "0008_portal_evidence"),
    ]

    operations: list = []
