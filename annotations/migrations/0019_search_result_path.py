"""A saved search remembers how its results were found, and whether the index's answer was rescued."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotations', '0018_unit_sketches'),
    ]

    operations = [
        migrations.AddField(
            model_name='searchrecord',
            name='result_path',
            field=models.CharField(blank=True, default='', max_length=16),
        ),
        migrations.AddField(
            model_name='searchrecord',
            name='result_rescued',
            field=models.BooleanField(default=False),
        ),
    ]
