"""Billing tables: plans, which plan each organization is on, metered usage.

Plain tables; the rules live in ``billing/services.py`` (writes) and ``billing/selectors.py`` (reads).

* :class:`Plan` — what a tier allows: per-minute rate and burst for the organization, a per-key
  rate, a monthly credit quota, the endpoints and candle timeframes it includes, and the fields a
  Stripe integration attaches to (``stripe_price_id``, ``price_cents_monthly``).
* :class:`OrganizationPlan` — the organization → plan assignment, one row per organization
  (the organization is the primary key). It is the subscription record: Stripe's customer and
  subscription ids, the subscription's status and period (``billing.subscriptions``).
* :class:`UsageRecord` — request counts and credits per (hour, organization, key, endpoint,
  status class), written only by the metering flush (``billing.metering``).
* :class:`UsageFlushBatch` — the batch ids already applied to ``UsageRecord``: a flush that is
  killed and re-run never applies a batch twice.
* :class:`StripeEvent` — webhook events received from Stripe, one row per event id (applied once).
* :class:`OverageReport` — the meter events sent to Stripe (overage per organization and hour) and
  :class:`OverageDrift` — hours whose reported overage could not be corrected (for an operator).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
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
    concurrent_streams = models.PositiveIntegerField(
        default=2,
        help_text="Server-Sent Event streams (GET /v1/stream) the organization may hold open at once "
        "(all its keys together); 0: streaming is not included.",
    )
    price_cents_monthly = models.PositiveIntegerField(default=0)
    overage = models.BooleanField(
        default=False,
        help_text="On: the plan keeps answering past its monthly credits and bills each started "
        "1,000 extra credits at overage_cents_per_1000 (paid plans). Off: requests past the quota "
        "are refused (quota-exceeded).",
    )
    overage_cents_per_1000 = models.PositiveIntegerField(
        default=0, help_text="Price of 1,000 credits past the monthly credits (cents), with overage on."
    )
    stripe_product_id = models.CharField(max_length=100, blank=True, help_text="Set by stripe_sync.")
    stripe_price_id = models.CharField(
        max_length=100, blank=True, help_text="The flat monthly Price (set by stripe_sync)."
    )
    stripe_overage_price_id = models.CharField(
        max_length=100, blank=True, help_text="The metered overage Price (set by stripe_sync)."
    )
    is_public = models.BooleanField(default=True, help_text="Listed on the pricing page / self-service.")
    sort_order = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["sort_order", "id"]

    def __str__(self) -> str:
        return self.display_name or self.name

    @property
    def is_paid(self) -> bool:
        """Sold through Stripe Checkout: a public plan with a monthly price."""
        return self.price_cents_monthly > 0

    def clean(self) -> None:
        if self.overage and (not self.is_paid or self.overage_cents_per_1000 <= 0):
            raise ValidationError(
                "Overage needs a paid plan (price_cents_monthly > 0) and a price per 1,000 credits."
            )


class SubscriptionStatus(models.TextChoices):
    """Stripe's subscription statuses (``active`` also stands for "no subscription, plan in force")."""

    ACTIVE = "active", "Active"
    TRIALING = "trialing", "Trialing"
    PAST_DUE = "past_due", "Past due"
    UNPAID = "unpaid", "Unpaid"
    INCOMPLETE = "incomplete", "Incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete (expired)"
    PAUSED = "paused", "Paused"
    CANCELED = "canceled", "Canceled"


class OrganizationPlan(models.Model):
    """The organization's current plan (its subscription). One row per organization."""

    organization = models.OneToOneField(
        "accounts.Organization", primary_key=True, on_delete=models.CASCADE, related_name="billing_plan"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="organizations")
    status = models.CharField(
        max_length=24, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    stripe_customer_id = models.CharField(max_length=100, blank=True)
    stripe_customer_epoch = models.PositiveIntegerField(
        default=0, help_text="Customers created so far (part of the customer-creation idempotency key)."
    )
    stripe_subscription_id = models.CharField(max_length=100, blank=True)
    subscribed_plan = models.ForeignKey(
        Plan,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The plan the Stripe subscription pays for (the plan in force while it is active).",
    )
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    past_due_since = models.DateTimeField(null=True, blank=True)
    stripe_state_at = models.DateTimeField(
        null=True, blank=True, help_text="Time (at Stripe) of the newest subscription state applied."
    )
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


class Refusal(models.TextChoices):
    """Why the gate refused a request (counted in 4xx); empty for every other request."""

    NONE = "", "not refused by the gate"
    RATE_LIMITED = "rate-limited", "rate limited"
    QUOTA_EXCEEDED = "quota-exceeded", "quota exceeded"
    PLAN_UPGRADE_REQUIRED = "plan-upgrade-required", "not in the plan"


class UsageRecord(models.Model):
    """Metered requests for one (hour, organization, key, endpoint, status class, refusal).

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
    # Rows metered before this column existed have "" for every refusal (they are in 4xx, reason unknown).
    refusal = models.CharField(max_length=24, choices=Refusal.choices, blank=True, default="", db_default="")
    # Signed: a flush batch may carry a correction (-1 in 2xx, +1 in 4xx) of a request counted as
    # 2xx in an earlier batch; the totals are never negative.
    requests = models.BigIntegerField(default=0)
    credits = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-hour", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "organization", "key_id", "endpoint", "status_class", "refusal"],
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


class StripeEventStatus(models.TextChoices):
    RECEIVED = "received", "Received (to apply)"
    APPLIED = "applied", "Applied"
    IGNORED = "ignored", "Ignored (type not handled)"
    FAILED = "failed", "Failed (dead-lettered)"


class StripeEvent(models.Model):
    """A webhook event received from Stripe: stored once per event id, applied once by a task."""

    event_id = models.CharField(max_length=255, primary_key=True)
    type = models.CharField(max_length=100)
    created = models.DateTimeField(help_text="When Stripe created the event.")
    livemode = models.BooleanField(default=False)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=StripeEventStatus.choices, default=StripeEventStatus.RECEIVED
    )
    outcome = models.CharField(max_length=255, blank=True, help_text="What applying it did.")
    error = models.TextField(blank=True)
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    received_at = models.DateTimeField(default=timezone.now)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["status", "received_at"])]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


class OverageReportState(models.TextChoices):
    PENDING = "pending", "Pending (sent or about to be; outcome unknown)"
    SENT = "sent", "Sent"
    CANCELING = "canceling", "Canceling"
    CANCELED = "canceled", "Canceled"


class OverageReport(models.Model):
    """One meter event sent to Stripe: overage credits of an organization for one hour.

    Written (``pending``) before the call, ``sent`` after it: a reporter killed in between resends
    the same ``identifier``, which Stripe refuses as a duplicate. What Stripe holds for an
    (organization, hour) is the sum of its ``sent`` rows; a later correction adds a revision
    (the difference) or cancels revisions (``canceled``)."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    revision = models.PositiveIntegerField()
    identifier = models.CharField(max_length=100, unique=True)
    stripe_customer_id = models.CharField(max_length=100)
    value = models.PositiveBigIntegerField(help_text="Overage credits in this event.")
    state = models.CharField(
        max_length=16, choices=OverageReportState.choices, default=OverageReportState.PENDING
    )
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-hour", "organization_id", "revision"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "hour", "revision"], name="billing_overage_report_revision"
            )
        ]

    def __str__(self) -> str:
        return self.identifier


class OverageDrift(models.Model):
    """An (organization, hour) whose overage Stripe holds differently from our usage and that the
    reporter cannot correct (older than Stripe accepts, or an event too old to cancel)."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    reported = models.BigIntegerField(help_text="Overage credits Stripe holds for the hour.")
    expected = models.BigIntegerField(help_text="Overage credits our usage gives for the hour.")
    reason = models.CharField(max_length=255)
    detected_at = models.DateTimeField(default=timezone.now)
    resolved = models.BooleanField(default=False, help_text="Set by an operator once settled.")

    class Meta:
        ordering = ["-detected_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "hour"], name="billing_overage_drift_hour")
        ]

    def __str__(self) -> str:
        return f"{self.organization_id} {self.hour:%Y-%m-%d %H}h"
