"""Admin: plans (saves republish the limits to the gateway), assignments (the subscription record),
usage with totals, Stripe: received webhook events (replay a failed one), overage reported per hour,
overage drift for an operator to settle."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Sum
from django.utils import timezone

from billing import services, webhooks
from billing.models import (
    OrganizationPlan,
    OverageDrift,
    OverageReport,
    Plan,
    StripeEvent,
    StripeEventStatus,
    UsageFlushBatch,
    UsageRecord,
)


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
        "overage",
        "overage_cents_per_1000",
        "is_public",
    ]
    ordering = ["sort_order", "id"]
    readonly_fields = [
        "created_at",
        "updated_at",
        "stripe_product_id",
        "stripe_price_id",
        "stripe_overage_price_id",
    ]

    def save_model(self, request, obj, form, change):
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)
        services.plan_publish(plan=obj)  # after commit: every organization on it, next request


@admin.register(OrganizationPlan)
class OrganizationPlanAdmin(admin.ModelAdmin):
    list_display = ["organization", "plan", "status", "subscribed_plan", "current_period_end", "updated_at"]
    list_filter = ["plan", "status", "cancel_at_period_end"]
    search_fields = [
        "organization__slug",
        "organization__name",
        "stripe_customer_id",
        "stripe_subscription_id",
    ]
    raw_id_fields = ["organization"]
    # Kept by Stripe's webhooks (billing.subscriptions); shown, not edited.
    readonly_fields = [
        "started_at",
        "updated_at",
        "stripe_customer_epoch",
        "subscribed_plan",
        "current_period_start",
        "cancel_at_period_end",
        "past_due_since",
        "stripe_state_at",
    ]

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


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    """Webhook events as received; a failed one can be applied again (applying is exactly-once)."""

    list_display = ["event_id", "type", "status", "organization", "created", "received_at", "outcome"]
    list_filter = ["status", "type"]
    search_fields = ["event_id", "type", "organization__slug"]
    date_hierarchy = "received_at"
    actions = ["replay"]
    readonly_fields = [f.name for f in StripeEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Apply again (failed or stuck events)")
    def replay(self, request, queryset):
        queued = sum(
            webhooks.event_requeue(event_id=event_id)
            for event_id in queryset.exclude(
                status__in=[StripeEventStatus.APPLIED, StripeEventStatus.IGNORED]
            ).values_list("event_id", flat=True)
        )
        self.message_user(
            request, f"{queued} event(s) queued to be applied; applied ones are left as they are."
        )


@admin.register(OverageReport)
class OverageReportAdmin(admin.ModelAdmin):
    """What was sent to Stripe's meter per organization and hour (one row per meter event)."""

    list_display = ["hour", "organization", "revision", "value", "state", "identifier", "sent_at"]
    list_filter = ["state"]
    search_fields = ["identifier", "organization__slug", "stripe_customer_id"]
    date_hierarchy = "hour"
    readonly_fields = [f.name for f in OverageReport._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(OverageDrift)
class OverageDriftAdmin(admin.ModelAdmin):
    """Hours whose overage Stripe holds differently and that the reporter cannot correct: settle
    them in Stripe (a credit note, an invoice item) and mark them resolved."""

    list_display = ["hour", "organization", "reported", "expected", "reason", "detected_at", "resolved"]
    list_filter = ["resolved"]
    list_editable = ["resolved"]
    readonly_fields = ["organization", "hour", "reported", "expected", "reason", "detected_at"]

    def has_add_permission(self, request):
        return False
