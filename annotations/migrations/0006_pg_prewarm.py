"""pg_prewarm (PostgreSQL contrib): a freshly built search index is read into shared
buffers at once, so the first searches do not fetch it page by page."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("annotations", "0005_halfvec_scores_search_indexes")]

    operations = [migrations.RunSQL("CREATE EXTENSION IF NOT EXISTS pg_prewarm", migrations.RunSQL.noop)]
