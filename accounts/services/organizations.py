"""Organizations: creation (unique slug, the owner's membership) and renaming."""

from __future__ import annotations

import secrets

from django.db import transaction
from django.utils.text import slugify
from rest_framework.exceptions import ValidationError

from accounts.models import Organization, Role, User
from accounts.services.audit import audit_record
from accounts.services.memberships import membership_add


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
