"""Admin: plans (saves republish the limits to the gateway), assignments, usage with totals."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Sum
from django.utils import timezone

from billing import services
from billing.models import OrganizationPlan, Plan, UsageFlushBatch, UsageRecord


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "display_name",
        "rate_per_minute",
        "burst",
        "key_rate_per_minute",
        "monthly_credits",
        "timeframes",
        "price_cents_monthly",
        "is_public",
    ]
    ordering = ["sort_order", "id"]
    readonly_fields = ["created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)
        services.plan_publish(plan=obj)  # after commit: every organization on it, next request


@admin.register(OrganizationPlan)
class OrganizationPlanAdmin(admin.ModelAdmin):
    list_display = ["organization", "plan", "status", "started_at", "updated_at"]
    list_filter = ["plan", "status"]
    search_fields = ["organization__slug", "organization__name"]
    raw_id_fields = ["organization"]
    readonly_fields = ["started_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        """The service saves the row (not the admin: the service must see the plan before the
        change, so that a new plan restarts ``started_at``) and republishes the limits."""
        fields = {name: getattr(obj, name) for name in services.ASSIGNMENT_EDITABLE_FIELDS}
        row = services.organization_plan_set(organization=obj.organization, plan_name=obj.plan.name, **fields)
        obj.started_at, obj.updated_at = row.started_at, row.updated_at

    def delete_model(self, request, obj):
        services.organization_plan_remove(organization_id=obj.organization_id)

    def delete_queryset(self, request, queryset):
        for organization_id in queryset.values_list("organization_id", flat=True):
            services.organization_plan_remove(organization_id=organization_id)


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """Per tenant (filter), per day (date drill-down) with the totals of the current selection."""

    list_display = ["hour", "organization", "key_id", "endpoint", "status_class", "requests", "credits"]
    list_filter = ["status_class", "endpoint", "organization"]
    search_fields = ["organization__slug", "key_id", "endpoint"]
    date_hierarchy = "hour"
    list_select_related = ["organization"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context=extra_context)
        try:
            qs = response.context_data["cl"].queryset
        except (AttributeError, KeyError):
            return response
        totals = qs.aggregate(requests=Sum("requests"), credits=Sum("credits"))
        response.context_data["title"] = (
            f"Usage — total {totals['requests'] or 0} requests, {totals['credits'] or 0} credits"
        )
        return response


@admin.register(UsageFlushBatch)
class UsageFlushBatchAdmin(admin.ModelAdmin):
    list_display = ["batch_id", "applied_at", "buckets", "requests", "credits", "has_quarantined"]
    readonly_fields = ["batch_id", "applied_at", "buckets", "requests", "credits", "quarantined"]

    @admin.display(boolean=True, description="quarantined counters")
    def has_quarantined(self, obj) -> bool:
        return bool(obj.quarantined)

    def has_add_permission(self, request):
        return False
