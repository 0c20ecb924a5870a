"""Operator views of the jobs: runs (Jobs → Job runs) and dead letters (Jobs → Dead letters: replay
one or many, resolve)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from apiplatform.jobs import services
from apiplatform.jobs.models import DeadLetter, JobRun


class ReadOnlyRecordAdmin:
    """Mixin for records written by jobs: operators look and act through actions, never edit fields."""

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


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyRecordAdmin, admin.ModelAdmin):
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


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyRecordAdmin, admin.ModelAdmin):
    list_display = (
        "id",
        "app",
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
    list_filter = ("status", "app", "task_name", "retryable", "last_failed_at")
    search_fields = ("=task_id", "=replay_task_id", "task_name", "error")
    date_hierarchy = "last_failed_at"
    actions = ("replay_selected", "resolve_selected")
    change_form_template = "admin/jobs/deadletter/change_form.html"

    @admin.display(description="error")
    def short_error(self, obj: DeadLetter) -> str:
        return obj.error[:120]

    def has_change_permission(self, request, obj=None):
        # the change page shows the record and its Replay button; fields stay read-only
        return request.user.has_perm("jobs.change_deadletter")

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
                name="jobs_deadletter_replay",
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
        return HttpResponseRedirect(reverse("admin:jobs_deadletter_change", args=[pk]))
