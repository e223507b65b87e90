"""Each stored score names its window's deployment, with an index per (classifier, output,
deployment, score): a deployment's review queue reads its own scores in order."""

import django.db.models.deletion
from django.db import migrations, models

# Existing scores take their window's deployment, before the index is built over them.
FILL_DEPLOYMENTS = """
UPDATE annotations_windowscore s SET deployment_id = w.deployment_id
FROM annotations_window w WHERE w.id = s.window_id AND s.deployment_id IS NULL
"""


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0025_search_all_overlapping"),
    ]

    operations = [
        migrations.AddField(
            model_name="windowscore",
            name="deployment",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="annotations.deployment",
            ),
        ),
        migrations.RunSQL(FILL_DEPLOYMENTS, migrations.RunSQL.noop),
        migrations.AddIndex(
            model_name="windowscore",
            index=models.Index(
                fields=["classifier", "output_index", "deployment", "score"], name="window_score_by_deployment"
            ),
        ),
    ]
