"""Input and output shapes of the alerts API (docs/alerts.md). No rule lives here beyond the shape:
the services decide."""

from __future__ import annotations

import json
import math

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apiplatform.serializers import PatchSerializer, StrictSerializer
from marketdata.alerts import conditions
from marketdata.alerts.models import Alert, Delivery, DeliveryAttempt, WebhookEndpoint
from marketdata.models import TIMEFRAMES

MAX_COOLDOWN = 30 * 24 * 3600
#: The largest level (in absolute value) an alert takes: far above any price, % change or indicator.
LEVEL_MAX = 1e12


class LevelField(serializers.FloatField):
    """A finite number; an integer too large for a float is invalid (400), not an OverflowError."""

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except OverflowError:
            self.fail("invalid")


class ConditionIn(StrictSerializer):
    """A condition; its OpenAPI schema is a oneOf discriminated by ``type`` (``marketdata.alerts.schema``)."""

    type = serializers.ChoiceField(
        choices=[a.value for a in Alert.Kind],
        help_text="`price`: the price crosses `level`; `change`: the % change over `window` crosses "
        "`level` (in percent, e.g. 5 or -5); `indicator`: `indicator` on closed `timeframe` candles "
        "crosses `level`.",
    )
    direction = serializers.ChoiceField(
        choices=["above", "below"], help_text="Fire when the value crosses to this side of `level`."
    )
    level = LevelField(
        required=False,
        min_value=-LEVEL_MAX,
        max_value=LEVEL_MAX,
        help_text="The level (not for `macd_signal_cross`, whose level is 0).",
    )
    window = serializers.ChoiceField(
        choices=list(conditions.WINDOWS), required=False, help_text="`change` only."
    )
    indicator = serializers.ChoiceField(
        choices=list(conditions.INDICATORS),
        required=False,
        help_text="`indicator` only: `rsi` (14), `macd` (the 12/26/9 line), `macd_signal_cross` (the "
        "MACD line crossing its signal line: `above` = bullish cross).",
    )
    timeframe = serializers.ChoiceField(
        choices=list(TIMEFRAMES), required=False, help_text="`indicator` only."
    )

    def validate(self, attrs):
        attrs = super().validate(attrs)
        kind = attrs["type"]
        allowed = {"price": set(), "change": {"window"}, "indicator": {"indicator", "timeframe"}}[kind]
        errors: dict[str, str] = {}
        for name in ("window", "indicator", "timeframe"):
            if name in attrs and name not in allowed:
                errors[name] = f"not used by a {kind} condition"
            elif name not in attrs and name in allowed:
                errors[name] = f"required by a {kind} condition"
        fixed = attrs.get("indicator") in conditions.FIXED_LEVEL
        level = attrs.get("level")
        if fixed:
            if level is not None and level != conditions.FIXED_LEVEL[attrs["indicator"]]:
                errors["level"] = "macd_signal_cross has no level (it is the signal line)"
        elif level is None:
            errors["level"] = "required"
        elif not math.isfinite(level):
            errors["level"] = "must be a finite number"
        elif kind == "price" and level <= 0:
            errors["level"] = "a price level is positive"
        elif attrs.get("indicator") == "rsi" and not 0 < level < 100:
            errors["level"] = "RSI lies between 0 and 100"
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class AlertIn(StrictSerializer):
    coin = serializers.CharField(max_length=200, help_text="Coin id, e.g. `bitcoin`.")
    condition = ConditionIn()
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    endpoint_id = serializers.IntegerField(
        required=False, min_value=1, help_text="One of your webhook endpoints (or give `webhook_url`)."
    )
    webhook_url = serializers.CharField(
        max_length=2000,
        required=False,
        help_text="Shorthand: an endpoint for this URL is created (its `webhook_secret` is in this "
        "answer, once) or, if you have one already, reused.",
    )
    cooldown_seconds = serializers.IntegerField(
        required=False,
        default=0,
        min_value=0,
        max_value=MAX_COOLDOWN,
        help_text="No firing again within this.",
    )

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if ("endpoint_id" in attrs) == ("webhook_url" in attrs):
            raise serializers.ValidationError(
                {"endpoint_id": "give exactly one of endpoint_id and webhook_url"}
            )
        return attrs


class AlertPatchIn(PatchSerializer):
    condition = ConditionIn(required=False)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    endpoint_id = serializers.IntegerField(required=False, min_value=1)
    cooldown_seconds = serializers.IntegerField(required=False, min_value=0, max_value=MAX_COOLDOWN)
    active = serializers.BooleanField(required=False)


class ConditionOut(serializers.Serializer):
    """A condition as answered; its OpenAPI schema is a oneOf discriminated by ``type``."""

    type = serializers.CharField()
    direction = serializers.CharField()
    level = serializers.FloatField()
    window = serializers.CharField(required=False)
    indicator = serializers.CharField(required=False)
    timeframe = serializers.CharField(required=False)


class AlertStateOut(serializers.Serializer):
    side = serializers.CharField(
        source="last_side", help_text="Where the value was at the last change (empty: not seen yet)."
    )
    value = serializers.FloatField(source="last_value", allow_null=True)
    changed_at = serializers.DateTimeField(source="last_evaluated_at", allow_null=True)
    last_fired_at = serializers.DateTimeField(allow_null=True)
    fired_count = serializers.IntegerField()


class AlertOut(serializers.ModelSerializer):
    coin = serializers.CharField(source="coin.upstream_id")
    condition = serializers.SerializerMethodField()
    state = AlertStateOut(source="*")

    class Meta:
        model = Alert
        fields = [
            "id", "name", "coin", "condition", "endpoint_id", "cooldown_seconds", "active",
            "created_at", "updated_at", "state",
        ]  # fmt: skip

    def get_condition(self, alert: Alert) -> ConditionOut:
        return conditions.condition_of(alert)  # type: ignore[return-value]  # documented shape


class AlertCreatedOut(AlertOut):
    webhook_secret = serializers.CharField(
        allow_null=True,
        help_text="The signing secret of the endpoint created for `webhook_url`: shown only now. Null "
        "when an existing endpoint was used.",
    )

    class Meta(AlertOut.Meta):
        fields = [*AlertOut.Meta.fields, "webhook_secret"]


class EndpointIn(StrictSerializer):
    url = serializers.CharField(max_length=2000, help_text="A public `https://` URL.")
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class EndpointPatchIn(PatchSerializer):
    url = serializers.CharField(max_length=2000, required=False)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)


class EndpointOut(serializers.ModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "created_at", "secret_rotated_at"]


class EndpointSecretOut(EndpointOut):
    secret = serializers.CharField(help_text="The signing secret (`whsec_…`): shown only in this answer.")

    class Meta(EndpointOut.Meta):
        fields = [*EndpointOut.Meta.fields, "secret"]


class AttemptOut(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "number", "started_at", "duration_ms", "status_code", "success", "error",
            "response_excerpt", "manual",
        ]  # fmt: skip


class DeliveryOut(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = [
            "id", "event_id", "event_type", "alert_id", "endpoint_id", "status", "attempts", "created_at",
            "next_attempt_at", "last_attempt_at", "delivered_at",
        ]  # fmt: skip


class EventAlertOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    coin = serializers.CharField()
    condition = ConditionOut()
    cooldown_seconds = serializers.IntegerField()


class EventEndpointOut(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()


class EventDataOut(serializers.Serializer):
    """``alert.triggered``: alert, value, previous_side, side, price, at; ``webhook.test``: endpoint,
    message."""

    alert = EventAlertOut(required=False)
    value = serializers.FloatField(required=False, help_text="The compared value when the alert fired.")
    previous_side = serializers.CharField(required=False)
    side = serializers.CharField(required=False)
    price = serializers.FloatField(required=False, allow_null=True)
    at = serializers.CharField(required=False)
    endpoint = EventEndpointOut(required=False)
    message = serializers.CharField(required=False)


class EventOut(serializers.Serializer):
    """The event a delivery sends (docs/alerts.md, "Deliveries")."""

    id = serializers.CharField(help_text="Event id (`evt_…`), also in `Candlestack-Event-Id`.")
    type = serializers.CharField(help_text="`alert.triggered` or `webhook.test`.")
    api_version = serializers.CharField()
    created = serializers.CharField(help_text="When the event happened (ISO 8601, UTC).")
    data = EventDataOut()  # type: ignore[assignment]  # the member "data" (DRF moves fields off the class)


class DeliveryDetailOut(DeliveryOut):
    payload = serializers.SerializerMethodField(
        help_text="The event exactly as it is sent (the signed body)."
    )
    attempt_list = AttemptOut(many=True, source="attempt_rows", help_text="Every attempt, oldest first.")

    class Meta(DeliveryOut.Meta):
        fields = [*DeliveryOut.Meta.fields, "payload", "attempt_list"]

    @extend_schema_field(EventOut)
    def get_payload(self, delivery: Delivery) -> dict:
        return json.loads(delivery.body)


class DeliveryQuery(StrictSerializer):
    alert = serializers.IntegerField(required=False, min_value=1)
    endpoint = serializers.IntegerField(required=False, min_value=1)
    status = serializers.ChoiceField(choices=[s.value for s in Delivery.Status], required=False)
    before = serializers.IntegerField(required=False, min_value=1, help_text="Deliveries older than this id.")
    limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=200)


class DeliveryPageOut(serializers.Serializer):
    results = DeliveryOut(many=True)
    next_before = serializers.IntegerField(
        allow_null=True, help_text="`before` of the next page (null: last)."
    )
