"""Dead letters say which app's task failed: the new ``app`` column, filled for existing rows from
the first part of the task name (the two marketdata jobs that ran under ``ingestion.*`` names
belong to marketdata)."""

from django.db import migrations, models

MOVED_TO_MARKETDATA = ("ingestion.refresh_screener", "ingestion.maintain_partitions")


def fill_app(apps, schema_editor):
    DeadLetter = apps.get_model("jobs", "DeadLetter")
    for letter in DeadLetter.objects.filter(app="").only("pk", "task_name").iterator():
        name = letter.task_name
        app = "marketdata" if name in MOVED_TO_MARKETDATA else name.split(".", 1)[0]
        DeadLetter.objects.filter(pk=letter.pk).update(app=app[:100])


class Migration(migrations.Migration):
    dependencies = [("jobs", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="deadletter",
            name="app",
            field=models.CharField(
                blank=True, default="", help_text="Label of the Django app that owns the task.", max_length=100
            ),
        ),
        migrations.RunPython(fill_app, migrations.RunPython.noop),
    ]
