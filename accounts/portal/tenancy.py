"""The portal's tenant scoping, applied once: every organization page resolves the chosen
organization from the session (the organization switcher) among the user's memberships, and checks
the role permission (accounts.roles) the page or action needs. Fails closed: no membership, no page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django_htmx.middleware import HtmxDetails

from accounts import roles, selectors
from accounts.models import Membership, Organization, User
from accounts.portal.errors import error_page

SESSION_KEY = "portal_organization"


@dataclass
class Portal:
    """What every organization page knows: the membership in force and the others (switcher)."""

    membership: Membership
    memberships: list[Membership] = field(default_factory=list)

    @property
    def organization(self) -> Organization:
        return self.membership.organization

    @property
    def role(self) -> str:
        return self.membership.role

    def can(self, permission: str) -> bool:
        return roles.has_permission(self.role, permission)

    @property
    def perms(self) -> dict[str, bool]:
        """Permission name with ``_`` for ``.`` → allowed, for templates (``portal.perms.keys_manage``)."""
        return {p.replace(".", "_"): self.can(p) for p in roles.ALL_PERMISSIONS}


class PortalRequest(HttpRequest):
    """The request an organization page receives (for type checking): a logged-in user, the resolved
    organization (:func:`portal_page`) and django-htmx's details."""

    user: User
    portal: Portal
    htmx: HtmxDetails


def resolve(request: HttpRequest) -> Portal | None:
    """The chosen organization among the user's (session), else the first one; None without any."""
    if request.user.pk is None:
        return None
    memberships = list(selectors.memberships_of_user(user_id=request.user.pk))
    if not memberships:
        return None
    chosen = request.session.get(SESSION_KEY)
    membership = next((m for m in memberships if m.organization_id == chosen), memberships[0])
    if chosen != membership.organization_id:
        request.session[SESSION_KEY] = membership.organization_id
    return Portal(membership=membership, memberships=memberships)


def choose(request: HttpRequest, organization_slug: str) -> bool:
    """Switch the session to one of the user's organizations; False if it is not one of theirs."""
    if request.user.pk is None:
        return False
    for membership in selectors.memberships_of_user(user_id=request.user.pk):
        if membership.organization.slug == organization_slug:
            request.session[SESSION_KEY] = membership.organization_id
            return True
    return False


def account_page(view: Callable) -> Callable:
    """Decorate a page about the user's own account (password, sessions): login required; the
    organization resolved for the header when the user has one (``request.portal`` may be None)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        request.portal = resolve(request)  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapper


def portal_page(
    view: Callable | None = None, *, read: str = roles.ORG_READ, write: str | None = None
) -> Callable:
    """Decorate an organization page: login required (redirect to /login), the organization
    resolved into ``request.portal``, ``read`` needed for GET and ``write`` for POST (a method the
    page does not declare is refused). A permission missing is a 403 page, never a silent no-op."""

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            portal = resolve(request)
            if portal is None:
                return error_page(request, "You do not belong to any organization.", status=404)
            request.portal = portal  # type: ignore[attr-defined]  # the PortalRequest the page sees
            needed = {"GET": read, "HEAD": read, "POST": write}.get(request.method or "")
            if needed is None:
                return error_page(request, "This page does not accept that request.", status=405)
            if not portal.can(needed):
                return error_page(
                    request,
                    f"Your role ({portal.role}) in {portal.organization.name} may not do this "
                    f"(it needs the permission {needed}).",
                    status=403,
                )
            return func(request, *args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate
