"""IngestionRun moved to the jobs app as ``JobRun`` (``apiplatform.jobs``): removed from ingestion's
migration state only; the table ``ingestion_ingestionrun`` and its rows stay, now owned by
``jobs/0004``."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0003_move_deadletter_to_jobs"),
        ("jobs", "0004_jobrun"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="IngestionRun")],
            database_operations=[],
        ),
    ]
