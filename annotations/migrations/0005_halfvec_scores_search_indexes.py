"""Storage for a season's scale.

- Embeddings become ``halfvec`` (float16), kept inline in the row (``STORAGE PLAIN``): a
  1024-d halfvec is 2 KB, just over PostgreSQL's TOAST threshold, and out-of-line values
  cost an extra lookup per row in every exact scan. Existing rows are converted in place.
- Windows carry their project, deployment and start time, so filters need no joins.
- The per-model HNSW indexes over ``vector`` give way to per-project ones (SearchIndex),
  built by a worker.
- WindowScore holds every window's stored classifier scores.
"""

import django.contrib.postgres.fields
import django.db.models.deletion
import pgvector.django.halfvec
from django.db import migrations, models

import annotations.models

# The HNSW indexes of one kind, by name: over vector per model before, over halfvec per project after.
DROP_MODEL_INDEXES = """
DO $$
DECLARE name text;
BEGIN
  FOR name IN SELECT indexname FROM pg_indexes WHERE indexname LIKE 'window_embedding_hnsw_model_%' LOOP
    EXECUTE format('DROP INDEX IF EXISTS %I', name);
  END LOOP;
END $$;
"""

BACKFILL_WINDOWS = """
UPDATE annotations_window w
SET project_id = d.project_id, deployment_id = d.id,
    started_at = r.started_at + w.start_s * interval '1 second'
FROM annotations_recording r JOIN annotations_deployment d ON d.id = r.deployment_id
WHERE r.id = w.recording_id
"""

# One statement: the table is rewritten once, with the new type and storage together.
TO_HALFVEC = (
    "ALTER TABLE annotations_window ALTER COLUMN embedding TYPE halfvec USING embedding::halfvec, "
    "ALTER COLUMN embedding SET STORAGE PLAIN"
)
TO_VECTOR = DROP_MODEL_INDEXES.replace("window_embedding_hnsw_model_%", "window_hnsw_p%") + (
    "ALTER TABLE annotations_window ALTER COLUMN embedding TYPE vector USING embedding::vector, "
    "ALTER COLUMN embedding SET STORAGE EXTERNAL"
)

# Scores go with their window or classifier. Statement triggers, not foreign keys: a
# foreign key check per row would lock every window row a million-row COPY refers to.
SCORE_CLEANUP = """
CREATE FUNCTION delete_window_scores() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM annotations_windowscore s USING removed WHERE s.window_id = removed.id;
  RETURN NULL;
END $$;
CREATE TRIGGER window_scores_go_with_windows AFTER DELETE ON annotations_window
  REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION delete_window_scores();
CREATE FUNCTION delete_classifier_scores() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM annotations_windowscore s USING removed WHERE s.classifier_id = removed.id;
  RETURN NULL;
END $$;
CREATE TRIGGER window_scores_go_with_classifiers AFTER DELETE ON annotations_classifier
  REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION delete_classifier_scores();
-- A fixed pseudo-random order of each output's windows, for unbiased samples (the bins queue).
CREATE INDEX window_score_sample ON annotations_windowscore
  (classifier_id, output_index, hashint8(window_id)) INCLUDE (score);
"""
DROP_SCORE_CLEANUP = """
DROP TRIGGER window_scores_go_with_windows ON annotations_window;
DROP TRIGGER window_scores_go_with_classifiers ON annotations_classifier;
DROP FUNCTION delete_window_scores();
DROP FUNCTION delete_classifier_scores();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0004_search_results_and_file_fingerprints"),
    ]

    operations = [
        migrations.RunSQL(DROP_MODEL_INDEXES, migrations.RunSQL.noop),
        migrations.AddField(
            model_name="window",
            name="project",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="annotations.project",
            ),
        ),
        migrations.AddField(
            model_name="window",
            name="deployment",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="annotations.deployment",
            ),
        ),
        migrations.AddField(model_name="window", name="started_at", field=models.DateTimeField(null=True)),
        migrations.RunSQL(BACKFILL_WINDOWS, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="window",
            name="project",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="annotations.project",
            ),
        ),
        migrations.AlterField(
            model_name="window",
            name="deployment",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="annotations.deployment",
            ),
        ),
        migrations.AlterField(
            model_name="window",
            name="recording",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="windows",
                to="annotations.recording",
            ),
        ),
        migrations.AlterField(
            model_name="window",
            name="model",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="windows",
                to="annotations.embeddingmodel",
            ),
        ),
        migrations.RunSQL(
            TO_HALFVEC,
            TO_VECTOR,
            state_operations=[
                migrations.AlterField(
                    model_name="window", name="embedding", field=pgvector.django.halfvec.HalfVectorField()
                )
            ],
        ),
        migrations.AddIndex(
            model_name="window",
            index=models.Index(fields=["project", "model", "id"], name="window_project_model_id"),
        ),
        migrations.AddField(
            model_name="classifier",
            name="scoring_status",
            field=models.CharField(
                blank=True,
                choices=[("queued", "Queued"), ("running", "Running"), ("done", "Done"), ("failed", "Failed")],
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="classifier", name="windows_to_score", field=models.PositiveIntegerField(default=0)
        ),
        migrations.AddField(model_name="classifier", name="windows_scored", field=models.PositiveIntegerField(default=0)),
        migrations.AddField(
            model_name="classifierlabel",
            name="score_histogram",
            field=django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), null=True, size=None),
        ),
        migrations.CreateModel(
            name="WindowScore",
            fields=[
                ("pk", models.CompositePrimaryKey("classifier_id", "output_index", "window_id", serialize=False)),
                ("output_index", models.PositiveSmallIntegerField()),
                ("score", annotations.models.RealField()),
                (
                    "classifier",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="annotations.classifier",
                    ),
                ),
                (
                    "window",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="annotations.window",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["classifier", "output_index", "score"], name="window_score_ranking")
                ],
            },
        ),
        migrations.RunSQL(SCORE_CLEANUP, DROP_SCORE_CLEANUP),
        migrations.CreateModel(
            name="SearchIndex",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("index_name", models.CharField(blank=True, max_length=63)),
                ("max_window_id", models.BigIntegerField(default=0)),
                ("windows", models.BigIntegerField(default=0)),
                (
                    "status",
                    models.CharField(
                        choices=[("queued", "Queued"), ("running", "Running"), ("done", "Done"), ("failed", "Failed")],
                        default="queued",
                        max_length=16,
                    ),
                ),
                ("error", models.TextField(blank=True)),
                ("build_started_at", models.DateTimeField(null=True)),
                ("build_seconds", models.FloatField(null=True)),
                (
                    "model",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="annotations.embeddingmodel"
                    ),
                ),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="search_indexes",
                        to="annotations.project",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("project", "model"), name="one_search_index_per_model")
                ],
            },
        ),
    ]
