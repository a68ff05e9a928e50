# Units in field names: a safety bound's target is in mmHg, as a goal's is
# (Goal.target_systolic_mmhg). The API keeps its field names (target_systolic, target_diastolic).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('clinicians', '0005_rename_appointment_to_visit'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='safetybounds',
            name='bounds_targets_within_hard_limits',
        ),
        migrations.RenameField(
            model_name='safetybounds',
            old_name='target_systolic',
            new_name='target_systolic_mmhg',
        ),
        migrations.RenameField(
            model_name='safetybounds',
            old_name='target_diastolic',
            new_name='target_diastolic_mmhg',
        ),
        migrations.AddConstraint(
            model_name='safetybounds',
            constraint=models.CheckConstraint(condition=models.Q(('target_systolic_mmhg__gte', 110), ('target_systolic_mmhg__lte', 160), ('target_diastolic_mmhg__gte', 60), ('target_diastolic_mmhg__lte', 100)), name='bounds_targets_within_hard_limits'),
        ),
    ]
