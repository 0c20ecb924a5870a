"""Sessions of the management API: logins that can end (docs/accounts.md, "Sessions").

A login starts a :class:`accounts.models.Session`. Its refresh tokens form one family: each redeem
(``POST token/refresh``) atomically swaps the session's one valid refresh-token id (``refresh_jti``)
for a new one, so of concurrent redemptions of one token exactly one gets a new pair. Presenting a
refresh token of the family that is no longer the valid one (already redeemed: stolen, replayed, or
a lost race) ends the whole session (reuse detection): the valid refresh token and every access
token of the session stop working (accounts/session_auth.py). A session never outlives
``ACCOUNTS["SESSION_MAX_DAYS"]`` from its login: token expiries are capped at its end, and a
refresh cannot move it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.tokens import AccessToken, Token
from rest_framework_simplejwt.utils import datetime_to_epoch

from accounts import problems as p
from accounts.models import Session, User
from accounts.session_auth import SESSION_CLAIM, SessionRefreshToken, session_id_of
from apiplatform.problems import ProblemError

logger = logging.getLogger(__name__)

#: How long an ended session (revoked, or past its end) is kept (who logged in when, and why it ended)
#: before ``sessions_purge`` deletes it.
ENDED_SESSION_RETENTION = timedelta(days=30)


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    access_expires_in: int
    session_expires_at: datetime

    def as_dict(self) -> dict:
        return {
            "access": self.access,
            "refresh": self.refresh,
            "token_type": "Bearer",
            "access_expires_in": self.access_expires_in,
            "session_expires_at": self.session_expires_at,
        }


def _capped(token: Token, *, now: datetime, lifetime: timedelta, end: datetime) -> datetime:
    expires = min(now + lifetime, end)
    token.set_iat(at_time=now)
    token["exp"] = datetime_to_epoch(expires)
    return expires


def _pair(*, session: Session, refresh_jti: str, now: datetime) -> TokenPair:
    user_id = str(session.user_id)
    claim = settings.SIMPLE_JWT["USER_ID_CLAIM"]
    refresh = SessionRefreshToken()
    refresh["jti"] = refresh_jti
    refresh[claim] = user_id
    refresh[SESSION_CLAIM] = str(session.id)
    _capped(refresh, now=now, lifetime=settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"], end=session.expires_at)
    access = AccessToken()
    access[claim] = user_id
    access[SESSION_CLAIM] = str(session.id)
    access_end = _capped(
        access, now=now, lifetime=settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"], end=session.expires_at
    )
    return TokenPair(
        access=str(access),
        refresh=str(refresh),
        access_expires_in=max(0, int((access_end - now).total_seconds())),
        session_expires_at=session.expires_at,
    )


def session_start(*, user: User, ip_address: str | None = None) -> TokenPair:
    """A new session for ``user`` (who has just proved who they are) and its first token pair."""
    now = timezone.now()
    session = Session.objects.create(
        id=uuid.uuid4(),
        user=user,
        refresh_jti=uuid.uuid4().hex,
        created_at=now,
        expires_at=now + timedelta(days=settings.ACCOUNTS["SESSION_MAX_DAYS"]),
        ip_address=ip_address,
    )
    return _pair(session=session, refresh_jti=session.refresh_jti, now=now)


def _end(queryset, reason: str) -> int:
    return queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now(), revoke_reason=reason)


def session_refresh(*, refresh: str) -> TokenPair:
    """Redeem ``refresh`` for a new pair (rotation). Raises ``not-authenticated`` for a token that is
    not a valid refresh token (bad signature, expired, wrong type) and ``session-ended`` for one whose
    session has ended, or that was already redeemed — which ends its session (reuse detection)."""
    try:
        token = SessionRefreshToken(refresh)  # type: ignore[arg-type]  # simplejwt decodes a str
    except TokenError as exc:  # malformed, bad signature, expired, not a refresh token
        raise InvalidToken(str(exc)) from None
    sid = session_id_of(token)
    jti = str(token.get("jti", ""))
    if sid is None:  # a refresh token from before sessions existed
        raise ProblemError(p.SESSION_ENDED)
    now = timezone.now()
    new_jti = uuid.uuid4().hex
    # The redeem is this one UPDATE: PostgreSQL re-checks the WHERE clause of a row another
    # transaction has just updated, so of concurrent redemptions exactly one matches.
    redeemed = Session.objects.filter(
        pk=sid, refresh_jti=jti, revoked_at__isnull=True, expires_at__gt=now
    ).update(refresh_jti=new_jti, refreshed_at=now)
    if not redeemed:
        session = Session.objects.filter(pk=sid).first()
        if session is not None and session.revoked_at is None and session.refresh_jti != jti:
            _end(Session.objects.filter(pk=sid), Session.EndReason.REUSE)
            logger.warning("refresh token reuse: session %s of user %s ended", session.pk, session.user_id)
        raise ProblemError(p.SESSION_ENDED)  # reused, revoked, past its end, or user deleted
    session = Session.objects.select_related("user").filter(pk=sid).first()
    if session is None:  # the user was deleted meanwhile
        raise ProblemError(p.SESSION_ENDED)
    if not session.user.is_active:
        _end(Session.objects.filter(pk=sid), Session.EndReason.INACTIVE)
        raise ProblemError(p.SESSION_ENDED)
    return _pair(session=session, refresh_jti=new_jti, now=now)


def session_end(*, session_id: uuid.UUID, user: User) -> bool:
    """Log out: end one session of ``user`` (its refresh token family and access tokens). False if
    it had already ended."""
    return bool(_end(Session.objects.filter(pk=session_id, user=user), Session.EndReason.LOGOUT))


def sessions_end(*, session_ids, reason: str = Session.EndReason.OPERATOR) -> int:
    """End the given sessions (the admin's action); the number that were still live."""
    return _end(Session.objects.filter(pk__in=list(session_ids)), reason)


def sessions_end_all(
    *, user: User, reason: str = Session.EndReason.LOGOUT_ALL, keep: uuid.UUID | None = None
) -> int:
    """End every live session of ``user`` (but ``keep``); the number ended."""
    sessions = Session.objects.filter(user=user)
    if keep is not None:
        sessions = sessions.exclude(pk=keep)
    return _end(sessions, reason)


def sessions_end_everywhere(*, user: User) -> int:
    """ "Log out everywhere" from the portal: end every API session of ``user`` and every portal (Django)
    session: raising ``session_epoch`` changes the hash each Django session of the user carries
    (``User._get_session_auth_hash``), so Django logs them out at their next request. The caller
    keeps its own portal session with ``update_session_auth_hash``. The number of API sessions ended."""
    User.objects.filter(pk=user.pk).update(session_epoch=F("session_epoch") + 1)
    return sessions_end_all(user=user, reason=Session.EndReason.LOGOUT_ALL)


def sessions_purge() -> int:
    """Delete the sessions that ended more than ``ENDED_SESSION_RETENTION`` ago (the daily task
    ``accounts.purge_sessions``): one row per login would otherwise pile up forever."""
    cutoff = timezone.now() - ENDED_SESSION_RETENTION
    deleted, _ = Session.objects.filter(Q(revoked_at__lt=cutoff) | Q(expires_at__lt=cutoff)).delete()
    return deleted
