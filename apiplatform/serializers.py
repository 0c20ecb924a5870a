"""Request serializers shared by every app's API: bodies that refuse what they do not know."""

from __future__ import annotations

from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """Unknown members are a 400 validation-error, not silently ignored."""

    # The docstrings here are the OpenAPI descriptions of every body built on these classes. Nested
    # serializers are checked too; apiplatform.schema.StrictBodyScheme documents the request schema
    # as additionalProperties: false (and, for a PatchSerializer, minProperties: 1).

    def to_internal_value(self, data):
        if hasattr(data, "keys"):  # nested serializers too (they have no initial_data)
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(dict.fromkeys(unknown, "unknown field"))
        return super().to_internal_value(data)


class PatchSerializer(StrictSerializer):
    """A PATCH body: send at least one of its members and no other (an empty body or an unknown
    member is a 400 validation-error)."""

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if not attrs:
            raise serializers.ValidationError(f"send at least one of: {', '.join(self.fields)}")
        return attrs
