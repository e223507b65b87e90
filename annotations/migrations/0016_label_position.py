"""Labels get the vocabulary's own order; existing vocabularies keep their alphabetical one."""

from django.db import migrations, models


def number_by_name(apps, schema_editor):
    Label = apps.get_model("annotations", "Label")
    project_ids = Label.objects.values_list("project_id", flat=True).distinct()
    for project_id in project_ids:
        for position, label in enumerate(Label.objects.filter(project_id=project_id).order_by("name")):
            Label.objects.filter(pk=label.pk).update(position=position)


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0015_detection_counts"),
    ]

    operations = [
        migrations.AddField(model_name="label", name="position", field=models.PositiveIntegerField(default=0)),
        migrations.AlterModelOptions(name="label", options={"ordering": ["position", "name"]}),
        migrations.RunPython(number_by_name, migrations.RunPython.noop),
    ]
