"""``/coins/list``: every listed coin, sorted by id as upstream sorts it."""

from __future__ import annotations

from ..protocol import truthy
from ..state import SimState


def coins_list(state: SimState, params: dict, now_ms: int) -> list[dict]:
    u = state.universe
    if params.get("status", "active") == "inactive":
        return []
    with_platforms = truthy(params.get("include_platform"))
    out: list[dict] = []
    for i, cid in sorted(enumerate(u.ids), key=lambda pair: pair[1]):  # upstream sorts by id
        if u.listed_ms[i] > now_ms:
            continue
        item: dict[str, object] = {"id": cid, "symbol": u.symbols[i], "name": u.names[i]}
        if with_platforms:
            item["platforms"] = {}
        out.append(item)
    return out
