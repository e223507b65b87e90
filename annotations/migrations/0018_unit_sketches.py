"""Sketches that do not depend on a query's length: signs of unit(x) - c, and |unit(x) - c|.

0017's sketches were signs of x - mean(x). Real embeddings are non-negative with a common
mean about 17x longer than a unit-length query (the page's mean of several examples), so a
query's signs were the mean's and the sketch pass ranked at random. Each model's centre
becomes the mean of its first windows at unit length, and every window is sketched again
in place, with the residual's length that the pass's cosine estimate needs
(``annotations.search.sketch``). The unique index is dropped while the rows are rewritten
and built once after, carrying the new column.
"""

from django.db import migrations, models

# The first 100,000 windows of each model, as a new model's first writer takes its first
# windows (annotations.embedding_store.sketch_center).
UNIT_CENTERS = """
UPDATE annotations_embeddingmodel m SET sketch_center = (
  SELECT avg(l2_normalize(first.embedding::vector))::halfvec FROM (
    SELECT w.embedding FROM annotations_window w WHERE w.model_id = m.id ORDER BY w.id LIMIT 100000
  ) first
);
"""
RESKETCH = """
UPDATE annotations_window w
SET sketch = binary_quantize(l2_normalize(w.embedding::vector) - m.sketch_center::vector)::varbit,
    sketch_norm = l2_distance(l2_normalize(w.embedding::vector), m.sketch_center::vector)
FROM annotations_embeddingmodel m WHERE m.id = w.model_id;
"""


class Migration(migrations.Migration):
    dependencies = [("annotations", "0017_window_sketches")]

    operations = [
        migrations.RemoveConstraint(model_name="window", name="one_window_per_start"),
        migrations.AddField(model_name="window", name="sketch_norm", field=models.FloatField(null=True)),
        migrations.RunSQL(UNIT_CENTERS + RESKETCH, migrations.RunSQL.noop),
        migrations.AlterField(model_name="window", name="sketch_norm", field=models.FloatField()),
        migrations.AddConstraint(
            model_name="window",
            constraint=models.UniqueConstraint(
                fields=("recording", "model", "start_s"),
                include=("id", "deployment", "started_at", "sketch", "sketch_norm"),
                name="one_window_per_start",
            ),
        ),
    ]
