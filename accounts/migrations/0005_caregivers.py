"""The caregiver role and their accounts (issue #16): a family member or carer a patient grants
read access to (``patients.caregivers``)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_teams_staff_links_model_owner"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="user",
            name="user_role_valid",
        ),
        migrations.AlterField(
            model_name="user",
            name="role",
            field=models.CharField(
                choices=[
                    ("patient", "Patient"),
                    ("clinician", "Clinician"),
                    ("admin", "Administrator"),
                    ("auditor", "Auditor"),
                    ("model_owner", "Model owner"),
                    ("service", "EHR integration"),
                    ("caregiver", "Caregiver"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "role__in",
                        [
                            "patient",
                            "clinician",
                            "admin",
                            "auditor",
                            "model_owner",
                            "service",
                            "caregiver",
                        ],
                    )
                ),
                name="user_role_valid",
            ),
        ),
    ]
