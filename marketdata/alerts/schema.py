"""OpenAPI for the alerts API (drf-spectacular extensions, registered by importing this module).

(Strict bodies, ``additionalProperties: false``, are ``apiplatform.schema.StrictBodyScheme``.)
An alert's ``condition`` is a ``oneOf`` discriminated by ``type`` (price / change / indicator), each
  with its own required members, so a generated client can trust it; the request's indicator variant
  is itself a ``oneOf`` discriminated by ``indicator`` (RSI's level lies between 0 and 100,
  ``macd_signal_cross`` has no level). The schemas are written from the same constants the
  serializer validates with (``conditions``, ``serializers.LEVEL_MAX``); the contract tests
  (tests/contract) hold the two together.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import ComponentIdentity, ResolvedComponent

from marketdata.alerts import conditions
from marketdata.models import TIMEFRAMES


def _level(**bounds: float) -> dict[str, Any]:
    from marketdata.alerts.serializers import LEVEL_MAX

    schema: dict[str, Any] = {"type": "number", "format": "double"}
    schema.update({"minimum": -LEVEL_MAX, "maximum": LEVEL_MAX} | bounds)
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if exclusive in bounds:  # OpenAPI 3.0: a boolean beside the bound
            schema[inclusive] = bounds[exclusive]
            schema[exclusive] = True
    return schema


_DIRECTION = {
    "type": "string",
    "enum": ["above", "below"],
    "description": "Fire when the value crosses to this side of `level`.",
}


def _variant(kind: str, members: dict[str, Any], required: list[str], *, request: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"type": {"type": "string", "enum": [kind]}, "direction": _DIRECTION, **members},
        "required": ["type", "direction", *required],
    }
    if request:
        schema["additionalProperties"] = False
    return schema


def _register(auto_schema, name: str, schema: dict[str, Any]) -> dict[str, str]:
    component = ResolvedComponent(
        name=name, type=ResolvedComponent.SCHEMA, schema=schema, object=ComponentIdentity(name)
    )
    auto_schema.registry.register_on_missing(component)
    return component.ref


def _one_of(refs: dict[str, dict[str, str]], discriminator: str, description: str) -> dict[str, Any]:
    return {
        "oneOf": list(refs.values()),
        "discriminator": {
            "propertyName": discriminator,
            "mapping": {value: ref["$ref"] for value, ref in refs.items()},
        },
        "description": description,
    }


def condition_schema(auto_schema, *, request: bool) -> dict[str, Any]:
    """The condition: ``oneOf`` price / change / indicator, discriminated by ``type``."""
    suffix = "Request" if request else ""
    window = {
        "type": "string",
        "enum": list(conditions.WINDOWS),
        "description": "The window the % change is measured over.",
    }
    timeframe = {
        "type": "string",
        "enum": list(TIMEFRAMES),
        "description": "Closed candles of this timeframe.",
    }
    price = _variant(
        "price",
        {"level": _level(exclusiveMinimum=0) | {"description": "The price level (USD)."}},
        ["level"],
        request=request,
    )
    change = _variant(
        "change",
        {"window": window, "level": _level() | {"description": "Percent, e.g. 5 or -5."}},
        ["window", "level"],
        request=request,
    )
    if request:
        per_indicator = {
            "rsi": ({"level": _level(exclusiveMinimum=0, exclusiveMaximum=100)}, ["level"], "RSI(14)."),
            "macd": ({"level": _level()}, ["level"], "The MACD(12, 26, 9) line."),
            "macd_signal_cross": (
                {"level": _level(minimum=0, maximum=0) | {"description": "Always 0 (may be left out)."}},
                [],
                "The MACD line crossing its signal line (`above`: the bullish cross); no level.",
            ),
        }
        indicator_refs = {}
        for name, (members, required, description) in per_indicator.items():
            schema = _variant(
                "indicator",
                {
                    "indicator": {"type": "string", "enum": [name]},
                    "timeframe": timeframe,
                    **members,
                },
                ["indicator", "timeframe", *required],
                request=True,
            )
            schema["description"] = description
            title = "".join(part.capitalize() for part in name.split("_"))
            indicator_refs[name] = _register(auto_schema, f"{title}IndicatorConditionRequest", schema)
        indicator = _one_of(indicator_refs, "indicator", "An indicator on closed candles crosses `level`.")
    else:
        indicator = _variant(
            "indicator",
            {
                "indicator": {"type": "string", "enum": list(conditions.INDICATORS)},
                "timeframe": timeframe,
                "level": _level(),
            },
            ["indicator", "timeframe", "level"],
            request=False,
        )
        indicator["description"] = "An indicator on closed candles crosses `level`."
    price["description"] = "The price crosses `level`."
    change["description"] = "The % change over `window` crosses `level`."
    refs = {
        "price": _register(auto_schema, f"PriceCondition{suffix}", price),
        "change": _register(auto_schema, f"ChangeCondition{suffix}", change),
        "indicator": _register(auto_schema, f"IndicatorCondition{suffix}", indicator),
    }
    return _one_of(refs, "type", "What the alert watches: one of three kinds, by `type` (docs/alerts.md).")


class ConditionInScheme(OpenApiSerializerExtension):
    target_class = "marketdata.alerts.serializers.ConditionIn"
    priority = 1  # before apiplatform.schema.StrictBodyScheme (ConditionIn is a StrictSerializer)

    def get_name(self, auto_schema, direction):
        return "AlertCondition"

    def map_serializer(self, auto_schema, direction):
        return condition_schema(auto_schema, request=direction == "request")


class ConditionOutScheme(OpenApiSerializerExtension):
    target_class = "marketdata.alerts.serializers.ConditionOut"

    def get_name(self, auto_schema, direction):
        return "AlertCondition"

    def map_serializer(self, auto_schema, direction):
        return condition_schema(auto_schema, request=direction == "request")
