"""Reads of the accounts app."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from accounts import keycache
from accounts.models import ApiKey, AuditEvent, Invitation, Membership, Organization, Session


def memberships_of_user(*, user_id: int) -> QuerySet[Membership]:
    return Membership.objects.select_related("organization").filter(user_id=user_id).order_by("id")


def organization_members(*, organization: Organization) -> QuerySet[Membership]:
    return Membership.objects.select_related("user").filter(organization=organization).order_by("id")


def organization_invitations(*, organization: Organization) -> QuerySet[Invitation]:
    """The organization's invitations as the API shows them: withdrawn (revoked) ones are gone."""
    return (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(organization=organization, revoked_at__isnull=True)
        .order_by("-id")
    )


def organization_api_keys(*, organization: Organization) -> QuerySet[ApiKey]:
    return (
        ApiKey.objects.select_related("created_by", "rotated_from")
        .filter(organization=organization)
        .order_by("-id")
    )


def api_keys_with_last_used(api_keys: list[ApiKey]) -> list[ApiKey]:
    """Fill ``last_used_at`` with the newer of the database value and Redis' unflushed value."""
    recent = keycache.last_used_from_redis([k.key_id for k in api_keys])
    for api_key in api_keys:
        seen = recent.get(api_key.key_id)
        if seen is not None and (api_key.last_used_at is None or seen > api_key.last_used_at):
            api_key.last_used_at = seen
    return api_keys


def organization_audit_events(
    *, organization: Organization, before_id: int | None = None, limit: int = 100
) -> list[AuditEvent]:
    qs = AuditEvent.objects.filter(organization=organization).order_by("-id")
    if before_id is not None:
        qs = qs.filter(id__lt=before_id)
    return list(qs[:limit])


def user_sessions_live(*, user_id: int) -> QuerySet[Session]:
    """The user's API sessions that still work, newest first (the portal's sessions page)."""
    return Session.objects.filter(user_id=user_id, revoked_at__isnull=True, expires_at__gt=timezone.now())
