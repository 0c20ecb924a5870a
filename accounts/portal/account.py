"""The user's own account: password change and reset, sessions ("log out everywhere"). The rules live
in accounts.services.passwords and accounts.services.sessions (the management API's services); the
limits are the API's counters (accounts.portal.limits).

The portal logs in with Django's session, not with an API session (accounts.models.Session). Changing
the password ends every API session and, through Django's session hash (bound to the password hash),
every other portal session of the user at its next request; ``update_session_auth_hash`` keeps the
browser that changed it logged in. "Log out everywhere" does the same without a password change
(``sessions_end_everywhere`` raises the user's ``session_epoch``, mixed into that hash)."""

from __future__ import annotations

import base64
import uuid

import segno
from django.conf import settings
from django.contrib.auth import update_session_auth_hash
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from rest_framework import exceptions as drf

from accounts.authentication import client_ip
from accounts.portal import limits
from accounts.portal.errors import error_page, field_errors, sentence
from accounts.portal.forms import (
    PasswordChangeForm,
    PasswordResetConfirmForm,
    PasswordResetForm,
    TwoFactorForm,
)
from accounts.portal.tenancy import PortalRequest, account_page
from accounts.selectors import user_sessions_live
from accounts.services.passwords import password_change, password_reset_confirm, password_reset_request
from accounts.services.sessions import session_end, sessions_end_everywhere
from accounts.services.two_factor import (
    two_factor_disable,
    two_factor_enabled,
    two_factor_enrol_confirm,
    two_factor_enrol_start,
    two_factor_pending,
)
from apiplatform.problems import ProblemError

RESET_SENT = (
    "If an account uses this address, a password-reset email is on its way. The link in it is valid "
    "for a limited time and works once."
)


def _wait(seconds: int) -> str:
    return f"Too many attempts. Wait {seconds} seconds before trying again."


def _keep_this_session(request: PortalRequest) -> None:
    """The user row changed (password or session epoch): carry this session over to the new hash."""
    request.user.refresh_from_db(fields=["password", "session_epoch"])
    update_session_auth_hash(request, request.user)


@require_http_methods(["GET", "POST"])
@account_page
def password_change_view(request: PortalRequest) -> HttpResponse:
    form = PasswordChangeForm(request.POST or None)
    message, status = "", 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            wait = limits.over_limit(
                request,
                group=limits.PASSWORD_CHANGE_USER,
                rate_setting="RATE_PASSWORD_CHANGE_USER",
                key=str(request.user.pk),
            )
            if wait:
                message, status = _wait(wait), 429
            else:
                try:
                    ended = password_change(
                        user=request.user,
                        current_password=form.cleaned_data["current_password"],
                        new_password=form.cleaned_data["new_password"],
                    )
                except drf.ValidationError as exc:
                    field_errors(form, exc)
                else:
                    _keep_this_session(request)
                    return redirect(reverse("portal:password") + f"?changed=1&ended={ended}")
    context = {
        "form": form,
        "message": message,
        "changed": request.GET.get("changed") == "1",
        "ended": request.GET.get("ended", ""),
    }
    return render(request, "portal/password_change.html", context, status=status)


@require_http_methods(["GET", "POST"])
def password_reset_view(request: HttpRequest) -> HttpResponse:
    """Forgot the password: the same sentence for every address (the service queues the email and
    only its task looks the address up)."""
    form = PasswordResetForm(request.POST or None)
    message, status = "", 200
    if request.method == "POST":
        status = 400
        wait = limits.over_limit(
            request,
            group=limits.PASSWORD_RESET_IP,
            rate_setting="RATE_PASSWORD_RESET_IP",
            key=limits.ip_key(request),
        )
        if wait:
            message, status = _wait(wait), 429
        elif form.is_valid():
            email = form.cleaned_data["email"].strip().lower()
            wait = limits.over_limit(
                request,
                group=limits.PASSWORD_RESET_ACCOUNT,
                rate_setting="RATE_PASSWORD_RESET_ACCOUNT",
                key=email,
            )
            if wait:
                message, status = _wait(wait), 429
            else:
                password_reset_request(email=email)
                return render(request, "portal/password_reset_sent.html", {"sentence": RESET_SENT})
    return render(request, "portal/password_reset.html", {"form": form, "message": message}, status=status)


@require_http_methods(["GET", "POST"])
def password_reset_confirm_view(request: HttpRequest) -> HttpResponse:
    """The reset link's page. The emailed link carries the token after ``#`` (never sent to a server);
    the page's script puts it in the form, the person types the new password."""
    form = PasswordResetConfirmForm(request.POST or None)
    message, status = "", 200
    if request.method == "POST":
        status = 400
        wait = limits.over_limit(
            request,
            group=limits.PASSWORD_RESET_CONFIRM_IP,
            rate_setting="RATE_PASSWORD_RESET_IP",
            key=limits.ip_key(request),
        )
        if wait:
            message, status = _wait(wait), 429
        elif form.is_valid():
            try:
                user = password_reset_confirm(
                    token=form.cleaned_data["token"].strip(), new_password=form.cleaned_data["new_password"]
                )
            except drf.ValidationError as exc:
                field_errors(form, exc)
            except ProblemError as exc:
                message = sentence(exc)
            else:
                return render(request, "portal/password_reset_done.html", {"email": user.email})
    return render(
        request, "portal/password_reset_confirm.html", {"form": form, "message": message}, status=status
    )


@require_http_methods(["GET"])
@account_page
def sessions_view(request: PortalRequest) -> HttpResponse:
    context = {
        "sessions": list(user_sessions_live(user_id=request.user.pk)),
        "ended": request.GET.get("ended", ""),
        "max_days": settings.ACCOUNTS["SESSION_MAX_DAYS"],
    }
    return render(request, "portal/sessions.html", context)


@require_POST
@account_page
def session_end_view(request: PortalRequest, session_id: uuid.UUID) -> HttpResponse:
    if not session_end(session_id=session_id, user=request.user):
        return error_page(request, "That session had already ended (or is not yours).", status=404)
    return redirect(reverse("portal:sessions") + "?ended=1")


@require_POST
@account_page
def sessions_end_everywhere_view(request: PortalRequest) -> HttpResponse:
    ended = sessions_end_everywhere(user=request.user)
    _keep_this_session(request)
    return redirect(reverse("portal:sessions") + f"?ended={ended}&everywhere=1")


def _setup(device) -> dict:
    """What the app needs: the otpauth:// address as a QR code (inline SVG: no request, no script) and
    the secret as text for typing in."""
    secret = base64.b32encode(bytes(device.bin_key)).decode().rstrip("=")
    qr = segno.make(device.config_url, error="m")
    return {
        "qr": qr.svg_inline(scale=4, border=2, title="QR code for your authenticator app"),
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
    }


@require_http_methods(["GET", "POST"])
@account_page
def two_factor_view(request: PortalRequest) -> HttpResponse:
    """Two-factor authentication: set up (QR code and secret, confirmed with a code; the recovery codes
    are shown once), or turn off with a code. ``action`` says which form was posted."""
    user = request.user
    form = TwoFactorForm(request.POST or None)
    context: dict = {"form": form, "message": ""}
    status = 200
    action = request.POST.get("action", "")
    if action == "start" and not two_factor_enabled(user=user):
        two_factor_enrol_start(user=user)
        form = TwoFactorForm()  # a fresh form: nothing was typed yet
        context["form"] = form
    elif action == "confirm" and form.is_valid():
        codes = two_factor_enrol_confirm(
            user=user, code=form.cleaned_data["code"], ip_address=client_ip(request)
        )
        if codes is not None:
            response = render(request, "portal/two_factor_codes.html", {"codes": codes})
            response["Cache-Control"] = "no-store"
            return response
        context["message"], status = "That code is not right. Type the one your app shows now.", 400
    elif action == "disable" and form.is_valid():
        if two_factor_disable(user=user, code=form.cleaned_data["code"], ip_address=client_ip(request)):
            return redirect(reverse("portal:two-factor") + "?disabled=1")
        context["message"], status = "That code is not right: two-factor authentication stays on.", 400
    elif request.method == "POST":
        status = 400
    context["enabled"] = two_factor_enabled(user=user)
    pending = None if context["enabled"] else two_factor_pending(user=user)
    if pending is not None:
        context.update(_setup(pending))
    context["pending"] = pending is not None
    response = render(request, "portal/two_factor.html", context, status=status)
    response["Cache-Control"] = "no-store"  # the secret may be on it
    return response
