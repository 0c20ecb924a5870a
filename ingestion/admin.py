"""Operator views: data-quality flags and the history job's progress (job runs and dead letters:
`apiplatform.jobs.admin`)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from apiplatform.jobs.admin import ReadOnlyRecordAdmin
from ingestion import history, services
from ingestion.models import HistoryProgress, QualityFlag
from ingestion.pipeline import HISTORY_SOURCE, backfill_chunk_size
from marketdata.models import TIMEFRAME_DELTA


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("open", "open"), ("resolved", "resolved"))

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(QualityFlag)
class QualityFlagAdmin(ReadOnlyRecordAdmin, admin.ModelAdmin):
    list_display = (
        "id",
        "coin",
        "timeframe",
        "kind",
        "range_start",
        "range_end",
        "detected_at",
        "last_seen_at",
        "state",
        "refetch_count",
        "refetch_finished_at",
    )
    list_filter = (OpenFilter, "kind", "timeframe", "detected_at")
    list_select_related = ("coin",)
    search_fields = ("=coin__upstream_id", "=coin__symbol")
    raw_id_fields = ("coin",)
    date_hierarchy = "detected_at"
    actions = ("resolve_selected", "refetch_selected")

    @admin.display(description="state")
    def state(self, obj: QualityFlag) -> str:
        if obj.resolved_at is None:
            return format_html('<strong style="color:{}">open</strong>', "#b00")
        return f"resolved ({obj.resolution})" if obj.resolution else "resolved"

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("ingestion.change_qualityflag")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    @admin.action(description="Resolve selected flags", permissions=["change"])
    def resolve_selected(self, request: HttpRequest, queryset):
        now = timezone.now()
        count = sum(
            services.quality_flag_resolve(flag_id=pk, resolution=f"resolved by {request.user}", now=now)
            for pk in queryset.filter(resolved_at__isnull=True).values_list("pk", flat=True)
        )
        self.message_user(request, f"{count} flag(s) resolved.", messages.SUCCESS)

    @admin.action(description="Re-fetch the ranges of the selected open flags now", permissions=["change"])
    def refetch_selected(self, request: HttpRequest, queryset):
        pks = list(queryset.filter(resolved_at__isnull=True).values_list("pk", flat=True))
        for pk in pks:
            services.quality_flag_schedule_refetch(flag_id=pk)
        self.message_user(request, f"{len(pks)} re-fetch(es) scheduled.", messages.SUCCESS)


class CompleteFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("filling", "filling"), ("complete", "complete"))

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        now = timezone.now()
        complete = Q(start_reached=True)
        for tf in history.TIMEFRAMES:
            complete |= Q(timeframe=tf, since__lte=history.target_start(tf, now))
        return queryset.filter(complete) if self.value() == "complete" else queryset.exclude(complete)


def _remaining(obj: HistoryProgress, now) -> int:
    """Buckets left to fetch (an upper bound: the coin's first data is unknown until reached)."""
    target = history.target_start(obj.timeframe, now)
    if obj.start_reached or obj.since is None or obj.since <= target:
        return 0
    return -(-(obj.since - target) // TIMEFRAME_DELTA[obj.timeframe])


@admin.register(HistoryProgress)
class HistoryProgressAdmin(ReadOnlyRecordAdmin, admin.ModelAdmin):
    """Per coin and timeframe: filled back to, newest fetched, remaining; totals per timeframe above
    the list (the same numbers as the ``candlestack_history_*`` metrics)."""

    list_display = ("coin", "timeframe", "filled_back_to", "until", "state", "remaining", "updated_at")
    list_filter = (CompleteFilter, "timeframe")
    list_select_related = ("coin",)
    search_fields = ("=coin__upstream_id", "=coin__symbol")
    ordering = ("coin_id", "timeframe")
    change_list_template = "admin/ingestion/historyprogress/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(source=HISTORY_SOURCE)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="filled back to", ordering="since")
    def filled_back_to(self, obj: HistoryProgress):
        return obj.since

    @admin.display(description="state")
    def state(self, obj: HistoryProgress) -> str:
        if obj.start_reached:
            return "complete (first data reached)"
        return "complete" if _remaining(obj, timezone.now()) == 0 else "filling"

    @admin.display(description="remaining")
    def remaining(self, obj: HistoryProgress) -> str:
        left = _remaining(obj, timezone.now())
        if not left:
            return "—"
        step = TIMEFRAME_DELTA[obj.timeframe]
        calls = 2 * -(-(left * step) // backfill_chunk_size(obj.timeframe))
        return f"≤ {left} candles (≤ {calls} calls)"

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "history_totals": history.progress_all()}
        return super().changelist_view(request, extra_context)
