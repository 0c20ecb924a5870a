"""The API-key lifecycle: create, revoke, rotate (the old key overlaps the new one for a while), and the
flush of the "last used" times recorded in Redis. Key state is published to Redis after commit."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from accounts import keycache, keyformat, origins, principal
from accounts import problems as p
from accounts.models import ApiKey, Membership, Organization, Role, User
from accounts.names import inert_name
from accounts.services.audit import audit_record
from apiplatform import redis_access
from apiplatform.problems import ProblemError

logger = logging.getLogger(__name__)


def _clean_scopes(scopes: list[str] | None, kind: str) -> list[str]:
    if scopes is None:
        return [principal.SCOPE_MARKET_DATA_READ]
    bad = sorted(set(scopes) - set(principal.KEY_SCOPES))
    if bad:
        raise ValidationError({"scopes": f"unknown or not grantable to API keys: {', '.join(bad)}"})
    if not scopes:
        raise ValidationError({"scopes": "at least one scope is required"})
    if kind == keyformat.KIND_BROWSER:
        not_read_only = sorted(set(scopes) - set(principal.BROWSER_KEY_SCOPES))
        if not_read_only:
            raise ValidationError(
                {
                    "scopes": "browser keys are read-only; not grantable to them: "
                    f"{', '.join(not_read_only)} (use a secret key from a server)"
                }
            )
    return sorted(set(scopes))


def _clean_origins(allowed_origins: list[str] | None, kind: str) -> list[str]:
    if kind != keyformat.KIND_BROWSER:
        if allowed_origins:
            raise ValidationError(
                {"allowed_origins": "only browser keys have allowed origins (secret keys refuse browsers)"}
            )
        return []
    if not allowed_origins:
        raise ValidationError({"allowed_origins": "a browser key needs at least one allowed origin"})
    out: list[str] = []
    for value in allowed_origins:
        try:
            origin = origins.normalise(value)
        except origins.InvalidOrigin as exc:
            raise ValidationError({"allowed_origins": str(exc)}) from None
        if origin not in out:
            out.append(origin)
    return out


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
    kind: str = keyformat.KIND_SECRET,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    allowed_ips: list[str] | None = None,
    allowed_origins: list[str] | None = None,
    rotated_from: ApiKey | None = None,
    ip_address: str | None = None,
    audit: bool = True,
) -> tuple[ApiKey, str]:
    """Create a key; returns ``(row, full_key)``. The full key exists only in this return value.

    ``kind="browser"`` makes a browser key (``cs_pub_…``): read-only scopes only, at least one
    ``allowed_origins`` entry (accounts/origins.py); secret keys take no origins."""
    if environment not in ("live", "test"):
        raise ValidationError({"environment": "must be 'live' or 'test'"})
    if kind not in keyformat.KINDS:
        raise ValidationError({"type": "must be 'secret' or 'browser'"})
    if (
        environment == "live"
        and created_by is not None
        and rotated_from is None
        and created_by.email_verified_at is None
    ):
        raise ProblemError(
            p.EMAIL_UNVERIFIED, "Creating a live API key needs a verified email address (test keys do not)."
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "must be in the future"})
    active = ApiKey.objects.filter(organization=organization, revoked_at__isnull=True).count()
    if active >= settings.ACCOUNTS["MAX_KEYS_PER_ORGANIZATION"]:
        raise ValidationError({"name": "this organization has reached its maximum number of API keys"})
    clean_scopes, clean_ips = _clean_scopes(scopes, kind), _clean_ips(allowed_ips)
    clean_origins = _clean_origins(allowed_origins, kind)
    for _ in range(5):
        key_id, full_key = keyformat.generate_key(environment, kind=kind)
        if not ApiKey.objects.filter(key_id=key_id).exists():
            break
    else:  # pragma: no cover - 62**12 ids
        raise RuntimeError("could not allocate a key id")
    api_key = ApiKey.objects.create(
        organization=organization,
        name=name.strip() or "API key",
        key_id=key_id,
        environment=environment,
        kind=kind,
        prefix=keyformat.display_prefix(environment, key_id, kind),
        secret_hash=keyformat.hash_key(full_key),
        scopes=clean_scopes,
        allowed_ips=clean_ips,
        allowed_origins=clean_origins,
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
            data={
                "prefix": api_key.prefix,
                "name": api_key.name,
                "scopes": clean_scopes,
                "type": kind,
                **({"allowed_origins": clean_origins} if clean_origins else {}),
            },
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
def api_keys_revoke_created_by(
    *, organization: Organization, user: User, actor: User | None, reason: str, ip_address: str | None = None
) -> list[ApiKey]:
    """Revoke every unrevoked key ``user`` created in ``organization`` (offboarding); each is audited
    and published to Redis after commit, like a revocation by hand."""
    now = timezone.now()
    api_keys = list(
        ApiKey.objects.select_for_update()
        .filter(organization=organization, created_by=user, revoked_at__isnull=True)
        .order_by("id")
    )
    for api_key in api_keys:
        ApiKey.objects.filter(pk=api_key.pk).update(
            revoked_at=now, revoked_by=actor, version=F("version") + 1
        )
        api_key.refresh_from_db()
        audit_record(
            organization=organization,
            actor=actor,
            action="key.revoked",
            target_type="api_key",
            target_id=api_key.key_id,
            data={"prefix": api_key.prefix, "name": api_key.name, "reason": reason, "created_by": user.email},
            ip_address=ip_address,
        )
        _publish_after_commit(api_key.key_id)
    return api_keys


@transaction.atomic
def api_keys_transfer(
    *, organization: Organization, from_user: User, to_user: User, actor: User, ip_address: str | None = None
) -> list[ApiKey]:
    """Hand the unrevoked keys ``from_user`` created in ``organization`` to ``to_user`` (they become
    the keys' creator, so they leave with that member later). Audited per key."""
    api_keys = list(
        ApiKey.objects.select_for_update()
        .filter(organization=organization, created_by=from_user, revoked_at__isnull=True)
        .order_by("id")
    )
    for api_key in api_keys:
        ApiKey.objects.filter(pk=api_key.pk).update(created_by=to_user)
        api_key.created_by = to_user
        audit_record(
            organization=organization,
            actor=actor,
            action="key.transferred",
            target_type="api_key",
            target_id=api_key.key_id,
            data={"prefix": api_key.prefix, "from": from_user.email, "to": to_user.email},
            ip_address=ip_address,
        )
    return api_keys


@transaction.atomic
def api_key_rotate(
    *,
    api_key: ApiKey,
    actor: User | None = None,
    old_key_expires_at: datetime | None = None,
    old_key_expires_in: int | None = None,
    ip_address: str | None = None,
) -> tuple[ApiKey, str, ApiKey]:
    """Issue a replacement with the same name, scopes, IPs, environment and expiry; the old key keeps
    working until ``old_key_expires_at`` or ``old_key_expires_in`` seconds from now (0: stops now;
    default now + 24 h; at most ``ROTATION_MAX_OVERLAP_SECONDS``; never later than its own expiry).
    Returns ``(new_key, new_full_key, old_key)``.

    An expired key cannot be rotated (``409 key-already-expired``): its replacement would outlive it.
    A key has at most one live successor: while the replacement of an earlier rotation is neither
    revoked nor expired, this answers ``409 key-already-rotated`` with its ``successor_key_id``.
    The row lock serialises concurrent rotations of one key, so exactly one of them succeeds."""
    old = ApiKey.objects.select_for_update(of=("self",)).select_related("organization").get(pk=api_key.pk)
    if old.revoked_at is not None:
        raise ProblemError(p.KEY_ALREADY_REVOKED)
    now = timezone.now()
    if old.expires_at is not None and old.expires_at <= now:
        raise ProblemError(p.KEY_ALREADY_EXPIRED)
    successor = (
        ApiKey.objects.filter(rotated_from=old, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by("-id")
        .first()
    )
    if successor is not None:
        raise ProblemError(
            p.KEY_ALREADY_ROTATED,
            f"This key was already rotated: its replacement is {successor.prefix}.",
            extra={"successor_key_id": successor.key_id},
        )
    max_overlap = int(settings.ACCOUNTS["ROTATION_MAX_OVERLAP_SECONDS"])
    if old_key_expires_in is not None:
        if not 0 <= old_key_expires_in <= max_overlap:
            raise ValidationError({"old_key_expires_in": f"must be between 0 and {max_overlap} seconds"})
        old_key_expires_at = now + timedelta(seconds=old_key_expires_in)
    elif old_key_expires_at is None:
        old_key_expires_at = now + timedelta(seconds=settings.ACCOUNTS["ROTATION_OVERLAP_SECONDS"])
    elif old_key_expires_at < now:
        raise ValidationError({"old_key_expires_at": "must not be in the past"})
    if old_key_expires_at > now + timedelta(seconds=max_overlap):
        raise ValidationError(
            {"old_key_expires_at": f"must be at most {max_overlap} seconds from now (the longest overlap)"}
        )
    if old.expires_at is not None:
        old_key_expires_at = min(old_key_expires_at, old.expires_at)
    new, full_key = api_key_create(
        organization=old.organization,
        name=old.name,
        created_by=actor,
        environment=old.environment,
        kind=old.kind,
        scopes=list(old.scopes),
        expires_at=old.expires_at,  # a rotation never extends a key's life
        allowed_ips=list(old.allowed_ips),
        allowed_origins=list(old.allowed_origins),
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


def api_key_report_leaked(*, key: str, source: str = "", ip_address: str | None = None) -> bool:
    """Someone (a secret scanner, a stranger) reports ``key`` as published: if it is an unrevoked
    secret key, revoke it at once, audit it and email the organization's owners after commit.

    Returns whether a key was revoked, for tests and logs only: the endpoint answers the same either
    way, so it tells nobody whether a string is a real key. Browser keys (``cs_pub_…``) are public by
    design and are left alone. ``source`` (where it was found, as the reporter says) goes to the audit
    log, never into the owners' email: it is text a stranger chose."""
    try:
        parsed = keyformat.parse_key(key.strip())
    except keyformat.MalformedKey:
        return False
    if parsed.kind != keyformat.KIND_SECRET:
        return False
    with transaction.atomic():
        api_key = (
            ApiKey.objects.select_for_update(of=("self",))
            .select_related("organization")
            .filter(key_id=parsed.key_id, kind=parsed.kind, environment=parsed.environment)
            .first()
        )
        if api_key is None or not hmac.compare_digest(api_key.secret_hash, keyformat.hash_key(parsed.full)):
            return False
        if api_key.revoked_at is not None:
            return False
        ApiKey.objects.filter(pk=api_key.pk).update(
            revoked_at=timezone.now(), revoked_by=None, version=F("version") + 1
        )
        audit_record(
            organization=api_key.organization,
            actor=None,
            action="key.revoked",
            target_type="api_key",
            target_id=api_key.key_id,
            data={"prefix": api_key.prefix, "name": api_key.name, "reason": "leaked", "source": source[:500]},
            ip_address=ip_address,
        )
        _publish_after_commit(api_key.key_id)
        api_key_pk = api_key.pk
        transaction.on_commit(lambda: _queue_leak_email(api_key_pk), robust=True)
    logger.warning("API key %s reported as leaked and revoked", api_key.prefix)
    return True


def _queue_leak_email(api_key_pk: int) -> None:
    from accounts import tasks  # the tasks module imports this one

    tasks.send_leaked_key_email.delay(api_key_pk)


def api_key_leak_notify(*, api_key_pk: int) -> int:
    """Email the owners of the key's organization that it was reported as published and revoked.
    Returns the number of recipients."""
    api_key = ApiKey.objects.select_related("organization").filter(pk=api_key_pk).first()
    if api_key is None:
        return 0
    owners = sorted(
        Membership.objects.filter(organization_id=api_key.organization_id, role=Role.OWNER).values_list(
            "user__email", flat=True
        )
    )
    if not owners:
        return 0
    send_mail(
        subject=f"Candlestack API key {api_key.prefix} was published and has been revoked",
        message=(
            f"The API key {api_key.prefix} (named {inert_name(api_key.name)!r}) of your organization "
            f"{inert_name(api_key.organization.name)!r} was reported as published (for example in a public "
            "code repository) and has been revoked: requests with it are refused.\n\n"
            "Create a new key in your account, put it where the old one was, and check where the old "
            "one was copied. The audit log of your organization records the report.\n"
        ),
        from_email=None,
        recipient_list=owners,
    )
    return len(owners)


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
        # the "default" connection does not decode replies: hash fields arrive as bytes
        key_id = raw_key_id.decode() if isinstance(raw_key_id, bytes) else raw_key_id
        updated += (
            ApiKey.objects.filter(key_id=key_id).exclude(last_used_at__gte=seen).update(last_used_at=seen)
        )
    client.delete(processing)
    return updated
