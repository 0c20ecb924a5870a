"""Pages anyone may see: landing, pricing, sign-up, login/logout, email verification, invitation
acceptance."""

from __future__ import annotations

import json
import time

from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp import login as otp_login
from rest_framework import exceptions as drf

from accounts.authentication import client_ip
from accounts.login_limits import login_limit
from accounts.models import User
from accounts.portal import limits
from accounts.portal.errors import field_errors, sentence
from accounts.portal.forms import LoginForm, SignupForm, TwoFactorForm
from accounts.services.invitations import invitation_accept
from accounts.services.two_factor import two_factor_enabled, two_factor_verify
from accounts.services.users import user_signup, user_verify_email
from apiplatform.problems import ProblemError
from billing.models import Plan
from marketdata import selectors as market

EXAMPLE_IDS = ["bitcoin", "ethereum"]
TWO_FACTOR_KEY = "portal_two_factor"  # the user who passed the password step, when, and where to
TWO_FACTOR_WINDOW = 300  # seconds between the password step and the code


def _wait_sentence(seconds: int) -> str:
    return f"Too many attempts from here. Wait {seconds} seconds before trying again."


@require_GET
def landing(request: HttpRequest) -> HttpResponse:
    text, found = market.prices_json(EXAMPLE_IDS)
    example = json.dumps(
        {"data": json.loads(text), "missing": sorted(set(EXAMPLE_IDS) - set(found))}, indent=2
    )
    return render(
        request,
        "portal/landing.html",
        {"example": example, "example_ids": ",".join(EXAMPLE_IDS), "has_data": bool(found)},
    )


@require_GET
def pricing(request: HttpRequest) -> HttpResponse:
    plans = Plan.objects.filter(is_public=True).order_by("sort_order", "price_cents_monthly")
    return render(request, "portal/pricing.html", {"plans": plans})


def _safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return default


def _limited(
    request: HttpRequest, *, ip: tuple[str, str], account: tuple[str, str], email: str
) -> int | None:
    """Count one attempt per client IP and per account email (the API's groups and rates); the
    seconds to wait when either is over its rate."""
    wait = limits.over_limit(request, group=ip[0], rate_setting=ip[1], key=limits.ip_key(request))
    return wait or limits.over_limit(
        request, group=account[0], rate_setting=account[1], key=email.strip().lower()
    )


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated and request.method == "GET":
        return redirect("portal:dashboard")
    invitation = request.GET.get("invitation", "")  # the old link's form (deprecated)
    if not invitation and request.GET.get("join") == "1":  # from /invitation: the token is in the session
        invitation = request.session.get(INVITATION_KEY, "")
    initial = {"invitation": invitation, "email": request.GET.get("email", "")}
    form = SignupForm(request.POST or None, initial=initial)
    message, status = "", 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            wait = _limited(
                request,
                ip=(limits.SIGNUP_IP, "RATE_SIGNUP_IP"),
                account=(limits.SIGNUP_ACCOUNT, "RATE_SIGNUP_ACCOUNT"),
                email=data["email"],
            )
            if wait:
                message, status = _wait_sentence(wait), 429
            else:
                try:
                    result = user_signup(
                        email=data["email"],
                        password=data["password"],
                        organization_name=data["organization_name"],
                        invitation_token=data["invitation"],
                        full_name=data["full_name"],
                        ip_address=client_ip(request),
                    )
                except drf.ValidationError as exc:
                    field_errors(form, exc)
                except ProblemError as exc:
                    message = sentence(exc)
                else:
                    if data["invitation"] and result.user is not None and result.membership is not None:
                        # the invitation proved the address: the member is in at once (as in the API)
                        login(request, result.user, backend="django.contrib.auth.backends.ModelBackend")
                        request.session.pop(INVITATION_KEY, None)
                        request.session["portal_organization"] = result.membership.organization_id
                        return redirect(reverse("portal:dashboard") + "?joined=1")
                    # The same page whether or not the address was registered (its owner gets an
                    # email instead): the page must not tell a stranger who has an account.
                    return render(request, "portal/signup_done.html", {"email": result.email})
    return render(request, "portal/signup.html", {"form": form, "message": message}, status=status)


@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    next_url = _safe_next(request, reverse("portal:dashboard"))
    if request.user.is_authenticated and request.method == "GET":
        return redirect(next_url)
    form = LoginForm(request.POST or None)
    message, status = "", 200
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        wait = login_limit(request, email=email)  # the API login's limiter and budgets
        if wait:
            message, status = _wait_sentence(wait), 429
        else:
            user = authenticate(request, email=email.strip().lower(), password=form.cleaned_data["password"])
            if user is not None and user.is_active:
                if two_factor_enabled(user=user):  # the password is right: now the second factor
                    request.session[TWO_FACTOR_KEY] = {"user": user.pk, "at": time.time(), "next": next_url}
                    return redirect("portal:login-two-factor")
                login(request, user)  # a new session key: no session fixation
                return redirect(next_url)
            message, status = "That email address and password do not match an account.", 401
    elif request.method == "POST":
        status = 400
    context = {"form": form, "message": message, "next": next_url}
    return render(request, "portal/login.html", context, status=status)


@require_http_methods(["GET", "POST"])
def login_two_factor(request: HttpRequest) -> HttpResponse:
    """The login's second step, for a user with two-factor authentication: a code from the app or a
    recovery code, within ``TWO_FACTOR_WINDOW`` seconds of the password step."""
    pending = request.session.get(TWO_FACTOR_KEY)
    if not pending or time.time() - pending["at"] > TWO_FACTOR_WINDOW:
        request.session.pop(TWO_FACTOR_KEY, None)
        return redirect(reverse("portal:login") + "?expired=1")
    form = TwoFactorForm(request.POST or None)
    message, status = "", 200
    if request.method == "POST":
        status = 400
        wait = limits.over_limit(
            request, group=limits.TWO_FACTOR_USER, rate_setting="RATE_LOGIN_ACCOUNT", key=str(pending["user"])
        )
        if wait:
            message, status = _wait_sentence(wait), 429
        elif form.is_valid():
            user = User.objects.filter(pk=pending["user"], is_active=True).first()
            device = two_factor_verify(user=user, code=form.cleaned_data["code"]) if user else None
            if user is not None and device is not None:
                request.session.pop(TWO_FACTOR_KEY, None)
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                otp_login(request, device)
                return redirect(pending["next"])
            message, status = "That code is not right (or was used already). Try the current one.", 401
    return render(request, "portal/login_two_factor.html", {"form": form, "message": message}, status=status)


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect(reverse("portal:login") + "?logged_out=1")


@require_http_methods(["GET", "POST"])
def verify_email(request: HttpRequest) -> HttpResponse:
    """The verification link's page. The emailed link carries the token after ``#`` (never sent to a
    server, so never in an access log); the page's script posts it. A pasted token works too, and
    so does the old ``?token=`` form (deprecated, like the API's GET). Verifying twice is harmless."""
    token = request.POST.get("token") or request.GET.get("token", "")
    if not token:
        return render(request, "portal/verify_email.html", {"ask": True})
    try:
        user = user_verify_email(token=token.strip())
    except ProblemError as exc:
        return render(
            request, "portal/verify_email.html", {"ok": False, "message": sentence(exc)}, status=400
        )
    return render(request, "portal/verify_email.html", {"ok": True, "email": user.email})


INVITATION_KEY = "portal_invitation"


@require_http_methods(["GET", "POST"])
def invitation_accept_view(request: HttpRequest) -> HttpResponse:
    """The invitation link. It carries the token after ``#`` (never sent to a server, so never in an
    access log); the page's script posts it (a pasted token works too, and the old ``?token=`` link
    still does, deprecated). The token is then kept in the visitor's session, out of every URL, while
    they log in or sign up: signed in, a button accepts it; signed out, log in (back here) or sign up
    with the invited address (``/signup?join=1`` joins the organization directly)."""
    token = (request.POST.get("token") or request.GET.get("token") or "").strip()
    if token:
        request.session[INVITATION_KEY] = token
        return redirect("portal:invitation")  # drops a ?token= from the address bar
    token = request.session.get(INVITATION_KEY, "")
    if not token:
        return render(request, "portal/invitation.html", {"ask": True})
    if not request.user.is_authenticated:
        next_url = reverse("portal:invitation")
        if request.method == "POST":
            return redirect_to_login(next_url)
        return render(request, "portal/invitation.html", {"next": next_url})
    if request.method == "POST":
        try:
            membership = invitation_accept(token=token, user=request.user, ip_address=client_ip(request))
        except ProblemError as exc:
            return render(request, "portal/invitation.html", {"message": sentence(exc)}, status=400)
        request.session.pop(INVITATION_KEY, None)
        request.session["portal_organization"] = membership.organization_id
        return redirect(reverse("portal:dashboard") + "?joined=1")
    return render(request, "portal/invitation.html", {})
