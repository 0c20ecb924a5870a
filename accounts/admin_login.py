"""The Django admin's login form, behind the same brute-force limits as the management API's login
(accounts/login_limits.py). Routed at ``admin/login/`` ahead of the admin site by apiplatform/urls.py."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpResponse

from accounts.login_limits import login_limit


def limited_admin_login(request, extra_context=None):
    if request.method == "POST":
        waited = login_limit(request, email=str(request.POST.get("username", "")))
        if waited is not None:
            response = HttpResponse(
                "Too many login attempts. Wait before trying again.\n",
                status=429,
                content_type="text/plain; charset=utf-8",
            )
            response["Retry-After"] = str(waited)
            response["Cache-Control"] = "no-store"
            return response
    return admin.site.login(request, extra_context)
