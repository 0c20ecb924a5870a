"""Invitations: a member with ``invitations.manage`` invites an email address to a role; the invitee
accepts with the emailed token (signed in, or while signing up), or the invitation is withdrawn
(``revoked_at`` set: the row stays for the audit log and the admin, but the API no longer shows it,
see ``accounts.selectors.organization_invitations``). Only the token's hash is stored."""

from __future__ import annotations

import hashlib
import logging
import secrets
import smtplib
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from accounts import problems as p
from accounts import roles
from accounts.models import Invitation, Membership, Organization, Role, User
from accounts.names import inert_name
from accounts.services.audit import audit_record
from accounts.services.memberships import membership_add
from apiplatform.problems import SERVICE_UNAVAILABLE, ProblemError

logger = logging.getLogger(__name__)


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
    roles.require_permission(actor_role, roles.INVITATIONS_MANAGE)
    if actor.email_verified_at is None:
        raise ProblemError(p.EMAIL_UNVERIFIED, "Inviting someone needs a verified email address.")
    if role not in Role.values:
        raise ValidationError({"role": f"must be one of {', '.join(Role.values)}"})
    roles.check_owner_rule(actor_role=actor_role, old_role=None, new_role=role)
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
    """The invitation email. Everything a user chose is shown as inert text: the organization's name
    through :func:`inert_name` and in quotes, the inviter's address (verified before they could
    invite) as data, never as a link."""
    invitation = Invitation.objects.select_related("organization", "invited_by").get(pk=invitation_id)
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    org_name = inert_name(invitation.organization.name)
    inviter = inert_name(invitation.invited_by.email) if invitation.invited_by else "A Candlestack user"
    send_mail(
        subject=f'Invitation to the organization "{org_name}" on Candlestack',
        message=(
            f'{inviter} (a verified Candlestack user) invited you to join the organization "{org_name}" '
            f"as {invitation.role}.\n"
            "Candlestack does not check organization names: if you do not expect this invitation, "
            "ignore this email.\n\n"
            "Accept it here (log in, or sign up with this email address):\n"
            f"{base}/invitation#{token}\n\n"
            "(The code after # stays in your browser.) Or with the API, signed in:\n"
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
    """Withdraw a pending invitation: its token stops working and the API no longer shows it."""
    roles.require_permission(actor_role, roles.INVITATIONS_MANAGE)
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


def invitation_pending_for(*, token: str, email: str) -> bool:
    """Whether ``token`` is a pending invitation for ``email`` whose sender may still invite."""
    invitation = Invitation.objects.filter(token_hash=_token_hash(token)).first()
    return (
        invitation is not None
        and invitation.status == "pending"
        and invitation.email.lower() == email.lower()
        and _inviter_may_still_invite(invitation)
    )


def _inviter_may_still_invite(invitation: Invitation) -> bool:
    """An invitation is only as good as its sender: a sender who has left, been removed, or lost the
    right to invite (or to grant this role) since sending it no longer brings anyone in."""
    if invitation.invited_by_id is None:  # the sender's account is gone
        return False
    inviter = Membership.objects.filter(
        organization_id=invitation.organization_id, user_id=invitation.invited_by_id
    ).first()
    if inviter is None or not roles.has_permission(inviter.role, roles.INVITATIONS_MANAGE):
        return False
    return invitation.role != Role.OWNER or inviter.role == Role.OWNER


@transaction.atomic
def invitation_accept(*, token: str, user: User, ip_address: str | None = None) -> Membership:
    invitation = (
        Invitation.objects.select_for_update().filter(token_hash=_token_hash(token)).select_related().first()
    )
    if invitation is None or invitation.status != "pending" or invitation.email.lower() != user.email.lower():
        raise ProblemError(p.INVITATION_INVALID)
    if not _inviter_may_still_invite(invitation):
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
