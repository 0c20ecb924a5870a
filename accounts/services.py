"""Writes of the accounts app: sign-up, organizations, memberships, invitations, API keys, audit.

Every function is keyword-only and does its writes in one transaction. Emails and the publication
of API-key state to Redis happen with ``transaction.on_commit`` so nobody sees uncommitted rows.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
import smtplib
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify
from rest_framework.exceptions import ValidationError

from accounts import keycache, keyformat, principal, roles
from accounts import problems as p
from accounts.models import ApiKey, AuditEvent, Invitation, Membership, Organization, Role, User
from apiplatform import redis_access
from apiplatform.problems import SERVICE_UNAVAILABLE, ProblemError

logger = logging.getLogger(__name__)

EMAIL_VERIFICATION_SALT = "accounts.email-verification"


# --- audit ----------
def audit_record(
    *,
    organization: Organization,
    actor: User | None,
    action: str,
    target_type: str = "",
    target_id: str | int = "",
    data: dict[str, Any] | None = None,
    ip_address: str | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        organization=organization,
        actor=actor,
        actor_label=actor.email if actor is not None else "system",
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        data=data or {},
        ip_address=ip_address,
    )


# --- organizations and sign-up -------------------------------------------------------------------------
def _unique_slug(name: str) -> str:
    base = slugify(name)[:50].strip("-") or "org"
    if not Organization.objects.filter(slug=base).exists():
        return base
    for _ in range(20):
        candidate = f"{base}-{secrets.token_hex(3)}"
        if not Organization.objects.filter(slug=candidate).exists():
            return candidate
    raise RuntimeError("could not find a free organization slug")


@transaction.atomic
def organization_create(
    *, name: str, owner: User | None = None, slug: str | None = None, ip_address: str | None = None
) -> Organization:
    name = name.strip()
    if not name:
        raise ValidationError({"organization_name": "must not be blank"})
    organization = Organization.objects.create(name=name, slug=slug or _unique_slug(name), created_by=owner)
    audit_record(
        organization=organization,
        actor=owner,
        action="organization.created",
        target_type="organization",
        target_id=organization.pk,
        data={"name": name, "slug": organization.slug},
        ip_address=ip_address,
    )
    if owner is not None:
        membership_add(
            organization=organization, user=owner, role=Role.OWNER, actor=owner, ip_address=ip_address
        )
    return organization


@transaction.atomic
def organization_update(
    *, organization: Organization, actor: User, name: str, ip_address: str | None = None
) -> Organization:
    old = organization.name
    organization.name = name.strip()
    organization.save(update_fields=["name"])
    audit_record(
        organization=organization,
        actor=actor,
        action="organization.updated",
        target_type="organization",
        target_id=organization.pk,
        data={"name": [old, organization.name]},
        ip_address=ip_address,
    )
    return organization


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


# --- email verification ----------
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
    from kombu.exceptions import OperationalError

    from accounts import tasks

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
        message=(
            "Welcome to Candlestack.\n\nConfirm your email address by opening this link:\n"
            f"{base}/v1/account/verify-email?token={token}\n\n"
            f"or with: curl -X POST {base}/v1/account/verify-email "
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


# --- memberships ----------
def _require(role: str | None, permission: str) -> None:
    if not roles.has_permission(role, permission):
        raise ProblemError(p.ROLE_FORBIDDEN, extra={"required_permission": permission})


def _check_owner_rule(*, actor_role: str, old_role: str | None, new_role: str | None) -> None:
    """Only owners may create, change or remove owners."""
    touches_owner = Role.OWNER in (old_role, new_role)
    if touches_owner and actor_role != Role.OWNER:
        raise ProblemError(
            p.ROLE_FORBIDDEN,
            "Only an owner may grant, change or remove the owner role.",
            extra={"required_permission": "owner"},
        )


def _owner_count(organization_id: int) -> int:
    return Membership.objects.filter(organization_id=organization_id, role=Role.OWNER).count()


@transaction.atomic
def membership_add(
    *, organization: Organization, user: User, role: str, actor: User | None, ip_address: str | None = None
) -> Membership:
    membership = Membership.objects.create(organization=organization, user=user, role=role)
    audit_record(
        organization=organization,
        actor=actor,
        action="member.added",
        target_type="membership",
        target_id=membership.pk,
        data={"email": user.email, "role": role},
        ip_address=ip_address,
    )
    return membership


@transaction.atomic
def membership_role_change(
    *, membership: Membership, role: str, actor: User, actor_role: str, ip_address: str | None = None
) -> Membership:
    _require(actor_role, roles.MEMBERS_MANAGE)
    if role not in Role.values:
        raise ValidationError({"role": f"must be one of {', '.join(Role.values)}"})
    # Lock the organization's memberships so two concurrent demotions cannot remove the last owner.
    list(Membership.objects.select_for_update().filter(organization_id=membership.organization_id))
    membership.refresh_from_db()
    old = membership.role
    if old == role:
        return membership
    _check_owner_rule(actor_role=actor_role, old_role=old, new_role=role)
    if old == Role.OWNER and _owner_count(membership.organization_id) <= 1:
        raise ProblemError(p.LAST_OWNER)
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        organization=membership.organization,
        actor=actor,
        action="member.role_changed",
        target_type="membership",
        target_id=membership.pk,
        data={"email": membership.user.email, "role": [old, role]},
        ip_address=ip_address,
    )
    return membership


@transaction.atomic
def membership_remove(
    *, membership: Membership, actor: User, actor_role: str, ip_address: str | None = None
) -> None:
    _require(actor_role, roles.MEMBERS_MANAGE)
    list(Membership.objects.select_for_update().filter(organization_id=membership.organization_id))
    membership.refresh_from_db()
    _check_owner_rule(actor_role=actor_role, old_role=membership.role, new_role=None)
    if membership.role == Role.OWNER and _owner_count(membership.organization_id) <= 1:
        raise ProblemError(p.LAST_OWNER)
    audit_record(
        organization=membership.organization,
        actor=actor,
        action="member.removed",
        target_type="membership",
        target_id=membership.pk,
        data={"email": membership.user.email, "role": membership.role},
        ip_address=ip_address,
    )
    membership.delete()


# --- invitations ----------
def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def invitation_create(
    *,
    organization: Organization,
    email: str,
    role: str,
    actor: User,
    actor_role: str,
    ip_address: str | None = None,
) -> tuple[Invitation, str]:
    """A pending invitation and its token (emailed before commit; returned for the caller's tests)."""
    _require(actor_role, roles.INVITATIONS_MANAGE)
    if role not in Role.values:
        raise ValidationError({"role": f"must be one of {', '.join(Role.values)}"})
    _check_owner_rule(actor_role=actor_role, old_role=None, new_role=role)
    email = User.objects.normalize_email(email).lower()
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise ProblemError(p.ALREADY_MEMBER)
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organization=organization,
        email=email,
        role=role,
        token_hash=_token_hash(token),
        invited_by=actor,
        expires_at=timezone.now() + timedelta(seconds=settings.ACCOUNTS["INVITATION_TTL_SECONDS"]),
    )
    audit_record(
        organization=organization,
        actor=actor,
        action="invitation.created",
        target_type="invitation",
        target_id=invitation.pk,
        data={"email": email, "role": role},
        ip_address=ip_address,
    )
    # Sent before the commit, on purpose: a mail server that fails rolls the invitation back (503,
    # nothing created) instead of leaving an invitation nobody received. The token exists only
    # here (the database keeps its hash), so it cannot wait in a queue (see accounts/tasks.py).
    try:
        invitation_send(invitation_id=invitation.pk, token=token)
    except (smtplib.SMTPException, OSError) as exc:
        logger.error("invitation email to %s failed: %s; invitation rolled back", email, exc)
        raise ProblemError(
            SERVICE_UNAVAILABLE,
            "The invitation email could not be sent; nothing was created. Try again later.",
        ) from exc
    return invitation, token


def invitation_send(*, invitation_id: int, token: str) -> None:
    invitation = Invitation.objects.select_related("organization", "invited_by").get(pk=invitation_id)
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    inviter = invitation.invited_by.email if invitation.invited_by else "A Candlestack user"
    send_mail(
        subject=f"You are invited to {invitation.organization.name} on Candlestack",
        message=(
            f"{inviter} invited you to join {invitation.organization.name} as {invitation.role}.\n\n"
            "Sign in (or sign up with this email address) and accept with:\n"
            f"curl -X POST {base}/v1/account/invitations/accept -H 'Authorization: Bearer <access token>' "
            f"-H 'Content-Type: application/json' -d '{{\"token\": \"{token}\"}}'\n\n"
            f"The invitation expires at {invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n"
        ),
        from_email=None,
        recipient_list=[invitation.email],
    )


@transaction.atomic
def invitation_revoke(
    *, invitation: Invitation, actor: User, actor_role: str, ip_address: str | None = None
) -> Invitation:
    _require(actor_role, roles.INVITATIONS_MANAGE)
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.status != "pending":
        raise ProblemError(p.INVITATION_INVALID, f"The invitation is {invitation.status}.")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit_record(
        organization=invitation.organization,
        actor=actor,
        action="invitation.revoked",
        target_type="invitation",
        target_id=invitation.pk,
        data={"email": invitation.email},
        ip_address=ip_address,
    )
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, user: User, ip_address: str | None = None) -> Membership:
    invitation = (
        Invitation.objects.select_for_update().filter(token_hash=_token_hash(token)).select_related().first()
    )
    if invitation is None or invitation.status != "pending" or invitation.email.lower() != user.email.lower():
        raise ProblemError(p.INVITATION_INVALID)
    if Membership.objects.filter(organization_id=invitation.organization_id, user=user).exists():
        raise ProblemError(p.ALREADY_MEMBER)
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    if user.email_verified_at is None:  # the token arrived by email: the address is proven
        user.email_verified_at = invitation.accepted_at
        user.save(update_fields=["email_verified_at"])
    audit_record(
        organization=invitation.organization,
        actor=user,
        action="invitation.accepted",
        target_type="invitation",
        target_id=invitation.pk,
        data={"email": user.email, "role": invitation.role},
        ip_address=ip_address,
    )
    return membership_add(
        organization=invitation.organization,
        user=user,
        role=invitation.role,
        actor=user,
        ip_address=ip_address,
    )


# --- API keys ----------
def _clean_scopes(scopes: list[str] | None) -> list[str]:
    if scopes is None:
        return [principal.SCOPE_MARKET_DATA_READ]
    bad = sorted(set(scopes) - set(principal.KEY_SCOPES))
    if bad:
        raise ValidationError({"scopes": f"unknown or not grantable to API keys: {', '.join(bad)}"})
    if not scopes:
        raise ValidationError({"scopes": "at least one scope is required"})
    return sorted(set(scopes))


def _clean_ips(allowed_ips: list[str] | None) -> list[str]:
    out = []
    for value in allowed_ips or []:
        try:
            out.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise ValidationError({"allowed_ips": f"{value!r} is not an IP address or CIDR range"}) from None
    return out


def _publish_after_commit(key_id: str) -> None:
    keycache.forget_locally(key_id)
    transaction.on_commit(lambda: keycache.publish(key_id))


@transaction.atomic
def api_key_create(
    *,
    organization: Organization,
    name: str,
    created_by: User | None = None,
    environment: str = "live",
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    allowed_ips: list[str] | None = None,
    rotated_from: ApiKey | None = None,
    ip_address: str | None = None,
    audit: bool = True,
) -> tuple[ApiKey, str]:
    """Create a key; returns ``(row, full_key)``. The full key exists only in this return value."""
    if environment not in ("live", "test"):
        raise ValidationError({"environment": "must be 'live' or 'test'"})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "must be in the future"})
    active = ApiKey.objects.filter(organization=organization, revoked_at__isnull=True).count()
    if active >= settings.ACCOUNTS["MAX_KEYS_PER_ORGANIZATION"]:
        raise ValidationError({"name": "this organization has reached its maximum number of API keys"})
    clean_scopes, clean_ips = _clean_scopes(scopes), _clean_ips(allowed_ips)
    for _ in range(5):
        key_id, full_key = keyformat.generate_key(environment)
        if not ApiKey.objects.filter(key_id=key_id).exists():
            break
    else:  # pragma: no cover - 62**12 ids
        raise RuntimeError("could not allocate a key id")
    api_key = ApiKey.objects.create(
        organization=organization,
        name=name.strip() or "API key",
        key_id=key_id,
        environment=environment,
        prefix=keyformat.display_prefix(environment, key_id),
        secret_hash=keyformat.hash_key(full_key),
        scopes=clean_scopes,
        allowed_ips=clean_ips,
        expires_at=expires_at,
        created_by=created_by,
        rotated_from=rotated_from,
    )
    if audit:
        audit_record(
            organization=organization,
            actor=created_by,
            action="key.created",
            target_type="api_key",
            target_id=api_key.key_id,
            data={"prefix": api_key.prefix, "name": api_key.name, "scopes": clean_scopes},
            ip_address=ip_address,
        )
    _publish_after_commit(key_id)
    return api_key, full_key


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor: User | None = None, ip_address: str | None = None) -> ApiKey:
    api_key = ApiKey.objects.select_for_update().select_related("organization").get(pk=api_key.pk)
    if api_key.revoked_at is not None:
        raise ProblemError(p.KEY_ALREADY_REVOKED)
    ApiKey.objects.filter(pk=api_key.pk).update(
        revoked_at=timezone.now(), revoked_by=actor, version=F("version") + 1
    )
    api_key.refresh_from_db()
    audit_record(
        organization=api_key.organization,
        actor=actor,
        action="key.revoked",
        target_type="api_key",
        target_id=api_key.key_id,
        data={"prefix": api_key.prefix, "name": api_key.name},
        ip_address=ip_address,
    )
    _publish_after_commit(api_key.key_id)
    return api_key


@transaction.atomic
def api_key_rotate(
    *,
    api_key: ApiKey,
    actor: User | None = None,
    old_key_expires_at: datetime | None = None,
    ip_address: str | None = None,
) -> tuple[ApiKey, str, ApiKey]:
    """Issue a replacement with the same name, scopes, IPs and environment; the old key keeps
    working until ``old_key_expires_at`` (default now + 24 h; never later than its own expiry).
    Returns ``(new_key, new_full_key, old_key)``."""
    old = ApiKey.objects.select_for_update().select_related("organization").get(pk=api_key.pk)
    if old.revoked_at is not None:
        raise ProblemError(p.KEY_ALREADY_REVOKED)
    now = timezone.now()
    if old_key_expires_at is None:
        old_key_expires_at = now + timedelta(seconds=settings.ACCOUNTS["ROTATION_OVERLAP_SECONDS"])
    if old_key_expires_at < now:
        raise ValidationError({"old_key_expires_at": "must not be in the past"})
    if old.expires_at is not None:
        old_key_expires_at = min(old_key_expires_at, old.expires_at)
    new, full_key = api_key_create(
        organization=old.organization,
        name=old.name,
        created_by=actor,
        environment=old.environment,
        scopes=list(old.scopes),
        expires_at=None,
        allowed_ips=list(old.allowed_ips),
        rotated_from=old,
        audit=False,
    )
    ApiKey.objects.filter(pk=old.pk).update(expires_at=old_key_expires_at, version=F("version") + 1)
    old.refresh_from_db()
    audit_record(
        organization=old.organization,
        actor=actor,
        action="key.rotated",
        target_type="api_key",
        target_id=old.key_id,
        data={
            "prefix": old.prefix,
            "new_prefix": new.prefix,
            "old_key_expires_at": old_key_expires_at.isoformat(),
        },
        ip_address=ip_address,
    )
    _publish_after_commit(old.key_id)
    return new, full_key, old


def api_key_last_used_flush() -> int:
    """Move the "last used" times recorded in Redis into ``ApiKey.last_used_at``.

    The hash is renamed atomically first, so writes that arrive during the flush go to a fresh hash
    and are picked up next time; a crashed flush leaves the renamed hash, which the next run
    processes first. Updates only move ``last_used_at`` forward. Returns the number of keys updated.
    """
    client = redis_access.client("default")
    processing = keycache.last_used_key() + ":flushing"
    if not client.exists(processing):
        try:
            client.rename(keycache.last_used_key(), processing)
        except Exception as exc:  # redis raises ResponseError("no such key") when nothing was used
            if "no such key" in str(exc).lower():
                return 0
            raise
    values = client.hgetall(processing)
    updated = 0
    for raw_key_id, raw_ts in values.items():
        seen = datetime.fromtimestamp(int(raw_ts), tz=UTC)
        key_id = raw_key_id.decode()
        updated += (
            ApiKey.objects.filter(key_id=key_id).exclude(last_used_at__gte=seen).update(last_used_at=seen)
        )
    client.delete(processing)
    return updated
