"""Users: sign-up (with a new organization, or joining through an invitation) and email verification
(a signed token, emailed by the Celery task ``accounts.send_verification_email``)."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError
from rest_framework.exceptions import ValidationError

from accounts import keycache
from accounts import problems as p
from accounts.models import ApiKey, Membership, Organization, User
from accounts.services.invitations import invitation_accept, invitation_pending_for
from accounts.services.organizations import organization_create, organization_name_clean
from apiplatform.problems import SERVICE_UNAVAILABLE, ProblemError

logger = logging.getLogger(__name__)

EMAIL_VERIFICATION_SALT = "accounts.email-verification"


@dataclass(frozen=True)
class SignupResult:
    """What a sign-up did. ``user``/``membership`` are None when the address was already registered:
    the caller answers exactly as for a new address (the address's owner gets an email instead)."""

    email: str
    user: User | None = None
    membership: Membership | None = None


@transaction.atomic
def user_signup(
    *,
    email: str,
    password: str,
    organization_name: str = "",
    invitation_token: str = "",
    full_name: str = "",
    ip_address: str | None = None,
) -> SignupResult:
    """User + organization (unique slug) + owner membership, unverified; verification email after
    commit. For an address that already has an account nothing is created and its owner is emailed
    instead ("someone tried to sign up with your address"), so the answer cannot tell whether an
    address is registered; an unverified sign-up older than ``UNVERIFIED_SIGNUP_TTL`` no longer holds
    its address (it is deleted, and this sign-up proceeds).

    With ``invitation_token`` the user joins the inviting organization instead (the invitation must
    be pending and for this email address, which the token proves: it counts as verified)."""
    email = User.objects.normalize_email(email).lower()
    candidate = User(email=email, full_name=full_name)
    try:
        validate_password(password, user=candidate)
    except DjangoValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    if invitation_token:
        if not invitation_pending_for(token=invitation_token, email=email):
            raise ProblemError(p.INVITATION_INVALID)
    else:
        organization_name = organization_name_clean(organization_name, field="organization_name")
    existing = User.objects.select_for_update().filter(email__iexact=email).first()
    if existing is not None and _signup_expired(existing):
        _user_delete_unverified(existing)
        existing = None
    if existing is not None:
        if invitation_token:  # the token's holder owns the mailbox: telling them is no leak
            raise ValidationError({"email": "an account with this email address already exists: log in"})
        make_password(password)  # the same work as creating an account
        _signup_attempt_queue(user_id=existing.pk)
        return SignupResult(email=email)
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password, full_name=full_name)
    except IntegrityError:  # a concurrent sign-up for the same address won
        return SignupResult(email=email)
    if invitation_token:
        membership = invitation_accept(token=invitation_token, user=user, ip_address=ip_address)
        return SignupResult(email=email, user=user, membership=membership)
    organization = organization_create(name=organization_name, owner=user, ip_address=ip_address)
    email_verification_queue(user_id=user.pk)
    membership = Membership.objects.select_related("organization").get(user=user, organization=organization)
    return SignupResult(email=email, user=user, membership=membership)


def _signup_expired(user: User) -> bool:
    ttl = timedelta(seconds=settings.ACCOUNTS["UNVERIFIED_SIGNUP_TTL"])
    return user.email_verified_at is None and not user.is_staff and user.date_joined < timezone.now() - ttl


def _user_delete_unverified(user: User) -> None:
    """Delete an expired, unverified sign-up and the organizations it created that nobody else
    belongs to (with their keys, invitations and audit events)."""
    for organization in Organization.objects.filter(created_by=user):
        if not organization.memberships.exclude(user=user).exists():
            # The keys go with the organization: tell the key cache, after commit, at a newer version.
            gone = list(ApiKey.objects.filter(organization=organization).values_list("key_id", "version"))
            for key_id, version in gone:
                transaction.on_commit(functools.partial(keycache.publish_deleted, key_id, version + 1))
            organization.delete()
    user.delete()


def users_purge_unverified() -> int:
    """Delete every unverified sign-up older than ``UNVERIFIED_SIGNUP_TTL`` (task
    ``accounts.purge_unverified_signups``, hourly): nobody keeps an address they never proved.
    Returns the number of users deleted."""
    cutoff = timezone.now() - timedelta(seconds=settings.ACCOUNTS["UNVERIFIED_SIGNUP_TTL"])
    stale = User.objects.filter(email_verified_at__isnull=True, is_staff=False, date_joined__lt=cutoff)
    ids = list(stale.values_list("pk", flat=True))
    deleted = 0
    for user_id in ids:
        with transaction.atomic():
            user = User.objects.select_for_update().filter(pk=user_id).first()
            if user is not None and _signup_expired(user):
                _user_delete_unverified(user)
                deleted += 1
    return deleted


def _signup_attempt_queue(*, user_id: int) -> None:
    from accounts import tasks  # the tasks module imports this one

    transaction.on_commit(lambda: tasks.send_signup_attempt_email.delay(user_id), robust=True)


def signup_attempt_email_send(*, user_id: int) -> bool:
    """Tell the owner of a registered address that someone tried to sign up with it."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    send_mail(
        subject="Someone tried to sign up to Candlestack with your email address",
        message=(
            "Someone (perhaps you) tried to create a Candlestack account with this email address, "
            "which already has one. Nothing was changed.\n\n"
            f"If it was you, log in instead: POST {base}/v1/account/token. If it was not you, you "
            "can ignore this email.\n"
        ),
        from_email=None,
        recipient_list=[user.email],
    )
    return True


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
            "Welcome to Candlestack.\n\nConfirm your email address by opening this link:\n"
            f"{base}/verify-email#{token}\n\n"
            "(The code after # stays in your browser.) Or confirm it with this token:\n"
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
