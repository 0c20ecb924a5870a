"""DeadLetter moves here from ingestion without moving its rows: this creates the model in the
migration state only (its table, ``ingestion_deadletter``, and indexes stay as they are;
``ingestion/0003`` removes it from ingestion's state). The content type moves with it, so the
permissions granted on dead letters keep working."""

import django.utils.timezone
from django.db import migrations, models


def move_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="jobs", model="deadletter").exists():
        ContentType.objects.filter(app_label="ingestion", model="deadletter").update(app_label="jobs")


def move_content_type_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="ingestion", model="deadletter").exists():
        ContentType.objects.filter(app_label="jobs", model="deadletter").update(app_label="ingestion")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("ingestion", "0002_qualityflag"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="DeadLetter",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("task_name", models.CharField(max_length=200)),
                        ("task_id", models.CharField(blank=True, default="", help_text="Last failing task id.", max_length=255)),
                        ("args", models.JSONField(blank=True, default=list)),
                        ("kwargs", models.JSONField(blank=True, default=dict)),
                        ("queue", models.CharField(blank=True, default="", max_length=100)),
                        ("exception_type", models.CharField(blank=True, default="", max_length=200)),
                        ("error", models.TextField(blank=True, default="")),
                        ("traceback", models.TextField(blank=True, default="")),
                        ("retryable", models.BooleanField(default=False, help_text="Whether the last error was retryable (retries ran out) or permanent.")),
                        ("attempts", models.PositiveIntegerField(default=1, help_text="Executions that failed, replays included.")),
                        ("first_failed_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("last_failed_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("status", models.CharField(choices=[("pending", "pending"), ("replayed", "replayed"), ("resolved", "resolved")], default="pending", max_length=16)),
                        ("replay_count", models.PositiveIntegerField(default=0)),
                        ("replayed_at", models.DateTimeField(blank=True, null=True)),
                        ("replay_task_id", models.CharField(blank=True, default="", max_length=255)),
                        ("replay_succeeded_at", models.DateTimeField(blank=True, null=True)),
                        ("resolved_at", models.DateTimeField(blank=True, null=True)),
                        ("note", models.TextField(blank=True, default="")),
                    ],
                    options={
                        "db_table": "ingestion_deadletter",
                        "ordering": ["-last_failed_at"],
                        "indexes": [
                            models.Index(fields=["status", "-last_failed_at"], name="ingestion_dl_status_failed"),
                            models.Index(fields=["task_name", "-last_failed_at"], name="ingestion_dl_task_failed"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]
