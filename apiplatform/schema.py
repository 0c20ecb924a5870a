"""OpenAPI pieces shared by every app: the RFC 9457 problem body of all error responses."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import serializers

from apiplatform.problems import PROBLEM_CONTENT_TYPE


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


__all__ = ["PROBLEM_CONTENT_TYPE", "Problem", "problem_response"]
