"""Organizations: creation (unique slug, the owner's membership) and renaming.

An organization's name travels in the platform's emails (invitations), so it is plain text (the rule
and the inert rendering for emails live in accounts/names.py)."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify
from rest_framework.exceptions import ValidationError

from accounts import names
from accounts.models import Organization, Role, User
from accounts.services.audit import audit_record
from accounts.services.memberships import membership_add


def organization_name_clean(name: str, *, field: str = "name") -> str:
    """The name (as sent), stripped; 400 ``validation-error`` on ``field`` unless it is plain text
    (accounts/names.py: no control characters or line breaks, nothing that looks like an address)."""
    error = names.organization_name_error(name)
    if error is not None:
        raise ValidationError({field: error})
    return name.strip()


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
    name = organization_name_clean(name, field="organization_name")
    if owner is not None:
        _check_organization_cap(owner)
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
    organization.name = organization_name_clean(name)
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


def _check_organization_cap(owner: User) -> None:
    """A user may own at most ``MAX_FREE_ORGANIZATIONS_PER_USER`` organizations they created."""
    cap = int(settings.ACCOUNTS["MAX_FREE_ORGANIZATIONS_PER_USER"])
    owned = Organization.objects.filter(
        created_by=owner, memberships__user=owner, memberships__role=Role.OWNER
    ).count()
    if owned >= cap:
        raise ValidationError(
            {"organization_name": f"you already own {owned} organizations (the limit is {cap})"}
        )
