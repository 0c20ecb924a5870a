"""The keys page: list, create (the secret shown once), rotate with a chosen overlap, revoke with a
confirmation. Every write goes through ``accounts.services.api_keys`` (audited there)."""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from rest_framework import exceptions as drf

from accounts import roles, selectors
from accounts.authentication import client_ip
from accounts.models import ApiKey
from accounts.portal.errors import error_page, field_errors, sentence
from accounts.portal.forms import KeyCreateForm, KeyRotateForm
from accounts.portal.tenancy import PortalRequest, portal_page
from accounts.services.api_keys import api_key_create, api_key_revoke, api_key_rotate
from apiplatform.problems import ProblemError


def _keys(request: PortalRequest) -> list[ApiKey]:
    organization = request.portal.organization
    return selectors.api_keys_with_last_used(list(selectors.organization_api_keys(organization=organization)))


def _key(request: PortalRequest, key_id: str) -> ApiKey | None:
    organization = request.portal.organization
    return selectors.organization_api_keys(organization=organization).filter(key_id=key_id).first()


def _secret_page(
    request: HttpRequest, *, api_key: ApiKey, full_key: str, rotated: ApiKey | None = None
) -> HttpResponse:
    response = render(
        request, "portal/key_secret.html", {"api_key": api_key, "full_key": full_key, "rotated": rotated}
    )
    response["Cache-Control"] = "no-store"
    return response


@never_cache
@portal_page(read=roles.KEYS_READ, write=roles.KEYS_MANAGE)
def keys(request: PortalRequest) -> HttpResponse:
    form = KeyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        days = data["expires_in_days"]
        try:
            api_key, full_key = api_key_create(
                organization=request.portal.organization,
                name=data["name"],
                created_by=request.user,
                environment=data["environment"],
                scopes=list(data["scopes"]),
                expires_at=timezone.now() + timedelta(days=int(days)) if days else None,
                allowed_ips=data["allowed_ips"],
                ip_address=client_ip(request),
            )
        except drf.ValidationError as exc:
            field_errors(form, exc)
        else:
            return _secret_page(request, api_key=api_key, full_key=full_key)
    status = 400 if request.method == "POST" else 200
    now = timezone.now()
    return render(
        request, "portal/keys.html", {"form": form, "keys": _keys(request), "now": now}, status=status
    )


@never_cache
@portal_page(read=roles.KEYS_MANAGE, write=roles.KEYS_MANAGE)
def key_rotate(request: PortalRequest, key_id: str) -> HttpResponse:
    api_key = _key(request, key_id)
    if api_key is None:
        return error_page(request, "No such key in this organization.", status=404)
    form = KeyRotateForm(request.POST or None)
    message = ""
    if request.method == "POST" and form.is_valid():
        try:
            new, full_key, old = api_key_rotate(
                api_key=api_key,
                actor=request.user,
                old_key_expires_at=timezone.now() + timedelta(seconds=int(form.cleaned_data["overlap"])),
                ip_address=client_ip(request),
            )
        except (ProblemError, drf.ValidationError) as exc:
            message = sentence(exc)
        else:
            return _secret_page(request, api_key=new, full_key=full_key, rotated=old)
    template = (
        "portal/key_rotate_panel.html"
        if request.htmx and request.method == "GET"
        else "portal/key_rotate.html"
    )
    status = 400 if message else 200
    return render(request, template, {"api_key": api_key, "form": form, "message": message}, status=status)


@portal_page(read=roles.KEYS_MANAGE, write=roles.KEYS_MANAGE)
def key_revoke(request: PortalRequest, key_id: str) -> HttpResponse:
    api_key = _key(request, key_id)
    if api_key is None:
        return error_page(request, "No such key in this organization.", status=404)
    if request.method == "POST":
        try:
            api_key_revoke(api_key=api_key, actor=request.user, ip_address=client_ip(request))
        except ProblemError as exc:
            return error_page(request, sentence(exc), status=409)
        return redirect(reverse("portal:keys") + f"?revoked={api_key.prefix}")
    template = "portal/key_revoke_panel.html" if request.htmx else "portal/key_revoke.html"
    return render(request, template, {"api_key": api_key})
