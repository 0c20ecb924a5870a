"""The team page: members and roles, invitations; change a role, remove a member (what removal
revokes is shown first), invite, withdraw an invitation. Through accounts.services.memberships and
accounts.services.invitations (their rules and audit events); what a role may not do is not offered."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from rest_framework import exceptions as drf

from accounts import roles, selectors
from accounts.authentication import client_ip
from accounts.models import Membership, Role
from accounts.portal.errors import error_page, field_errors, sentence
from accounts.portal.forms import InviteForm, RoleForm, role_choices
from accounts.portal.tenancy import PortalRequest, portal_page
from accounts.services.invitations import invitation_create, invitation_revoke
from accounts.services.memberships import membership_remove, membership_role_change
from apiplatform.problems import ProblemError


def _member(request: PortalRequest, member_id: int) -> Membership | None:
    organization = request.portal.organization
    return selectors.organization_members(organization=organization).filter(pk=member_id).first()


def _page(
    request: PortalRequest, *, form: InviteForm | None = None, message: str = "", status: int = 200
) -> HttpResponse:
    portal = request.portal
    invitations = (
        list(selectors.organization_invitations(organization=portal.organization))
        if portal.can(roles.INVITATIONS_READ)
        else []
    )
    members = list(selectors.organization_members(organization=portal.organization))
    for m in members:  # what the page offers for each member (the services enforce the same rules)
        m.manageable = (  # type: ignore[attr-defined]  # read by the template
            portal.can(roles.MEMBERS_MANAGE)
            and m.user_id != request.user.pk
            and (m.role != Role.OWNER or portal.role == Role.OWNER)
        )
    context = {
        "members": members,
        "invitations": invitations,
        "form": form or InviteForm(actor_role=portal.role),
        "role_choices": role_choices(portal.role),
        "message": message,
    }
    return render(request, "portal/team.html", context, status=status)


@portal_page(read=roles.MEMBERS_READ, write=roles.INVITATIONS_MANAGE)
def team(request: PortalRequest) -> HttpResponse:
    """GET: the page; POST: invite."""
    portal = request.portal
    if request.method != "POST":
        return _page(request)
    form = InviteForm(request.POST, actor_role=portal.role)
    if form.is_valid():
        try:
            invitation_create(
                organization=portal.organization,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=request.user,
                actor_role=portal.role,
                ip_address=client_ip(request),
            )
        except drf.ValidationError as exc:
            field_errors(form, exc)
        except ProblemError as exc:
            return _page(request, form=form, message=sentence(exc), status=exc.status_code)
        else:
            return redirect(reverse("portal:team") + "?invited=1")
    return _page(request, form=form, status=400)


@portal_page(read=roles.MEMBERS_MANAGE, write=roles.MEMBERS_MANAGE)
def member_role(request: PortalRequest, member_id: int) -> HttpResponse:
    portal = request.portal
    membership = _member(request, member_id)
    if membership is None:
        return error_page(request, "No such member in this organization.", status=404)
    if request.method != "POST":
        return redirect("portal:team")
    form = RoleForm(request.POST, actor_role=portal.role)
    if not form.is_valid():
        return _page(request, message="Choose one of the roles offered.", status=400)
    try:
        membership_role_change(
            membership=membership,
            role=form.cleaned_data["role"],
            actor=request.user,
            actor_role=portal.role,
            ip_address=client_ip(request),
        )
    except (ProblemError, drf.ValidationError) as exc:
        return _page(request, message=sentence(exc), status=getattr(exc, "status_code", 400))
    return redirect(reverse("portal:team") + "?role_changed=1")


@portal_page(read=roles.MEMBERS_MANAGE, write=roles.MEMBERS_MANAGE)
def member_remove(request: PortalRequest, member_id: int) -> HttpResponse:
    """GET: what removing the member does (their keys in this organization are listed as revoked by
    the removal); POST: remove."""
    portal = request.portal
    membership = _member(request, member_id)
    if membership is None:
        return error_page(request, "No such member in this organization.", status=404)
    if request.method == "POST":
        try:
            membership_remove(
                membership=membership,
                actor=request.user,
                actor_role=portal.role,
                ip_address=client_ip(request),
            )
        except ProblemError as exc:
            return error_page(request, sentence(exc), status=exc.status_code)
        return redirect(reverse("portal:team") + "?removed=1")
    keys = selectors.organization_api_keys(organization=portal.organization).filter(
        created_by_id=membership.user_id, revoked_at__isnull=True
    )
    template = "portal/member_remove_panel.html" if request.htmx else "portal/member_remove.html"
    return render(request, template, {"member": membership, "keys": list(keys)})


@portal_page(read=roles.INVITATIONS_MANAGE, write=roles.INVITATIONS_MANAGE)
def invitation_withdraw(request: PortalRequest, invitation_id: int) -> HttpResponse:
    portal = request.portal
    invitation = (
        selectors.organization_invitations(organization=portal.organization).filter(pk=invitation_id).first()
    )
    if invitation is None:
        return error_page(request, "No such invitation in this organization.", status=404)
    if request.method != "POST":
        return redirect("portal:team")
    try:
        invitation_revoke(
            invitation=invitation, actor=request.user, actor_role=portal.role, ip_address=client_ip(request)
        )
    except ProblemError as exc:
        return error_page(request, sentence(exc), status=exc.status_code)
    return redirect(reverse("portal:team") + "?withdrawn=1")
