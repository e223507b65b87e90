"""Search indexes over reduced vectors (annotations.search_reduction): each index now lives
on a table of its own. The full-dimension indexes are dropped; until a worker rebuilds them
(queued at worker start, ``request_wanted_builds``), searches take the sketch path."""

from django.db import migrations, models


def retire_full_dimension_indexes(apps, schema_editor):
    SearchIndex = apps.get_model("annotations", "SearchIndex")
    for row in SearchIndex.objects.exclude(index_name=""):
        schema_editor.execute(f'DROP INDEX IF EXISTS "{row.index_name}"')
    SearchIndex.objects.update(index_name="", max_window_id=0, windows=0, status="queued", build_started_at=None)


class Migration(migrations.Migration):
    dependencies = [("annotations", "0026_window_score_deployment")]

    operations = [
        migrations.AddField("searchindex", "vector_table", models.CharField(blank=True, max_length=63)),
        migrations.AddField("searchindex", "reduction", models.BinaryField(null=True)),
        migrations.AddField("searchindex", "vectors_written", models.BigIntegerField(default=0)),
        migrations.RunPython(retire_full_dimension_indexes, migrations.RunPython.noop),
    ]
