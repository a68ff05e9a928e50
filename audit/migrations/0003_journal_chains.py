"""Several chains (docs/audit.md, "Chains"): ``chain`` and ``chain_sequence`` on events, one head
row per chain, checkpoints per chain, a PostgreSQL sequence for the journal-wide order, and the
append triggers rewritten for chains. Existing entries become chain 1 at their own sequence
(the version 1 form says exactly that), so they keep verifying unchanged."""

from django.db import migrations, models

from audit import triggers


def uninstall(apps, schema_editor):
    for statement in triggers.uninstall_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


def install(apps, schema_editor):
    for statement in triggers.install_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


def global_sequence(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE SEQUENCE IF NOT EXISTS audit_event_order AS bigint", params=None
        )
        schema_editor.execute(
            "SELECT setval('audit_event_order', coalesce(max(sequence), 0) + 1, false) "
            "FROM audit_auditevent",
            params=None,
        )


def drop_global_sequence(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP SEQUENCE IF EXISTS audit_event_order", params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_triggers")]

    operations = [
        migrations.RunPython(uninstall, install, elidable=False),
        migrations.RemoveConstraint(model_name="chainhead", name="audit_single_chain_head"),
        migrations.AddField(
            model_name="auditevent",
            name="chain",
            field=models.PositiveSmallIntegerField(default=1),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="chain_sequence",
            field=models.PositiveBigIntegerField(null=True),
        ),
        migrations.RunSQL(
            "UPDATE audit_auditevent SET chain_sequence = sequence", migrations.RunSQL.noop
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="chain_sequence",
            field=models.PositiveBigIntegerField(),
        ),
        migrations.AddField(
            model_name="checkpoint",
            name="chain",
            field=models.PositiveSmallIntegerField(default=1),
        ),
        migrations.AlterField(
            model_name="checkpoint",
            name="first_sequence",
            field=models.PositiveBigIntegerField(),
        ),
        migrations.AlterField(
            model_name="checkpoint",
            name="last_sequence",
            field=models.PositiveBigIntegerField(),
        ),
        migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.UniqueConstraint(
                fields=("chain", "chain_sequence"), name="audit_chain_position_unique"
            ),
        ),
        migrations.AddConstraint(
            model_name="chainhead",
            constraint=models.CheckConstraint(
                condition=models.Q(("id__gte", 1), ("id__lte", 64)), name="audit_chain_head_range"
            ),
        ),
        migrations.AddConstraint(
            model_name="checkpoint",
            constraint=models.UniqueConstraint(
                fields=("chain", "first_sequence"), name="audit_checkpoint_chain_first"
            ),
        ),
        migrations.AddConstraint(
            model_name="checkpoint",
            constraint=models.UniqueConstraint(
                fields=("chain", "last_sequence"), name="audit_checkpoint_chain_last"
            ),
        ),
        migrations.RunPython(global_sequence, drop_global_sequence, elidable=False),
        migrations.RunPython(install, uninstall, elidable=False),
    ]
