"""Passwords: change (logged in) and reset by email (docs/accounts.md, "Passwords").

* Change: the current password is checked, the new one must pass Django's validators
  (``AUTH_PASSWORD_VALIDATORS``: length, not common, not only digits, not like the email), and every
  *other* session of the user ends.
* Reset: ``password_reset_request`` answers the same for known and unknown addresses and does the
  same work for both (it queues the Celery task ``accounts.send_password_reset_email`` with the
  address; only the task looks the user up, so neither the answer nor its timing tells whether an
  account exists). The emailed token is Django's password-reset token (``PasswordResetTokenGenerator``):
  signed, expiring after ``PASSWORD_RESET_TIMEOUT`` seconds, and bound to the current password hash,
  so it is single-use (the reset changes the hash) and dies with any later password change. It is
  made when the message is built, so it never sits in the broker, and it is never logged.
  ``password_reset_confirm`` locks the user row, so two concurrent uses of one token cannot both
  succeed; success ends every session of the user.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from kombu.exceptions import OperationalError
from rest_framework.exceptions import ValidationError

from accounts import problems as p
from accounts.models import Session, User
from accounts.services.sessions import sessions_end_all
from apiplatform.problems import ProblemError

logger = logging.getLogger(__name__)

_SEPARATOR = "."  # between the user part and Django's token (neither contains it)


def _validated(password: str, *, user: User, field: str) -> None:
    try:
        validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise ValidationError({field: exc.messages}) from None


@transaction.atomic
def password_change(*, user: User, current_password: str, new_password: str, keep_session=None) -> int:
    """Set a new password after checking the current one; ends every other session of the user
    (``keep_session``: the caller's). Returns the number of sessions ended."""
    user = User.objects.select_for_update().get(pk=user.pk)
    if not user.check_password(current_password):
        raise ValidationError({"current_password": ["is not your current password"]})
    _validated(new_password, user=user, field="new_password")
    user.set_password(new_password)
    user.save(update_fields=["password"])
    return sessions_end_all(user=user, reason=Session.EndReason.PASSWORD_CHANGE, keep=keep_session)


def password_reset_token(*, user: User) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return f"{uid}{_SEPARATOR}{default_token_generator.make_token(user)}"


def password_reset_request(*, email: str) -> None:
    """Queue the reset email for ``email`` whether or not an account has it (the task decides). A
    broker that is down is logged, not raised: the answer must not differ for unknown addresses."""
    from accounts import tasks  # the tasks module imports this one

    try:
        tasks.send_password_reset_email.delay(email.strip().lower())
    except OperationalError as exc:
        logger.error("could not queue a password-reset email: %s", exc)


def password_reset_send(*, email: str) -> bool:
    """Send the reset email now if an active account has this address; False (nothing sent) if not."""
    user = User.objects.filter(email__iexact=email, is_active=True).first()
    if user is None:
        return False
    token = password_reset_token(user=user)
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    minutes = max(1, -(-settings.PASSWORD_RESET_TIMEOUT // 60))  # rounded up
    send_mail(
        subject="Reset your Candlestack password",
        message=(
            "Someone (hopefully you) asked to reset the password of this Candlestack account.\n\n"
            f"Choose a new password here (valid for {minutes} minutes, usable once):\n"
            f"{base}/password/reset/confirm#{token}\n\n"
            "(The code after # stays in your browser.) Or with the API, with this reset token:\n"
            f"{token}\n\n"
            f"curl -X POST {base}/v1/account/password/reset/confirm "
            f"-H 'Content-Type: application/json' "
            f'-d \'{{"token": "{token}", "new_password": "<new password>"}}\'\n\n'
            "Every session of the account is logged out when the password changes. If you did not "
            "ask for this, ignore this email: your password stays as it is.\n"
        ),
        from_email=None,
        recipient_list=[user.email],
    )
    return True


@transaction.atomic
def password_reset_confirm(*, token: str, new_password: str) -> User:
    """Set a new password with a reset token; ends every session of the user."""
    uid, _, user_token = token.partition(_SEPARATOR)
    try:
        user_id = int(force_str(urlsafe_base64_decode(uid)))
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ProblemError(p.PASSWORD_RESET_INVALID) from None
    user = User.objects.select_for_update().filter(pk=user_id, is_active=True).first()
    if user is None or not default_token_generator.check_token(user, user_token):
        raise ProblemError(p.PASSWORD_RESET_INVALID)
    _validated(new_password, user=user, field="new_password")
    user.set_password(new_password)
    fields = ["password"]
    if user.email_verified_at is None:  # the token came by email: the address is the user's
        user.email_verified_at = timezone.now()
        fields.append("email_verified_at")
    user.save(update_fields=fields)
    sessions_end_all(user=user, reason=Session.EndReason.PASSWORD_RESET)
    return user
