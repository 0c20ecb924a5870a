"""The periodic jobs of accounts, collected by `apiplatform.jobs.schedules` for setup_schedules.

The last-used flush was first registered by the data migration ``accounts/0004_last_used_schedule``;
it keeps the same PeriodicTask name, so an existing row is kept, not doubled."""

from __future__ import annotations

from apiplatform.jobs.schedules import Schedule

SCHEDULES: tuple[Schedule, ...] = (
    Schedule(
        "accounts: flush API-key last-used times (every minute)",
        "accounts.flush_key_last_used",
        every_seconds=60,
        expire_seconds=55,
        description="Copies the API keys' last-used times recorded in Redis to the database.",
    ),
    Schedule(
        "accounts: purge ended sessions (daily)",
        "accounts.purge_sessions",
        crontab={"minute": "23", "hour": "3"},
        description="Deletes login sessions that ended (logout, reuse, 30-day end) more than 30 days ago.",
    ),
    Schedule(
        "accounts: purge unverified sign-ups (hourly)",
        "accounts.purge_unverified_signups",
        crontab={"minute": "17"},
        description="Deletes sign-ups whose email address was not verified within UNVERIFIED_SIGNUP_TTL.",
    ),
)
