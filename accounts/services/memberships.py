"""Memberships and roles: adding members, changing their role, removing them (and members leaving).
Only owners may touch the owner role (``roles.check_owner_rule``), and an organization always keeps
at least one owner.

Offboarding (a member removed, or leaving) takes the member's access with it in the same
transaction: the API keys the member created in the organization are revoked (unless an owner
transfers them to another member in the same request) and every pending invitation the member sent
there is withdrawn. See docs/accounts.md, "Offboarding"."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from accounts import problems as p
from accounts import roles
from accounts.models import ApiKey, Invitation, Membership, Organization, Role, User
from accounts.services.api_keys import api_keys_revoke_created_by, api_keys_transfer
from accounts.services.audit import audit_record
from apiplatform.problems import ProblemError


@dataclass
class Offboarded:
    """What removing a member took away (or handed over): shown in the API's response."""

    membership: Membership
    revoked_keys: list[ApiKey] = field(default_factory=list)
    transferred_keys: list[ApiKey] = field(default_factory=list)
    withdrawn_invitations: list[Invitation] = field(default_factory=list)


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
    *,
    membership: Membership,
    actor: User,
    actor_role: str,
    transfer_keys_to: int | None = None,
    ip_address: str | None = None,
) -> Offboarded:
    """Remove a member (owner, admin): their keys in the organization are revoked and their pending
    invitations withdrawn, all in this transaction. ``transfer_keys_to`` (a membership id of the same
    organization; owners only) hands the member's active keys to that member instead of revoking them."""
    roles.require_permission(actor_role, roles.MEMBERS_MANAGE)
    return _offboard(
        membership=membership,
        actor=actor,
        actor_role=actor_role,
        transfer_keys_to=transfer_keys_to,
        ip_address=ip_address,
        action="member.removed",
    )


@transaction.atomic
def membership_leave(
    *, membership: Membership, transfer_keys_to: int | None = None, ip_address: str | None = None
) -> Offboarded:
    """The member leaves the organization on their own: the same offboarding as a removal."""
    return _offboard(
        membership=membership,
        actor=membership.user,
        actor_role=membership.role,
        transfer_keys_to=transfer_keys_to,
        ip_address=ip_address,
        action="member.left",
    )


def _offboard(
    *,
    membership: Membership,
    actor: User,
    actor_role: str,
    transfer_keys_to: int | None,
    ip_address: str | None,
    action: str,
) -> Offboarded:
    # Lock the organization's memberships: no concurrent removal of the last owner, and no key or
    # invitation of this member slips past while the member is being removed.
    list(Membership.objects.select_for_update().filter(organization_id=membership.organization_id))
    membership.refresh_from_db()
    if action == "member.removed":
        roles.check_owner_rule(actor_role=actor_role, old_role=membership.role, new_role=None)
    if membership.role == Role.OWNER and _owner_count(membership.organization_id) <= 1:
        raise ProblemError(p.LAST_OWNER)
    organization, user = membership.organization, membership.user
    result = Offboarded(membership=membership)
    if transfer_keys_to is not None:
        heir = _key_heir(membership=membership, actor_role=actor_role, heir_id=transfer_keys_to)
        result.transferred_keys = api_keys_transfer(
            organization=organization, from_user=user, to_user=heir.user, actor=actor, ip_address=ip_address
        )
    result.revoked_keys = api_keys_revoke_created_by(
        organization=organization, user=user, actor=actor, reason=action, ip_address=ip_address
    )
    result.withdrawn_invitations = _withdraw_invitations_sent_by(
        organization=organization, user=user, actor=actor, reason=action, ip_address=ip_address
    )
    audit_record(
        organization=organization,
        actor=actor,
        action=action,
        target_type="membership",
        target_id=membership.pk,
        data={
            "email": user.email,
            "role": membership.role,
            "revoked_keys": [k.prefix for k in result.revoked_keys],
            "transferred_keys": [k.prefix for k in result.transferred_keys],
            "withdrawn_invitations": [i.pk for i in result.withdrawn_invitations],
        },
        ip_address=ip_address,
    )
    # A queryset delete leaves the instance (and its id) intact for the response.
    Membership.objects.filter(pk=membership.pk).delete()
    return result


def _key_heir(*, membership: Membership, actor_role: str, heir_id: int) -> Membership:
    if actor_role != Role.OWNER:
        raise ProblemError(
            p.ROLE_FORBIDDEN,
            "Only an owner may transfer a member's API keys.",
            extra={"required_permission": "owner"},
        )
    heir = (
        Membership.objects.select_related("user")
        .filter(pk=heir_id, organization_id=membership.organization_id)
        .exclude(pk=membership.pk)
        .first()
    )
    if heir is None:
        raise ValidationError({"transfer_keys_to": "must be the id of another member of this organization"})
    if not roles.has_permission(heir.role, roles.KEYS_MANAGE):
        raise ValidationError({"transfer_keys_to": f"a {heir.role} cannot manage API keys"})
    return heir


def _withdraw_invitations_sent_by(
    *, organization: Organization, user: User, actor: User, reason: str, ip_address: str | None
) -> list[Invitation]:
    now = timezone.now()
    pending = list(
        Invitation.objects.select_for_update()
        .filter(
            organization=organization,
            invited_by=user,
            accepted_at__isnull=True,
            revoked_at__isnull=True,
            expires_at__gt=now,
        )
        .order_by("id")
    )
    for invitation in pending:
        invitation.revoked_at = now
        invitation.save(update_fields=["revoked_at"])
        audit_record(
            organization=organization,
            actor=actor,
            action="invitation.revoked",
            target_type="invitation",
            target_id=invitation.pk,
            data={"email": invitation.email, "reason": reason, "invited_by": user.email},
            ip_address=ip_address,
        )
    return pending
