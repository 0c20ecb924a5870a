"""Alerts, webhook endpoints, deliveries and attempts (docs/alerts.md).

The organization is referenced by string (``"accounts.Organization"``): marketdata never imports
accounts (pyproject.toml contracts); the foreign key is a database fact, not an import.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from marketdata.alerts import encryption


class WebhookEndpoint(models.Model):
    """Where an organization's alerts are delivered. The signing ``secret`` is shown once (at
    creation or rotation) and then only used to sign: the API never returns it again.

    The database holds it encrypted (``secret_encrypted``, a Fernet token under ALERTS_SECRET_KEYS:
    marketdata/alerts/encryption.py); ``secret`` is the plain value, decrypted when read, and
    ``WebhookEndpoint(secret=...)`` or assigning it encrypts. Save ``secret_encrypted`` in
    ``update_fields``."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True, default="")
    secret_encrypted = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"endpoint {self.pk} {self.url}"

    @property
    def secret(self) -> str:
        return encryption.decrypt(self.secret_encrypted)

    @secret.setter
    def secret(self, plain: str) -> None:
        self.secret_encrypted = encryption.encrypt(plain)


class Side(models.TextChoices):
    ABOVE = "above", "above"
    BELOW = "below", "below"


class Alert(models.Model):
    """A condition on one coin: a value (``kind``) compared with ``level``; it fires when the value
    crosses to ``direction``'s side (once per crossing: ``last_side`` keeps where it was), and not
    again within ``cooldown_seconds`` of the last firing."""

    class Kind(models.TextChoices):
        PRICE = "price", "price crosses a level"
        CHANGE = "change", "% change over a window crosses a level"
        INDICATOR = "indicator", "an indicator crosses a level"

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="alerts")
    coin = models.ForeignKey("marketdata.Coin", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200, blank=True, default="")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    direction = models.CharField(max_length=5, choices=Side.choices)
    level = models.FloatField()
    window = models.CharField(max_length=4, blank=True, default="", help_text="change: e.g. 1h, 24h.")
    indicator = models.CharField(max_length=20, blank=True, default="", help_text="indicator: rsi, ...")
    timeframe = models.CharField(max_length=3, blank=True, default="", help_text="indicator: 1m ... 1d.")
    cooldown_seconds = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # evaluation state (written by marketdata.alerts.evaluation only)
    last_side = models.CharField(max_length=5, blank=True, default="")
    last_value = models.FloatField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    fired_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["coin"], name="alert_active_coin", condition=models.Q(active=True)),
        ]

    def __str__(self) -> str:
        return f"alert {self.pk} {self.kind} {self.direction} {self.level}"


class Delivery(models.Model):
    """One event for one endpoint: recorded (with its exact body) before anything is sent, then
    attempted until it succeeds or the retry window ends (``dead``: a dead letter is written)."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending (first attempt not made yet)"
        RETRYING = "retrying", "retrying (failed, next attempt scheduled)"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed (a test delivery: never retried)"
        DEAD = "dead", "dead (every attempt failed; replayable)"

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    alert = models.ForeignKey(Alert, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    event_id = models.CharField(max_length=40, unique=True)
    event_type = models.CharField(max_length=40)
    body = models.TextField(help_text="The exact JSON body sent (and signed) on every attempt.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due",
                condition=models.Q(status__in=["pending", "retrying"]),
            ),
            models.Index(fields=["organization", "-id"], name="delivery_org_newest"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} {self.event_type} ({self.status})"


class DeliveryAttempt(models.Model):
    """One HTTP attempt of a delivery, as the customer sees it in the API."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    success = models.BooleanField()
    error = models.CharField(max_length=500, blank=True, default="")
    response_excerpt = models.CharField(max_length=500, blank=True, default="")
    manual = models.BooleanField(default=False, help_text="A replay or a test, not a scheduled attempt.")

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="attempt_number_unique")]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"
