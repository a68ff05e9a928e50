"""Reserved for messaging: read receipts and urgency (issue #16);
filled in by the change that adds them: a patient's message with urgent words is flagged
(``is_urgent``, the curated terms found in ``urgent_terms``), only ever a patient's."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("clinicians", "0008_portal_evidence"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="is_urgent",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="message",
            name="urgent_terms",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddConstraint(
            model_name="message",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("is_urgent", False), ("sender_role", "patient"), _connector="OR"
                ),
                name="message_urgent_only_from_patient",
            ),
        ),
    ]
