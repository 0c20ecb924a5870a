"""Permissions: API-key scopes (public API) and organization roles (management API)."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from accounts import problems as p
from accounts.principal import SCOPE_MARKET_DATA_READ, KeyPrincipal
from apiplatform.problems import ProblemError


class HasKeyScopes(BasePermission):
    """The API key (``request.auth``, a KeyPrincipal) must carry every scope in
    ``view.required_scopes`` (default: this class's ``required_scopes``)."""

    required_scopes: tuple[str, ...] = ()

    def has_permission(self, request, view) -> bool:
        principal = request.auth
        if not isinstance(principal, KeyPrincipal):
            return False
        for scope in getattr(view, "required_scopes", None) or self.required_scopes:
            if scope not in principal.scopes:
                raise ProblemError(p.API_KEY_INSUFFICIENT_SCOPE, extra={"required_scope": scope})
        return True


class HasMarketDataRead(HasKeyScopes):
    """Public market-data endpoints: the key must have ``market_data:read``."""

    required_scopes = (SCOPE_MARKET_DATA_READ,)
