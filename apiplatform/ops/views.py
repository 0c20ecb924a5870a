"""The admin's operations console pages (staff only, through ``admin.site.admin_view`` in
:mod:`apiplatform.ops.urls`): they render :mod:`apiplatform.ops.console` and call the owning apps'
services for their actions (dead letter replay, range re-fetch)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apiplatform.jobs import services as jobs_services
from apiplatform.ops import console
from apiplatform.ops.forms import RefetchForm
from ingestion import services as ingestion_services
from marketdata import selectors as marketdata_selectors


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


@require_GET
def coin_lookup(request: HttpRequest) -> HttpResponse:
    """The overview's "open a coin" box: ?coin=<upstream id> -> that coin's page."""
    upstream_id = request.GET.get("coin", "").strip().lower()
    if not upstream_id:
        return HttpResponseRedirect(reverse("ops:overview"))
    return HttpResponseRedirect(reverse("ops:coin", args=[upstream_id]))


@require_http_methods(["GET", "POST"])
def coin(request: HttpRequest, upstream_id: str) -> HttpResponse:
    """One coin: snapshot, candles and gaps per timeframe, recent flags; POST re-fetches a range through
    ingestion's quality path (a flag, then ingestion.refetch_range)."""
    now = timezone.now()
    form = RefetchForm(request.POST or None)
    if request.method == "POST":
        ref = marketdata_selectors.coin_ref(upstream_id)
        if ref is None:
            raise Http404("no such coin")
        if not request.user.has_perm("ingestion.change_qualityflag"):
            messages.error(request, "You may not schedule re-fetches.")
            return HttpResponseRedirect(reverse("ops:coin", args=[upstream_id]))
        if form.is_valid():
            flag = ingestion_services.quality_refetch_request(
                coin_id=ref[0],
                timeframe=form.cleaned_data["timeframe"],
                range_start=form.cleaned_data["start"],
                range_end=form.cleaned_data["end"],
                requested_by=str(request.user),
            )
            messages.success(
                request, f"Re-fetch scheduled (quality flag {flag.pk}, task {flag.refetch_task_id})."
            )
            return HttpResponseRedirect(reverse("ops:coin", args=[upstream_id]))
    data = console.coin_page(upstream_id=upstream_id, now=now)
    if data is None:
        raise Http404("no such coin")
    title = f"Coin {data['coin']['symbol'].upper()} ({upstream_id})"
    return render(request, "ops/coin.html", _context(request, title, form=form, **data))


@require_GET
def usage(request: HttpRequest) -> HttpResponse:
    data = console.usage(today=timezone.now().date())
    return render(request, "ops/usage.html", _context(request, "Usage", **data))
