"""The housekeeping of runs moved from ingestion to the jobs app (``ingestion.housekeeping`` →
``jobs.housekeeping``): its beat row follows, task and name (``ingestion: housekeeping (hourly)`` →
``jobs: housekeeping (hourly)``, so ``setup_schedules`` does not create a second one), keeping the
operator's schedule and enabled flag; touching ``PeriodicTasks`` makes a running DatabaseScheduler
reload. (Messages already queued under the old name still run: apiplatform.jobs.tasks keeps a
deprecated alias.)"""

from django.db import migrations
from django_celery_beat.utils import now

TASKS = {"ingestion.housekeeping": "jobs.housekeeping"}
NAMES = {"ingestion: housekeeping (hourly)": "jobs: housekeeping (hourly)"}


def rename(apps, tasks: dict[str, str], names: dict[str, str]) -> int:
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    changed = 0
    for old, new in tasks.items():
        changed += PeriodicTask.objects.filter(task=old).update(task=new)
    for old, new in names.items():
        if not PeriodicTask.objects.filter(name=new).exists():  # names are unique
            changed += PeriodicTask.objects.filter(name=old).update(name=new)
    if changed:
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": now()})
    return changed


def forwards(apps, schema_editor):
    rename(apps, TASKS, NAMES)


def backwards(apps, schema_editor):
    rename(apps, {new: old for old, new in TASKS.items()}, {new: old for old, new in NAMES.items()})


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0004_jobrun"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
