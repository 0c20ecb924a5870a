"""The management API's JWTs, bound to a session (docs/accounts.md, "Sessions").

Every access and refresh token carries ``sid``, the id of its :class:`accounts.models.Session`.
:class:`SessionJWTAuthentication` accepts an access token only while that session is live (not
revoked, before its absolute end, user active): one indexed query that also loads the user, the one
simplejwt's own class makes anyway. So logout, logout-everywhere, a password change or reset and
reuse detection stop the session's access tokens at once, not ``JWT_ACCESS_MINUTES`` later.
Only the management API (``/v1/account/``) authenticates with JWTs; the public API's key path is
untouched.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.utils import timezone
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.tokens import Token

from accounts.models import User

SESSION_CLAIM = "sid"


class SessionRefreshToken(Token):
    """A refresh token of a session; unlike simplejwt's ``RefreshToken`` it keeps no outstanding-token
    row: the session row is the revocation record (accounts/services/sessions.py redeems it)."""

    token_type = "refresh"  # noqa: S105 - a token type name
    lifetime = settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"]


def session_id_of(token: Token) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(token.get(SESSION_CLAIM, "")))
    except ValueError:
        return None


class SessionJWTAuthentication(JWTAuthentication):
    """simplejwt's JWT authentication plus the session check: an access token without ``sid`` or
    of a session that has ended is ``401 not-authenticated``."""

    def get_user(self, validated_token: Token) -> User:  # type: ignore[override]  # a TypeVar in simplejwt
        sid = session_id_of(validated_token)
        user_id = validated_token.get(settings.SIMPLE_JWT["USER_ID_CLAIM"])
        if sid is None or user_id is None:
            raise InvalidToken("Token carries no session; log in again.")
        user = User.objects.filter(
            pk=user_id,
            is_active=True,
            sessions__id=sid,
            sessions__revoked_at__isnull=True,
            sessions__expires_at__gt=timezone.now(),
        ).first()
        if user is None:
            raise AuthenticationFailed("The session has ended; log in again.", code="session_ended")
        return user
