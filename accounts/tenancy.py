"""Tenant scoping for the management API, applied once and failing closed.

Every organization-owned endpoint subclasses :class:`OrganizationScopedView`. After JWT
authentication it resolves the caller's membership:

* ``X-Organization: <slug>`` header -> the caller's membership in that organization, or 404 (the
  same answer whether the organization does not exist or the caller is not a member);
* no header and exactly one membership -> that organization;
* no header and several memberships -> 400 ``organization-required``; none -> 404.

Then it checks the role permission declared for the HTTP method in ``required_permissions``; a
method with a handler but no declared permission is refused (fail closed). Querysets go through
:meth:`scoped` / :meth:`get_scoped_object`, which filter by the resolved organization id, so an
object of another tenant is a 404, exactly like an object that does not exist.

:class:`JWTView` is the base of every management view for a logged-in user; its schema class
(``accounts.schema.ManagementSchema``, ``OrganizationScopedSchema`` here) documents the errors
these bases answer for every operation (401; the tenant's 400/403/404 and the header).
"""

from __future__ import annotations

from typing import TypeVar

from django.db.models import Model, QuerySet
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.views import APIView

from accounts import problems as p
from accounts import roles
from accounts.models import Membership, Organization
from accounts.schema import ORGANIZATION_HEADER, ManagementSchema, OrganizationScopedSchema
from accounts.session_auth import SessionJWTAuthentication
from apiplatform.context import organization_known
from apiplatform.problems import ProblemError

M = TypeVar("M", bound=Model)


def resolve_membership(request) -> Membership:
    user = request.user
    if user is None or not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        raise NotFound()
    memberships = Membership.objects.select_related("organization").filter(user_id=user.pk)
    slug = request.headers.get(ORGANIZATION_HEADER, "").strip()
    if slug:
        membership = memberships.filter(organization__slug=slug).first()
        if membership is None:
            raise NotFound("No organization with this slug among yours.")
        return membership
    found = list(memberships[:2])
    if not found:
        raise NotFound("You do not belong to any organization.")
    if len(found) > 1:
        raise ProblemError(p.ORGANIZATION_REQUIRED)
    return found[0]


class NoStoreMixin:
    """``Cache-Control: no-store`` on every answer, errors included: management answers are private
    and many carry a secret (a token pair, a new or rotated API key), which no browser or proxy
    cache may keep. Set once here, on the bases of every management view."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response


class JWTView(NoStoreMixin, APIView):
    """A management view for a logged-in user (JWT access token of a live session,
    accounts/session_auth.py); its errors are documented by ``accounts.schema.ManagementSchema``."""

    authentication_classes = [SessionJWTAuthentication]
    permission_classes = [IsAuthenticated]
    schema = ManagementSchema()


class OrganizationScopedView(JWTView):
    schema = OrganizationScopedSchema()
    #: HTTP method -> permission name from accounts.roles. Methods left out are refused.
    required_permissions: dict[str, str] = {}

    membership: Membership | None = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        method = request.method.upper()
        if method == "HEAD":
            method = "GET"
        if method == "OPTIONS" or not hasattr(self, request.method.lower()):
            self.membership = resolve_membership(request)
            return
        self.membership = resolve_membership(request)
        organization_known(self.membership.organization_id)
        permission = self.required_permissions.get(method)
        if permission is None or not roles.has_permission(self.membership.role, permission):
            raise ProblemError(p.ROLE_FORBIDDEN, extra={"required_permission": permission or method})

    @property
    def organization(self) -> Organization:
        if self.membership is None:  # fail closed: nothing is served without a resolved tenant
            raise NotFound()
        return self.membership.organization

    @property
    def role(self) -> str:
        return self.membership.role if self.membership is not None else ""

    def scoped(self, queryset: QuerySet[M]) -> QuerySet[M]:
        if self.membership is None:
            return queryset.none()
        return queryset.filter(organization_id=self.membership.organization_id)

    def get_scoped_object(self, queryset: QuerySet[M], **lookup) -> M:
        obj = self.scoped(queryset).filter(**lookup).first()
        if obj is None:
            raise NotFound()
        return obj
