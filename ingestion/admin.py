"""Operator views: job runs, dead letters (replay one or many, resolve) and data-quality flags."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from ingestion import services
from ingestion.models import DeadLetter, IngestionRun, QualityFlag


class _ReadOnly:
    """Records written by the pipeline: operators look and act through actions, never edit fields."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().changeform_view(request, object_id, form_url, extra_context)


@admin.register(IngestionRun)
class IngestionRunAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = (
        "job",
        "outcome",
        "started_at",
        "duration_ms",
        "calls",
        "rows_written",
        "rejects",
        "task_id",
    )
    list_filter = ("outcome", "job", "started_at")
    search_fields = ("=task_id", "job")
    date_hierarchy = "started_at"
    ordering = ("-started_at",)
    show_full_result_count = False


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


@admin.register(DeadLetter)
class DeadLetterAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = (
        "id",
        "task_name",
        "status",
        "attempts",
        "retryable",
        "short_error",
        "first_failed_at",
        "last_failed_at",
        "replay_count",
        "replay_succeeded_at",
    )
    list_filter = ("status", "task_name", "retryable", "last_failed_at")
    search_fields = ("=task_id", "=replay_task_id", "task_name", "error")
    date_hierarchy = "last_failed_at"
    actions = ("replay_selected", "resolve_selected")
    change_form_template = "admin/ingestion/deadletter/change_form.html"

    @admin.display(description="error")
    def short_error(self, obj: DeadLetter) -> str:
        return obj.error[:120]

    def has_change_permission(self, request, obj=None):
        # the change page shows the record and its Replay button; fields stay read-only
        return request.user.has_perm("ingestion.change_deadletter")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    @admin.action(description="Replay selected dead letters (pending only)", permissions=["change"])
    def replay_selected(self, request: HttpRequest, queryset):
        replayed, skipped = services.dead_letters_replay(
            dead_letter_ids=list(queryset.values_list("pk", flat=True))
        )
        self.message_user(request, f"{replayed} replayed, {skipped} skipped (not pending).", messages.SUCCESS)

    @admin.action(description="Mark selected dead letters resolved", permissions=["change"])
    def resolve_selected(self, request: HttpRequest, queryset):
        count = 0
        for pk in queryset.exclude(status=DeadLetter.Status.RESOLVED).values_list("pk", flat=True):
            services.dead_letter_resolve(dead_letter_id=pk, note=f"resolved by {request.user} in the admin")
            count += 1
        self.message_user(request, f"{count} resolved.", messages.SUCCESS)

    def get_urls(self):
        return [
            path(
                "<int:pk>/replay/",
                self.admin_site.admin_view(self.replay_view),
                name="ingestion_deadletter_replay",
            ),
            *super().get_urls(),
        ]

    def replay_view(self, request: HttpRequest, pk: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            messages.error(request, "You may not replay dead letters.")
        else:
            letter = get_object_or_404(DeadLetter, pk=pk)
            try:
                services.dead_letter_replay(dead_letter_id=letter.pk, force=True)
            except Exception as exc:  # shown to the operator, not swallowed
                messages.error(request, f"Replay failed: {exc}")
            else:
                messages.success(request, f"Dead letter {pk} replayed ({letter.task_name}).")
        return HttpResponseRedirect(reverse("admin:ingestion_deadletter_change", args=[pk]))


@admin.register(QualityFlag)
class QualityFlagAdmin(_ReadOnly, admin.ModelAdmin):
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
