"""Sessions and passwords of the management API: logout, logout everywhere, password change and reset
(docs/accounts.md, "Sessions" and "Passwords"). Thin: parse, limit, call a service, shape output."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.response import Response

from accounts import problems as p
from accounts import serializers as s
from accounts.models import Session
from accounts.services.passwords import password_change, password_reset_confirm, password_reset_request
from accounts.services.sessions import session_end, sessions_end_all
from accounts.session_auth import session_id_of
from accounts.tenancy import JWTView
from accounts.views import TAG, PublicAccountView, _limit, _limit_account, _limit_ip
from apiplatform.problems import RATE_LIMITED

RESET_ANSWER = (
    "If an account uses this address, a password-reset email is on its way. The token in it is "
    "valid for a limited time and can be used once."
)


class LogoutView(JWTView):
    @extend_schema(
        operation_id="account_logout",
        tags=[TAG],
        summary="Log out: end this session (its refresh token and its access tokens stop working)",
        description=(
            "Ends the session of the access token sent: its refresh token gets `401 session-ended`, its "
            "access tokens `401 not-authenticated`, at once. Other sessions (other devices) go on. "
            "Logging out a session that already ended is a `401` too (its token no longer works)."
        ),
        request=None,
        responses={204: None},
    )
    def post(self, request):
        session_end(session_id=session_id_of(request.auth), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(JWTView):
    @extend_schema(
        operation_id="account_logout_all",
        tags=[TAG],
        summary="Log out everywhere: end every session of your account, this one included",
        description=(
            "Ends every live session of your user (every device), this one included; "
            "`sessions_ended` counts them. API keys are not affected: revoke them separately."
        ),
        request=None,
        responses={200: s.SessionsEndedOut},
    )
    def post(self, request):
        ended = sessions_end_all(user=request.user, reason=Session.EndReason.LOGOUT_ALL)
        return Response(s.SessionsEndedOut({"sessions_ended": ended}).data)


class PasswordChangeView(JWTView):
    @extend_schema(
        operation_id="account_password_change",
        tags=[TAG],
        summary="Change your password; every other session of your account ends",
        description=(
            "Checks `current_password` (a wrong one is `400 validation-error` on that member) and "
            "the new password against the password rules; this session stays logged in, every "
            "other one ends. Limited per user (`RATE_PASSWORD_CHANGE_USER`, default 5 per hour)."
        ),
        request=s.PasswordChangeIn,
        responses={200: s.SessionsEndedOut, 429: RATE_LIMITED},
    )
    def post(self, request):
        user_key = str(request.user.pk)
        _limit(
            request,
            group="accounts.password-change.user",
            rate=settings.ACCOUNTS["RATE_PASSWORD_CHANGE_USER"],
            key=user_key,
        )
        data = s.PasswordChangeIn(data=request.data)
        data.is_valid(raise_exception=True)
        ended = password_change(
            user=request.user,
            current_password=data.validated_data["current_password"],
            new_password=data.validated_data["new_password"],
            keep_session=session_id_of(request.auth),
        )
        return Response(s.SessionsEndedOut({"sessions_ended": ended}).data)


class PasswordResetView(PublicAccountView):
    @extend_schema(
        operation_id="account_password_reset",
        tags=[TAG],
        summary="Forgot your password: email a single-use reset token (same answer for any address)",
        description=(
            "Always `202` with the same body, whether or not an account uses the address, so the "
            "answer tells nobody which addresses have accounts. The email carries a token for "
            "`POST password/reset/confirm`, valid `PASSWORD_RESET_TIMEOUT` seconds (default 1 "
            "hour) and usable once. Limited per client (`RATE_PASSWORD_RESET_IP`, 10/h) and per "
            "address (`RATE_PASSWORD_RESET_ACCOUNT`, 3/h)."
        ),
        request=s.PasswordResetIn,
        responses={202: s.PasswordResetOut, 429: RATE_LIMITED},
        examples=[OpenApiExample("Reset", value={"email": "ada@example.com"}, request_only=True)],
    )
    def post(self, request):
        _limit_ip(request, "accounts.password-reset.ip", "RATE_PASSWORD_RESET_IP")
        data = s.PasswordResetIn(data=request.data)
        data.is_valid(raise_exception=True)
        email = data.validated_data["email"]
        _limit_account(request, "accounts.password-reset.account", "RATE_PASSWORD_RESET_ACCOUNT", email)
        password_reset_request(email=email)
        return Response(s.PasswordResetOut({"detail": RESET_ANSWER}).data, status=status.HTTP_202_ACCEPTED)


class PasswordResetConfirmView(PublicAccountView):
    @extend_schema(
        operation_id="account_password_reset_confirm",
        tags=[TAG],
        summary="Set a new password with the emailed reset token; every session of the account ends",
        description=(
            "The token from the email of `POST password/reset` works once, for "
            "`PASSWORD_RESET_TIMEOUT` seconds (default 1 hour), and only while the password is the "
            "one it was issued for. On success (`204`) every session of the account ends: log in "
            "with the new password. A weak password is `400 validation-error` and leaves the token "
            "usable. Limited per client (`RATE_PASSWORD_RESET_IP`)."
        ),
        request=s.PasswordResetConfirmIn,
        responses={204: None, 400: p.PASSWORD_RESET_INVALID, 429: RATE_LIMITED},
    )
    def post(self, request):
        _limit_ip(request, "accounts.password-reset-confirm.ip", "RATE_PASSWORD_RESET_IP")
        data = s.PasswordResetConfirmIn(data=request.data)
        data.is_valid(raise_exception=True)
        password_reset_confirm(
            token=data.validated_data["token"], new_password=data.validated_data["new_password"]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
