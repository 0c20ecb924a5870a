"""The dashboard (``/portal/``), the organization switcher, resending the verification email, and the
docs/changelog pages."""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import roles, selectors
from accounts.models import ApiKey
from accounts.portal import charts, limits
from accounts.portal.errors import error_page, sentence
from accounts.portal.tenancy import PortalRequest, choose, portal_page
from accounts.services.users import email_verification_resend
from apiplatform.problems import ProblemError
from billing import selectors as billing_selectors
from billing import subscriptions

DAYS = 30


@portal_page(read=roles.USAGE_READ)
def dashboard(request: PortalRequest) -> HttpResponse:
    organization = request.portal.organization
    today = timezone.now().date()
    start = today - timedelta(days=DAYS - 1)
    usage = billing_selectors.usage_breakdown(organization_id=organization.pk, start=start, end=today)
    (by_day, totals), (by_endpoint, _), (by_key, _) = usage["day"], usage["endpoint"], usage["key"]
    names = dict(
        ApiKey.objects.filter(organization=organization, key_id__in=[r["key"] for r in by_key]).values_list(
            "key_id", "name"
        )
    )
    for row in by_key:
        row["name"] = names.get(row["key"], "")
    overview = subscriptions.overview(organization=organization)
    used, included = overview["credits"]["used"], overview["credits"]["included"]
    percent = min(100, round(100 * used / included)) if included else 0
    context = {
        "overview": overview,
        "percent": percent,
        "chart": charts.calls_per_day(by_day, end=today, days=DAYS),
        "totals": totals,
        "by_endpoint": sorted(by_endpoint, key=lambda r: -r["requests"]),
        "by_key": sorted(by_key, key=lambda r: -r["requests"]),
        "limits": billing_selectors.organization_plan_limits(organization_id=organization.pk),
        "failures": billing_selectors.usage_failures(organization_id=organization.pk),
        "welcome": request.GET.get("welcome") == "1",
    }
    return render(request, "portal/dashboard.html", context)


@require_POST
@portal_page(write=roles.ORG_READ)
def switch_organization(request: PortalRequest) -> HttpResponse:
    if not choose(request, request.POST.get("organization", "")):
        return error_page(request, "You are not a member of that organization.", status=404)
    target = request.POST.get("next") or ""
    return redirect(target if target.startswith("/portal/") else reverse("portal:dashboard"))


@require_POST
@portal_page(write=roles.ORG_READ)
def verification_resend(request: PortalRequest) -> HttpResponse:
    wait = limits.over_limit(
        request, group=limits.VERIFY_RESEND, rate_setting="RATE_VERIFY_RESEND_USER", key=str(request.user.pk)
    )
    if wait:
        return error_page(request, f"Too many emails asked for. Wait {wait} seconds.", status=429)
    try:
        queued = email_verification_resend(user=request.user)
    except ProblemError as exc:
        return error_page(request, sentence(exc), status=503)
    context = {"queued": queued, "email": request.user.email}
    return render(request, "portal/verification_sent.html", context)


@portal_page
def docs(request: PortalRequest) -> HttpResponse:
    keys = list(
        selectors.organization_api_keys(organization=request.portal.organization).filter(revoked_at=None)[:1]
    )
    context = {"prefix": keys[0].prefix if keys else "cs_live_…"}
    return render(request, "portal/docs.html", context)


@portal_page
def try_it(request: PortalRequest) -> HttpResponse:
    """Swagger UI with the visitor's API key ready for "Try it out": the key is pasted once and kept in
    this browser only (localStorage; ``portal/try-it.js``), never sent to this page's server."""
    return render(request, "portal/try_it.html", {"schema_url": reverse("schema") + "?format=json"})


def changelog(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/changelog.html")


def not_found(request: HttpRequest) -> HttpResponse:
    return error_page(request, "There is no page at this address.", status=404)
