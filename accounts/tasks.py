"""Celery tasks of the accounts app.

``accounts.flush_key_last_used`` copies the "last used" times that the authentication path records
in Redis (at most once a minute per key per web process, piggy-backed on a cache refresh, so never
a database write per request) into ``ApiKey.last_used_at``. Scheduled every minute in
``accounts.schedules`` (``manage.py setup_schedules``; editable in the admin: Periodic tasks). The
management API also reads the unflushed Redis value, so ``last_used_at`` is current there anyway.

``accounts.send_verification_email`` sends the email-verification message outside the request:
sign-up answers without waiting for the mail server, and a mail server that is down or refuses
the message (``SMTPException``, network errors) is retried with backoff, then dead-lettered for an
operator (replay from the admin) — the account stays usable and the user can ask for another
message (``POST /v1/account/verify-email/resend``). Only the user id travels through the broker:
the token is derived when the message is built, so no secret sits in a queue.

``accounts.send_password_reset_email`` likewise carries only the email address (queued for known and
unknown addresses alike, so the request cannot tell them apart); the reset token is made when the
message is built.

``accounts.send_signup_attempt_email`` tells the owner of an already registered address that someone
tried to sign up with it (sign-up answers the same either way). ``accounts.purge_unverified_signups``
(hourly) deletes sign-ups never verified within ``UNVERIFIED_SIGNUP_TTL``.

``accounts.send_leaked_key_email`` tells an organization's owners that one of their keys was
reported as published (``POST /v1/keys/revoke-leaked``) and revoked; only the key's row id travels.

Invitation emails are still sent after the invitation commits, in the request: their token exists
only in that request (only its hash is stored), and it must not sit in the broker either.
"""

from __future__ import annotations

import smtplib
from typing import Any

from accounts.services.api_keys import api_key_last_used_flush, api_key_leak_notify
from accounts.services.passwords import password_reset_send
from accounts.services.sessions import sessions_purge
from accounts.services.users import email_verification_send, signup_attempt_email_send, users_purge_unverified
from apiplatform.jobs.base import project_task

# Every email task: a mail server that is down or refuses (SMTPException, network errors) is retried
# with backoff for about an hour, then dead-lettered for an operator.
EMAIL_TASK: dict[str, Any] = {
    "soft_time_limit": 60,
    "time_limit": 90,
    "max_retries": 6,
    "backoff_base": 5.0,
    "backoff_max": 600.0,
    "retry_on": (smtplib.SMTPException, OSError),
}


@project_task(
    name="accounts.flush_key_last_used", soft_time_limit=50, time_limit=60, max_retries=0, dead_letter=False
)
def flush_key_last_used(self) -> int:
    return api_key_last_used_flush()


@project_task(name="accounts.send_verification_email", **EMAIL_TASK)
def send_verification_email(self, user_id: int) -> dict:
    return {"user_id": user_id, "sent": email_verification_send(user_id=user_id)}


@project_task(name="accounts.send_password_reset_email", **EMAIL_TASK)
def send_password_reset_email(self, email: str) -> dict:
    """The password-reset email (accounts/services/passwords.py): only the address travels through
    the broker; the token is made when the message is built. Nothing is sent for an unknown address."""
    return {"sent": password_reset_send(email=email)}


@project_task(
    name="accounts.purge_sessions", soft_time_limit=300, time_limit=360, max_retries=0, dead_letter=False
)
def purge_sessions(self) -> dict:
    """Delete sessions that ended more than 30 days ago (accounts/services/sessions.py)."""
    return {"deleted": sessions_purge()}


@project_task(name="accounts.send_leaked_key_email", **EMAIL_TASK)
def send_leaked_key_email(self, api_key_pk: int) -> dict:
    return {"api_key": api_key_pk, "recipients": api_key_leak_notify(api_key_pk=api_key_pk)}


@project_task(name="accounts.send_signup_attempt_email", **EMAIL_TASK)
def send_signup_attempt_email(self, user_id: int) -> dict:
    return {"user_id": user_id, "sent": signup_attempt_email_send(user_id=user_id)}


@project_task(name="accounts.purge_unverified_signups", soft_time_limit=300, time_limit=330, max_retries=0)
def purge_unverified_signups(self) -> int:
    return users_purge_unverified()
