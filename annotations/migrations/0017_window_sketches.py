"""Sign sketches of every window, and one_window_per_start carrying them.

A filtered search ranks the windows it may return by the Hamming distance between
one-bit-per-dimension sketches, read from the unique index alone, and compares only the
best of them exactly. Existing windows are sketched in place against their model's mean
embedding; windows written later, against that same centre (``embedding_store``).
"""

import pgvector.django.halfvec
from django.db import migrations, models

import annotations.models

SKETCH_EXISTING_WINDOWS = """
UPDATE annotations_embeddingmodel m SET sketch_center = (
  SELECT avg(w.embedding) FROM annotations_window w WHERE w.model_id = m.id
) WHERE m.sketch_center IS NULL;
UPDATE annotations_window w SET sketch = binary_quantize(w.embedding - m.sketch_center)
FROM annotations_embeddingmodel m WHERE m.id = w.model_id;
"""


class Migration(migrations.Migration):
    dependencies = [("annotations", "0016_label_position")]

    operations = [
        migrations.AddField(
            model_name="embeddingmodel",
            name="sketch_center",
            field=pgvector.django.halfvec.HalfVectorField(blank=True, null=True),
        ),
        migrations.AddField(model_name="window", name="sketch", field=annotations.models.SketchField(null=True)),
        migrations.RunSQL(SKETCH_EXISTING_WINDOWS, migrations.RunSQL.noop),
        migrations.AlterField(model_name="window", name="sketch", field=annotations.models.SketchField()),
        migrations.RemoveConstraint(model_name="window", name="one_window_per_start"),
        migrations.AddConstraint(
            model_name="window",
            constraint=models.UniqueConstraint(
                fields=("recording", "model", "start_s"),
                include=("id", "deployment", "started_at", "sketch"),
                name="one_window_per_start",
            ),
        ),
    ]
