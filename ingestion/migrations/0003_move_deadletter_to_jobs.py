"""DeadLetter moved to the jobs app (``apiplatform.jobs``): removed from ingestion's migration state
only; the table ``ingestion_deadletter`` and its rows stay, now owned by ``jobs/0001``."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0002_qualityflag"),
        ("jobs", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="DeadLetter")],
            database_operations=[],
        ),
    ]
