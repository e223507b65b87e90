import django.contrib.postgres.fields
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0039_deployment_graphs"),
    ]

    operations = [
        migrations.RenameField(model_name="searchindex", old_name="deployment_graphs_planned", new_name="graphs_planned"),
        migrations.AddField(
            model_name="searchindex",
            name="hour_graphs",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.SmallIntegerField(), blank=True, default=list, size=None
            ),
        ),
        migrations.AddField(
            model_name="searchindex",
            name="local_zones",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(max_length=80), blank=True, default=list, size=None
            ),
        ),
    ]
