"""The run record moves here from ingestion (``IngestionRun`` → ``JobRun``) without moving its rows:
this creates the model in the migration state only (its table, ``ingestion_ingestionrun``, and
indexes stay as they are; ``ingestion/0004`` removes it from ingestion's state). The content type
moves with it (``ingestion.ingestionrun`` → ``jobs.jobrun``) and so do the codenames of its
permissions, so the permissions granted on runs keep working."""

import django.utils.timezone
from django.db import migrations, models

ACTIONS = ("add", "change", "delete", "view")


def move(apps, old: tuple[str, str], new: tuple[str, str], verbose_name: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    if ContentType.objects.filter(app_label=new[0], model=new[1]).exists():
        return
    content_type = ContentType.objects.filter(app_label=old[0], model=old[1]).first()
    if content_type is None:
        return
    content_type.app_label, content_type.model = new
    content_type.save(update_fields=["app_label", "model"])
    for action in ACTIONS:
        Permission.objects.filter(content_type=content_type, codename=f"{action}_{old[1]}").update(
            codename=f"{action}_{new[1]}", name=f"Can {action} {verbose_name}"
        )


def move_content_type(apps, schema_editor):
    move(apps, ("ingestion", "ingestionrun"), ("jobs", "jobrun"), "job run")


def move_content_type_back(apps, schema_editor):
    move(apps, ("jobs", "jobrun"), ("ingestion", "ingestionrun"), "ingestion run")


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("ingestion", "0003_move_deadletter_to_jobs"),
        ("jobs", "0003_rename_beat_tasks"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="JobRun",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("job", models.CharField(help_text="Job name: the task's name, e.g. <app>.<task>.", max_length=100)),
                        ("task_id", models.CharField(blank=True, db_index=True, default="", max_length=255)),
                        ("started_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        ("duration_ms", models.PositiveIntegerField(blank=True, null=True)),
                        ("calls", models.PositiveIntegerField(default=0, help_text="Upstream HTTP calls made.")),
                        ("rows_written", models.PositiveBigIntegerField(default=0)),
                        ("rejects", models.PositiveIntegerField(default=0, help_text="Input rows rejected by validation.")),
                        ("outcome", models.CharField(choices=[("running", "running"), ("success", "success"), ("partial", "partial (some rows rejected or some calls failed)"), ("failed", "failed"), ("abandoned", "abandoned (worker lost before finishing)")], default="running", max_length=16)),
                        ("error", models.TextField(blank=True, default="")),
                        ("details", models.JSONField(blank=True, default=dict)),
                    ],
                    options={
                        "db_table": "ingestion_ingestionrun",
                        "ordering": ["-started_at"],
                        "indexes": [
                            models.Index(fields=["job", "-started_at"], name="ingestion_run_job_started"),
                            models.Index(fields=["outcome", "-started_at"], name="ingestion_run_outcome_started"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]
