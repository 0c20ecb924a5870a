"""Filters of the operations console's templates: durations written like ``manage.py doctor`` writes them."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template

from apiplatform.ops.doctor import _age

register = template.Library()


@register.filter
def age(delta: timedelta | None) -> str:
    """``3 min``, ``2 h``; ``never`` for None."""
    return _age(delta)


@register.filter
def ago(when: datetime | None, now: datetime) -> str:
    """How long before ``now`` ``when`` was (``never`` for None)."""
    return _age(max(now - when, timedelta(0)) if when is not None else None)


@register.filter
def cents(value: int | None) -> str:
    """12345 -> ``123.45``."""
    return f"{(value or 0) / 100:,.2f}"
