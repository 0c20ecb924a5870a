"""Memberships and roles: adding members, changing their role, removing them. Only owners may touch
the owner role (``roles.check_owner_rule``), and an organization always keeps at least one owner."""

from __future__ import annotations

from django.db import transaction
from rest_framework.exceptions import ValidationError

from accounts import problems as p
from accounts import roles
from accounts.models import Membership, Organization, Role, User
from accounts.services.audit import audit_record
from apiplatform.problems import ProblemError


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
    roles.require_permission(actor_role, roles.MEMBERS_MANAGE)
    if role not in Role.values:
        raise ValidationError({"role": f"must be one of {', '.join(Role.values)}"})
    # Lock the organization's memberships so two concurrent demotions cannot remove the last owner.
    list(Membership.objects.select_for_update().filter(organization_id=membership.organization_id))
    membership.refresh_from_db()
    old = membership.role
    if old == role:
        return membership
    roles.check_owner_rule(actor_role=actor_role, old_role=old, new_role=role)
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
    roles.require_permission(actor_role, roles.MEMBERS_MANAGE)
    list(Membership.objects.select_for_update().filter(organization_id=membership.organization_id))
    membership.refresh_from_db()
    roles.check_owner_rule(actor_role=actor_role, old_role=membership.role, new_role=None)
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
