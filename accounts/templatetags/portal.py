"""Template filters of the portal's pages (accounts/templates/portal/)."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def money(cents: int | None, currency: str = "usd") -> str:
    """1234 → "$12.34" (other currencies: "12.34 EUR")."""
    amount = f"{(cents or 0) / 100:,.2f}"
    return f"${amount}" if currency.lower() == "usd" else f"{amount} {currency.upper()}"


@register.filter
def intcomma_plain(value: int | None) -> str:
    """1234567 → "1,234,567"."""
    return f"{int(value or 0):,}"
