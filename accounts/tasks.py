"""Celery tasks of the accounts app.

``accounts.flush_key_last_used`` copies the "last used" times that the authentication path records
in Redis (at most once a minute per key per web process, piggy-backed on a cache refresh, so never
a database write per request) into ``ApiKey.last_used_at``. Scheduled every minute by the data
migration ``accounts/0004_last_used_schedule`` (editable in the admin: Periodic tasks). The
management API also reads the unflushed Redis value, so ``last_used_at`` is current there anyway.
"""

from __future__ import annotations

from accounts import services
from ingestion.taskbase import project_task


@project_task(
    name="accounts.flush_key_last_used", soft_time_limit=50, time_limit=60, max_retries=0, dead_letter=False
)
def flush_key_last_used(self) -> int:
    return services.api_key_last_used_flush()
