"""The admin's operations console pages (staff only, through ``admin.site.admin_view`` in
:mod:`apiplatform.ops.urls`): they render :mod:`apiplatform.ops.console` and call the owning apps'
services for their actions (dead letter replay, range re-fetch)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from apiplatform.jobs import services as jobs_services
from apiplatform.ops import console


def _context(request: HttpRequest, title: str, **extra) -> dict:
    return {**admin.site.each_context(request), "title": title, **extra}


@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    data = console.overview(now=timezone.now())
    return render(request, "ops/overview.html", _context(request, "Operations overview", **data))


@require_POST
def dead_letters_replay(request: HttpRequest) -> HttpResponse:
    """Replay the ticked pending dead letters through apiplatform.jobs.services (each after its commit)."""
    if not request.user.has_perm("jobs.change_deadletter"):
        messages.error(request, "You may not replay dead letters.")
    else:
        ids = [int(v) for v in request.POST.getlist("dead_letter") if v.isdigit()]
        if not ids:
            messages.warning(request, "No dead letter selected.")
        else:
            replayed, skipped = jobs_services.dead_letters_replay(dead_letter_ids=ids)
            messages.success(request, f"{replayed} replayed, {skipped} skipped (not pending).")
    return HttpResponseRedirect(reverse("ops:overview") + "#dead-letters")
