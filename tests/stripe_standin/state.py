"""The stand-in's memory: stored objects by kind, meter events, idempotency keys, the request log,
the injected fault and the clock. One lock guards all of it (the server holds it per request)."""

from __future__ import annotations

import copy
import secrets
import string
import threading
import time
from dataclasses import dataclass
from typing import Any

from . import forms
from .errors import StripeError, no_such

KINDS = (
    "customers",
    "products",
    "prices",
    "meters",
    "checkout_sessions",
    "portal_sessions",
    "subscriptions",
    "invoices",
)
_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


@dataclass
class Fault:
    mode: str  # "error" | "slow" | "down"
    path_prefix: str
    count: int | None  # None: until changed
    delay: float


@dataclass
class Stored:
    """An idempotent request's first answer, replayed for the same key and parameters."""

    fingerprint: tuple[str, str, str]
    status: int
    body: dict[str, Any]


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self.meter_events: dict[str, dict[str, Any]] = {}  # identifier -> record
        self.idempotency: dict[tuple[str, str], Stored] = {}  # (api key, Idempotency-Key) -> answer
        self.requests: list[dict[str, Any]] = []
        self.fault: Fault | None = None
        self.fixed_now: int | None = None
        self.invoice_seq = 0
        self.generation += 1  # a request that began before the reset is dropped

    def now(self) -> int:
        return self.fixed_now if self.fixed_now is not None else int(time.time())

    # --- faults ---------------------------------------------------------------------------------

    def take_fault(self, path: str) -> Fault | None:
        """The fault that applies to this request (using up one of its ``count``), or None."""
        fault = self.fault
        if fault is None or not path.startswith(fault.path_prefix):
            return None
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                self.fault = None
        return fault

    # --- objects --------------------------------------------------------------------------------

    def add(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[kind][obj["id"]] = obj
        return obj

    def get(self, kind: str, object_id: str, *, label: str, param: str | None = None) -> dict[str, Any]:
        """The stored object or a Stripe ``resource_missing`` (404 in the path, 400 as a parameter)."""
        obj = self.objects[kind].get(object_id)
        if obj is None:
            raise no_such(label, object_id, param=param)
        return obj

    def find(self, object_id: str) -> dict[str, Any] | None:
        for kind in KINDS:
            if object_id in self.objects[kind]:
                return self.public(self.objects[kind][object_id])
        return None

    def private(self, object_id: str, field: str) -> Any:
        """A private field (``_line_items``) of a stored object, shown only when expanded."""
        for kind in KINDS:
            obj = self.objects[kind].get(object_id)
            if obj is not None and f"_{field}" in obj:
                return copy.deepcopy(obj[f"_{field}"])
        return None

    def newest_first(self, kind: str) -> list[dict[str, Any]]:
        """Stripe lists newest first; objects created in the same second keep creation order reversed."""
        items = list(self.objects[kind].values())
        order = sorted(range(len(items)), key=lambda i: (items[i]["created"], i), reverse=True)
        return [items[i] for i in order]

    def public(self, obj: dict[str, Any]) -> dict[str, Any]:
        """What the API returns for a stored object: a copy without the stand-in's private fields
        (``_name``), with the current price embedded in subscription items (as Stripe does)."""
        if obj.get("deleted"):
            return {"id": obj["id"], "object": obj["object"], "deleted": True}
        out = {key: copy.deepcopy(value) for key, value in obj.items() if not key.startswith("_")}
        if out["object"] == "subscription":
            for item in out["items"]["data"]:
                item["price"] = self.public(self.objects["prices"][item["price"]])
        return out


# --- lists and expansion -------------------------------------------------------------------------


def page(items: list[dict[str, Any]], params: dict[str, Any], url: str, label: str) -> dict[str, Any]:
    """Stripe's list object over ``items`` (already newest first): ``limit`` (1..100, default 10) and
    the ``starting_after`` / ``ending_before`` cursors."""
    limit = forms.integer(params, "limit", minimum=1)
    limit = 10 if limit is None else limit
    if limit > 100:
        raise StripeError(400, "This value must be less than or equal to 100.", param="limit")
    after = forms.string(params, "starting_after")
    before = forms.string(params, "ending_before")
    if after and before:
        raise StripeError(400, "You may only specify one of these parameters: ending_before, starting_after.")
    ids = [item["id"] for item in items]
    if after or before:
        cursor = after or before
        if cursor not in ids:
            raise no_such(label, str(cursor), param="starting_after" if after else "ending_before")
        index = ids.index(str(cursor))
    if after:
        data, has_more = items[index + 1 : index + 1 + limit], index + 1 + limit < len(items)
    elif before:
        data, has_more = items[max(0, index - limit) : index], index > limit
    else:
        data, has_more = items[:limit], len(items) > limit
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def expand(state: State, body: dict[str, Any], paths: list[Any]) -> dict[str, Any]:
    """Apply ``expand[]`` paths (``customer``, ``data.product``, ``items.data.price.product``): an id
    at the end of a path becomes its object; private fields (a session's line items) become visible."""
    for path in paths:
        if not isinstance(path, str) or not path:
            raise StripeError(400, "Invalid expand parameter", param="expand")
        _expand(state, body, path.split("."), path)
    return body


def _expand(state: State, node: Any, parts: list[str], path: str) -> Any:
    if isinstance(node, list):
        return [_expand(state, item, parts, path) for item in node]
    if isinstance(node, str):
        found = state.find(node)
        node = found if found is not None else node
    if not isinstance(node, dict):
        return node
    head, rest = parts[0], parts[1:]
    if head not in node:
        private = state.private(node["id"], head) if "id" in node else None
        if private is None:
            raise StripeError(400, f"This property cannot be expanded ({path}).", param="expand")
        node[head] = private
    node[head] = _expand(state, node[head], rest, path) if rest else _expand_leaf(state, node[head])
    return node


def _expand_leaf(state: State, value: Any) -> Any:
    if isinstance(value, str):
        found = state.find(value)
        return found if found is not None else value
    return value
