"""OpenAPI for the alerts' request bodies: a ``StrictSerializer`` refuses unknown members (400), so its
schema says ``additionalProperties: false`` (a generated client and schemathesis then know it)."""

from drf_spectacular.extensions import OpenApiSerializerExtension


class StrictBodyScheme(OpenApiSerializerExtension):
    target_class = "marketdata.alerts.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema
