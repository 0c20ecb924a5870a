"""``/ping`` and ``/key``: about the service, not the market."""

from __future__ import annotations

from ..state import SimState


def ping() -> dict:
    return {"gecko_says": "(V3) To the Moon!"}


def key_usage(state: SimState) -> dict:
    """``/key`` (pro host only): the plan and this run's call counts."""
    calls = int(state.stats["api_requests"])
    return {
        "plan": "Other",
        "rate_limit_request_per_minute": state.config.rate_limit_per_min or 1000,
        "monthly_call_credit": 1000000,
        "current_total_monthly_calls": calls,
        "current_remaining_monthly_calls": max(0, 1000000 - calls),
    }
