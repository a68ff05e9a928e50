"""Reserved for the caregiver role and their accounts (issue #16); filled in by the change that
adds them."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_teams_staff_links_model_owner"),
    ]

    operations: list = []
