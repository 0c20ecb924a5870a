"""Query-string rules shared by every API view."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.exceptions import ValidationError


def known_only(query, allowed: set[str] | frozenset[str]) -> None:
    """Reject unknown query parameters (a typo such as `limt=` should not be silently ignored)."""
    unknown = sorted(set(query.keys()) - allowed)
    if unknown:
        raise ValidationError({name[:60]: ["unknown parameter"] for name in unknown[:10]})


class QuerySerializer(serializers.Serializer):
    """A serializer of query parameters that refuses unknown parameters (:func:`known_only`) and an
    explicitly empty value (``?cursor=``): DRF treats that as absent, like an HTML form's empty
    field, while the schema says the parameter is a non-empty string."""

    def to_internal_value(self, data):
        known_only(data, frozenset(self.fields))
        blank = [name for name in self.fields if name in data and data.get(name) == ""]
        if blank:
            raise ValidationError({name: ["This field may not be blank."] for name in blank})
        return super().to_internal_value(data)
