"""OpenAPI pieces shared by every app: the RFC 9457 problem body of all error responses, and the
project's schema class, which documents every error response as ``application/problem+json``."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import serializers

from apiplatform.problems import PROBLEM_CONTENT_TYPE
from apiplatform.serializers import PatchSerializer


class Problem(serializers.Serializer):
    """RFC 9457 problem details (see /problems/)."""

    type = serializers.URLField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    instance = serializers.CharField(required=False)
    request_id = serializers.CharField(allow_null=True)
    # RFC 9457's member is named "errors", which shadows Serializer.errors (the bound instance's
    # validation errors, never used on this documentation-only serializer).
    errors = serializers.ListField(  # type: ignore[assignment]  # see above
        child=inline_serializer(
            "ParameterError", {"parameter": serializers.CharField(), "detail": serializers.CharField()}
        ),
        required=False,
        help_text="validation-error only: each invalid parameter and what is wrong with it.",
    )
    upgrade_url = serializers.URLField(
        required=False, help_text="plan-upgrade-required and quota-exceeded only: where to upgrade."
    )


def problem_response(description: str, example: dict | None = None) -> OpenApiResponse:
    """An error response documented with the problem body (and an example when given)."""
    return OpenApiResponse(
        Problem,
        description=description,
        examples=[OpenApiExample("problem", value=example, response_only=True)] if example else None,
    )


NO_NUL = "^[^\\u0000]*$"  # DRF refuses NUL in every CharField ("Null characters are not allowed.")
NOT_BLANK_NO_NUL = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"  # ... and a trimmed, non-blank one: some non-space


class ProblemAutoSchema(AutoSchema):
    """The project's schema class (``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``): a 4xx/5xx response
    is documented as what it is served as, a :class:`Problem` body of media type
    ``application/problem+json``, unless the operation names another body or media type for it."""

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        """A request string field states what DRF's CharField refuses besides its length: NUL
        characters, and (trimmed, ``allow_blank=False``) a value of white space only. Fields with a
        pattern, format or enum of their own are left as they are (those already exclude both)."""
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if (
            direction == "request"
            and isinstance(field, serializers.CharField)
            and schema.get("type") == "string"
            and not {"pattern", "format", "enum"} & set(schema)
        ):
            blank_refused = field.trim_whitespace and not field.allow_blank
            schema["pattern"] = NOT_BLANK_NO_NUL if blank_refused else NO_NUL
        return schema

    def _get_response_for_code(self, serializer, status_code, media_types=None, direction="response"):
        code = str(status_code)
        if code.isdigit() and int(code) >= 400:
            media_types = media_types or [PROBLEM_CONTENT_TYPE]
            if serializer is None:
                serializer = Problem
            elif isinstance(serializer, OpenApiResponse) and serializer.response is None:
                serializer = OpenApiResponse(
                    Problem, description=serializer.description, examples=serializer.examples
                )
        return super()._get_response_for_code(serializer, status_code, media_types, direction)


__all__ = [
    "NOT_BLANK_NO_NUL",
    "NO_NUL",
    "PROBLEM_CONTENT_TYPE",
    "Problem",
    "ProblemAutoSchema",
    "problem_response",
]


class StrictBodyScheme(OpenApiSerializerExtension):
    """``apiplatform.serializers.StrictSerializer`` bodies: ``additionalProperties: false``, and a
    ``PatchSerializer`` body also ``minProperties: 1``."""

    target_class = "apiplatform.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        if direction == "request":
            schema["additionalProperties"] = False
            if isinstance(self.target, PatchSerializer) or (
                isinstance(self.target, type) and issubclass(self.target, PatchSerializer)
            ):
                schema["minProperties"] = 1
        return schema
