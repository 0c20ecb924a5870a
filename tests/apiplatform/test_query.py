"""Query-parameter rules shared by the API's views (apiplatform.query)."""

from __future__ import annotations

import pytest
from django.http import QueryDict
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from apiplatform.query import QuerySerializer, known_only


class _Query(QuerySerializer):
    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, default=10)


def test_an_explicitly_empty_parameter_is_refused_not_taken_as_absent():
    assert _Query(data=QueryDict("limit=5")).is_valid()
    query = _Query(data=QueryDict("cursor=&limit=5"))
    assert not query.is_valid()
    assert "cursor" in query.errors
    # plain DRF would have taken it as absent (an HTML form's empty field)
    plain = serializers.Serializer
    assert type("Plain", (plain,), {"cursor": serializers.CharField(required=False)})(
        data=QueryDict("cursor=")
    ).is_valid()


def test_a_query_serializer_refuses_unknown_parameters():
    query = _Query(data=QueryDict("limt=5"))
    assert not query.is_valid() and "limt" in query.errors


def test_unknown_parameters_are_refused():
    known_only(QueryDict("limit=5"), {"limit"})
    with pytest.raises(ValidationError) as refused:
        known_only(QueryDict("limt=5"), {"limit"})
    assert "limt" in refused.value.detail
