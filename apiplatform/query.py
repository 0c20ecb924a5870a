"""Query-string rules shared by every API view."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError


def known_only(query, allowed: set[str] | frozenset[str]) -> None:
    """Reject unknown query parameters (a typo such as `limt=` should not be silently ignored)."""
    unknown = sorted(set(query.keys()) - allowed)
    if unknown:
        raise ValidationError({name[:60]: ["unknown parameter"] for name in unknown[:10]})
