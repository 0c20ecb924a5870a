"""Operator views: data-quality flags (job runs and dead letters: `apiplatform.jobs.admin`)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from apiplatform.jobs.admin import ReadOnlyRecordAdmin
from ingestion import services
from ingestion.models import QualityFlag


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
