"""Users: sign-up (with a new organization, or joining through an invitation) and email verification
(a signed token, emailed by the Celery task ``accounts.send_verification_email``)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError
from rest_framework.exceptions import ValidationError

from accounts import problems as p
from accounts.models import Membership, User
from accounts.services.invitations import invitation_accept
from accounts.services.organizations import organization_create
from apiplatform.problems import SERVICE_UNAVAILABLE, ProblemError

logger = logging.getLogger(__name__)

EMAIL_VERIFICATION_SALT = "accounts.email-verification"


@transaction.atomic
def user_signup(
    *,
    email: str,
    password: str,
    organization_name: str = "",
    invitation_token: str = "",
    full_name: str = "",
    ip_address: str | None = None,
) -> tuple[User, Membership]:
    """User + organization (unique slug) + owner membership; verification email after commit.

    With ``invitation_token`` the user joins the inviting organization instead (the invitation
    must be pending and for this email address; the address counts as verified)."""
    email = User.objects.normalize_email(email).lower()
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "an account with this email address already exists"})
    candidate = User(email=email, full_name=full_name)
    try:
        validate_password(password, user=candidate)
    except DjangoValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password, full_name=full_name)
    except IntegrityError:
        raise ValidationError({"email": "an account with this email address already exists"}) from None
    if invitation_token:
        membership = invitation_accept(token=invitation_token, user=user, ip_address=ip_address)
        return user, membership
    organization = organization_create(name=organization_name, owner=user, ip_address=ip_address)
    email_verification_queue(user_id=user.pk)
    return user, Membership.objects.select_related("organization").get(user=user, organization=organization)


def email_verification_token(*, user: User) -> str:
    return signing.dumps({"u": user.pk, "e": user.email}, salt=EMAIL_VERIFICATION_SALT, compress=True)


def email_verification_queue(*, user_id: int) -> None:
    """Queue the verification email once the current transaction commits (Celery task
    ``accounts.send_verification_email``). A broker that is down is logged, not raised: the account
    exists either way and the user can ask again (``POST /v1/account/verify-email/resend``)."""
    from accounts import tasks  # the tasks module imports this one

    transaction.on_commit(lambda: tasks.send_verification_email.delay(user_id), robust=True)


def email_verification_resend(*, user: User) -> bool:
    """Queue another verification email at once (the caller is told if that failed); False if
    the address is already verified."""
    from accounts import tasks  # the tasks module imports this one

    if user.email_verified_at is not None:
        return False
    try:
        tasks.send_verification_email.delay(user.pk)
    except OperationalError as exc:
        logger.error("could not queue the verification email of user %s: %s", user.pk, exc)
        raise ProblemError(SERVICE_UNAVAILABLE, "The email could not be queued; try again later.") from exc
    return True


def email_verification_send(*, user_id: int) -> bool:
    """Send the verification email now; False (nothing sent) if the user is gone, inactive or
    already verified."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or user.email_verified_at is not None:
        return False
    token = email_verification_token(user=user)
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    send_mail(
        subject="Verify your Candlestack email address",
        # The token goes in a POST body, never in a URL: URLs end up in access logs and histories.
        message=(
            "Welcome to Candlestack.\n\nConfirm your email address with this token:\n"
            f"{token}\n\n"
            f"curl -X POST {base}/v1/account/verify-email "
            f"-H 'Content-Type: application/json' -d '{{\"token\": \"{token}\"}}'\n"
        ),
        from_email=None,
        recipient_list=[user.email],
    )
    return True


@transaction.atomic
def user_verify_email(*, token: str) -> User:
    max_age = settings.ACCOUNTS["EMAIL_VERIFICATION_MAX_AGE"]
    try:
        data = signing.loads(token, salt=EMAIL_VERIFICATION_SALT, max_age=max_age)
    except signing.BadSignature:
        raise ProblemError(p.VERIFICATION_INVALID) from None
    user = User.objects.select_for_update().filter(pk=data.get("u"), is_active=True).first()
    if user is None or user.email != data.get("e"):
        raise ProblemError(p.VERIFICATION_INVALID)
    if user.email_verified_at is None:
        user.email_verified_at = timezone.now()
        user.save(update_fields=["email_verified_at"])
    return user
