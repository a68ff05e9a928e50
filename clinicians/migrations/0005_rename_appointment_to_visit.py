# One name for visits (issue 12): the model, its choices, its reverse accessor, its index and
# its constraints say "visit". The rows are kept: the table is renamed, not recreated.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('clinicians', '0004_treatment_course'),
        ('patients', '0004_labresult'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RenameModel(old_name='Appointment', new_name='Visit'),
        migrations.AlterField(
            model_name='visit',
            name='patient',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='visits', to='patients.patient'),
        ),
        migrations.RenameIndex(model_name='visit', new_name='visit_series', old_name='appointment_series'),
        migrations.RemoveConstraint(model_name='visit', name='appointment_status_valid'),
        migrations.RemoveConstraint(model_name='visit', name='appointment_source_valid'),
        migrations.RemoveConstraint(model_name='visit', name='one_proposed_appointment_per_patient'),
        migrations.RemoveConstraint(model_name='visit', name='appointment_confirmed_has_when'),
        migrations.AddConstraint(
            model_name='visit',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['proposed', 'confirmed', 'completed', 'cancelled'])), name='visit_status_valid'),
        ),
        migrations.AddConstraint(
            model_name='visit',
            constraint=models.CheckConstraint(condition=models.Q(('source__in', ['cadence', 'clinician'])), name='visit_source_valid'),
        ),
        migrations.AddConstraint(
            model_name='visit',
            constraint=models.UniqueConstraint(condition=models.Q(('status', 'proposed')), fields=('patient',), name='one_proposed_visit_per_patient'),
        ),
        migrations.AddConstraint(
            model_name='visit',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('status__in', ['confirmed', 'completed']), _negated=True), ('confirmed_at__isnull', False), _connector='OR'), name='visit_confirmed_has_when'),
        ),
    ]
