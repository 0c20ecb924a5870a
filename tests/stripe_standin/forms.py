"""Stripe's form encoding (bracket notation) decoded into nested dicts and lists, and the typed
readers the resource handlers use for each parameter (each raises a Stripe-shaped 400)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from .errors import StripeError

_NAME = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")
_WHOLE = re.compile(r"^[0-9]+$")
# Dicts whose keys are user data: never turned into lists even when the keys are digits.
_FREE_FORM = {"metadata", "payload"}


def decode(query: str) -> dict[str, Any]:
    """``a[b][c]=v&items[0][price]=p&expand[]=x`` -> ``{"a": {"b": {"c": "v"}}, "items": [{"price":
    "p"}], "expand": ["x"]}``. Values stay strings (Stripe's form carries no types)."""
    root: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        match = _NAME.match(name)
        if not match:
            raise StripeError(400, f"Invalid parameter name: {name}", param=name)
        parts = [match.group(1), *_PART.findall(match.group(2))]
        node = root
        for depth, part in enumerate(parts):
            key = part if part != "" else str(len(node))  # "x[]" appends
            if depth == len(parts) - 1:
                if isinstance(node.get(key), dict):
                    raise StripeError(
                        400, f"Invalid parameter: {name} is both a value and a hash", param=name
                    )
                node[key] = value
            else:
                child = node.setdefault(key, {})
                if not isinstance(child, dict):
                    raise StripeError(
                        400, f"Invalid parameter: {name} is both a value and a hash", param=name
                    )
                node = child
    return _listify(root, parent="")


def _listify(node: dict[str, Any], parent: str) -> Any:
    out = {key: _listify(value, key) if isinstance(value, dict) else value for key, value in node.items()}
    if out and parent not in _FREE_FORM and all(_WHOLE.match(key) for key in out):
        return [out[key] for key in sorted(out, key=int)]
    return out


# --- typed parameter readers -----------------------------------------------------------------------


def missing(name: str) -> StripeError:
    return StripeError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)


def reject_unknown(params: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
    """Stripe refuses a parameter it does not know (``parameter_unknown``): so does the stand-in,
    which catches a client sending what the real API would refuse."""
    for key in params:
        if key not in allowed and key != "expand":
            name = f"{prefix}[{key}]" if prefix else key
            raise StripeError(
                400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
            )


def string(params: dict[str, Any], name: str, *, required: bool = False, max_len: int = 5000) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing(name)
        return None
    if not isinstance(value, str):
        raise StripeError(400, f"Invalid string: {name} must be a string", param=name)
    if len(value) > max_len:
        raise StripeError(400, f"Invalid string: {name} must be at most {max_len} characters", param=name)
    return value


def integer(
    params: dict[str, Any], name: str, *, required: bool = False, minimum: int | None = None
) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing(name)
        return None
    if not isinstance(value, str) or not re.fullmatch(r"-?[0-9]+", value):
        raise StripeError(400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=name)
    number = int(value)
    if minimum is not None and number < minimum:
        raise StripeError(
            400,
            f"This value must be greater than or equal to {minimum}.",
            code="parameter_invalid_integer",
            param=name,
        )
    return number


def boolean(params: dict[str, Any], name: str) -> bool | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if value not in ("true", "false"):
        raise StripeError(400, f"Invalid boolean: {value}", param=name)
    return value == "true"


def choice(
    params: dict[str, Any], name: str, choices: tuple[str, ...], *, required: bool = False
) -> str | None:
    value = string(params, name, required=required)
    if value is not None and value not in choices:
        raise StripeError(400, f"Invalid {name}: must be one of {', '.join(choices)}", param=name)
    return value


def mapping(params: dict[str, Any], name: str, *, required: bool = False) -> dict[str, Any]:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing(name)
        return {}
    if not isinstance(value, dict):
        raise StripeError(400, f"Invalid object: {name} must be a hash", param=name)
    return value


def sequence(params: dict[str, Any], name: str) -> list[Any]:
    value = params.get(name)
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise StripeError(400, f"Invalid array: {name} must be an array", param=name)
    return value


def metadata(current: dict[str, str], params: dict[str, Any]) -> dict[str, str]:
    """Stripe's metadata update: keys merge, an empty value deletes its key, ``metadata=""`` clears all.
    Stripe's limits: 50 keys, key up to 40 characters, value up to 500."""
    if "metadata" not in params:
        return current
    value = params["metadata"]
    if value == "":
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise StripeError(400, "Invalid object: metadata must be a hash of strings", param="metadata")
    merged = dict(current)
    for key, item in value.items():
        if len(key) > 40:
            raise StripeError(400, f"Metadata key {key!r} is longer than 40 characters", param="metadata")
        if len(item) > 500:
            raise StripeError(
                400, f"Metadata value of {key!r} is longer than 500 characters", param="metadata"
            )
        if item == "":
            merged.pop(key, None)
        else:
            merged[key] = item
    if len(merged) > 50:
        raise StripeError(400, "Metadata can have at most 50 keys", param="metadata")
    return merged
