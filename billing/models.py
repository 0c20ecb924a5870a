"""Billing tables: plans, which plan each organization is on, metered usage.

Plain tables; the rules live in ``billing/services.py`` (writes) and ``billing/selectors.py`` (reads).

* :class:`Plan` — what a tier allows: per-minute rate and burst for the organization, a per-key
  rate, a monthly credit quota, the endpoints and candle timeframes it includes, and the fields a
  Stripe integration attaches to (``stripe_price_id``, ``price_cents_monthly``).
* :class:`OrganizationPlan` — the organization → plan assignment, one row per organization
  (the organization is the primary key). It is the subscription record: Stripe's customer and
  subscription ids and the subscription status go here when Stripe arrives.
* :class:`UsageRecord` — request counts and credits per (hour, organization, key, endpoint,
  status class), written only by the metering flush (``billing.metering``).
* :class:`UsageFlushBatch` — the batch ids already applied to ``UsageRecord``: a flush that is
  killed and re-run never applies a batch twice.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

# The limiter works in whole microseconds: one request per µs (60 million a minute) is its finest
# pace. 6 million a minute (100,000 a second per organization) keeps the rounding below 0.001 %.
MAX_RATE_PER_MINUTE = 6_000_000


class Plan(models.Model):
    name = models.SlugField(max_length=32, unique=True, help_text="Stable identifier: free, developer, ...")
    display_name = models.CharField(max_length=64)
    description = models.TextField(blank=True)
    rate_per_minute = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(MAX_RATE_PER_MINUTE)],
        help_text="Sustained requests per minute for the whole organization (all keys together).",
    )
    burst = models.PositiveIntegerField(
        validators=[MinValueValidator(1)],
        help_text="Requests the organization may send at once before the per-minute pace applies.",
    )
    key_rate_per_minute = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(MAX_RATE_PER_MINUTE)],
        help_text="Sustained requests per minute for any single API key (same burst as the plan).",
    )
    monthly_credits = models.PositiveBigIntegerField(
        help_text="Credits per calendar month (UTC); each endpoint costs a documented number of credits."
    )
    endpoints = models.JSONField(
        default=list,
        blank=True,
        help_text='Endpoint names this plan includes; ["*"] means all endpoints.',
    )
    timeframes = models.JSONField(
        default=list,
        blank=True,
        help_text='Candle timeframes this plan includes, e.g. ["5m", "15m", "1h", "1d"]; ["*"] means all.',
    )
    price_cents_monthly = models.PositiveIntegerField(default=0)
    stripe_price_id = models.CharField(
        max_length=100, blank=True, help_text="Filled by the Stripe integration."
    )
    is_public = models.BooleanField(default=True, help_text="Listed on the pricing page / self-service.")
    sort_order = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["sort_order", "id"]

    def __str__(self) -> str:
        return self.display_name or self.name


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    TRIALING = "trialing", "Trialing"
    PAST_DUE = "past_due", "Past due"
    CANCELED = "canceled", "Canceled"


class OrganizationPlan(models.Model):
    """The organization's current plan (its subscription). One row per organization."""

    organization = models.OneToOneField(
        "accounts.Organization", primary_key=True, on_delete=models.CASCADE, related_name="billing_plan"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="organizations")
    status = models.CharField(
        max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    stripe_customer_id = models.CharField(max_length=100, blank=True)
    stripe_subscription_id = models.CharField(max_length=100, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "organization plan"

    def __str__(self) -> str:
        return f"{self.organization_id}: {self.plan_id}"


class StatusClass(models.TextChoices):
    S2XX = "2xx", "2xx"
    S3XX = "3xx", "3xx"
    S4XX = "4xx", "4xx"
    S5XX = "5xx", "5xx"


class UsageRecord(models.Model):
    """Metered requests for one (hour, organization, key, endpoint, status class).

    ``organization`` is null for requests that never authenticated (401s): they are counted per
    endpoint and hour, not per IP address, and cost nothing. ``key_id`` is the API key's public id
    (empty for unauthenticated requests); it is not a foreign key so that usage outlives keys.
    """

    hour = models.DateTimeField()
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.CASCADE, related_name="usage"
    )
    key_id = models.CharField(max_length=32, blank=True)
    endpoint = models.CharField(max_length=64)
    status_class = models.CharField(max_length=3, choices=StatusClass.choices)
    # Signed: a flush batch may carry a correction (-1 in 2xx, +1 in 4xx) of a request counted as
    # 2xx in an earlier batch; the totals are never negative.
    requests = models.BigIntegerField(default=0)
    credits = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-hour", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "organization", "key_id", "endpoint", "status_class"],
                name="billing_usage_bucket_unique",
                nulls_distinct=False,
            ),
        ]
        indexes = [models.Index(fields=["organization", "hour"])]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.organization_id} {self.endpoint} {self.status_class}"


class UsageFlushBatch(models.Model):
    """A metering batch applied to UsageRecord (same transaction as the upsert)."""

    batch_id = models.CharField(max_length=64, primary_key=True)
    applied_at = models.DateTimeField(default=timezone.now)
    buckets = models.PositiveIntegerField(default=0)
    requests = models.PositiveBigIntegerField(default=0)
    credits = models.PositiveBigIntegerField(default=0)
    quarantined = models.JSONField(
        default=list,
        blank=True,
        help_text="Counters of this batch that could not be attributed (their organization does not "
        "exist): kept here instead of blocking the batch; requests/credits above exclude them.",
    )

    class Meta:
        ordering = ["-applied_at"]

    def __str__(self) -> str:
        return self.batch_id
