"""Beat rows follow the tasks that moved from ingestion to marketdata, so a running beat is not left
calling the old names; touching ``PeriodicTasks`` makes a running DatabaseScheduler reload. (Messages
already queued under the old names still run: marketdata.tasks keeps deprecated aliases.)"""

from django.db import migrations
from django_celery_beat.utils import now

RENAMED = {
    "ingestion.refresh_screener": "marketdata.refresh_screener",
    "ingestion.maintain_partitions": "marketdata.maintain_partitions",
}


def rename(apps, mapping: dict[str, str]) -> int:
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    changed = 0
    for old, new in mapping.items():
        changed += PeriodicTask.objects.filter(task=old).update(task=new)
    if changed:
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": now()})
    return changed


def forwards(apps, schema_editor):
    rename(apps, RENAMED)


def backwards(apps, schema_editor):
    rename(apps, {new: old for old, new in RENAMED.items()})


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0002_deadletter_app"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
