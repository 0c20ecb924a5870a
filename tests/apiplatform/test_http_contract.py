"""Project-wide HTTP contract: gzip (never on secrets, ETags and 304 intact), problem+json 404 for
every unknown /v1/ path (debug or not), and the OpenAPI pieces every operation shares."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta

import orjson
import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services.organizations import organization_create
from accounts.services.sessions import session_start
from accounts.services.users import email_verification_token, user_verify_email
from apiplatform.middleware import accepts_gzip
from tests.api.conftest import api_key, hour0, market  # noqa: F401  (fixtures)
from tests.gateway.conftest import key_client, plans, tenant  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway.urls")]
PROBLEM = "application/problem+json"


def body_of(response) -> bytes:
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    return gzip.decompress(raw) if response.get("Content-Encoding") == "gzip" else raw


# --- compression ----------------------------------------------------------------------------------
def test_accept_encoding_parsing():
    assert accepts_gzip("gzip") and accepts_gzip("br, gzip;q=0.5") and accepts_gzip("*")
    assert not accepts_gzip("") and not accepts_gzip("gzip;q=0") and not accepts_gzip("br, *;q=0")
    assert not accepts_gzip("identity") and accepts_gzip("deflate, *;q=0.1")


def test_big_answers_are_gzipped_with_a_weak_etag_that_still_revalidates(tenant):  # noqa: F811
    _org, key = tenant()
    client = key_client(key)
    plain = client.get("/v1/test/echo?rows=200")
    assert plain.status_code == 200 and "Content-Encoding" not in plain
    assert plain["ETag"] == '"rows-200"' and "Accept-Encoding" in plain["Vary"]
    zipped = client.get("/v1/test/echo?rows=200", HTTP_ACCEPT_ENCODING="gzip, br")
    assert zipped["Content-Encoding"] == "gzip" and "Accept-Encoding" in zipped["Vary"]
    assert len(zipped.content) < len(plain.content) / 4 and int(zipped["Content-Length"]) == len(
        zipped.content
    )
    assert orjson.loads(gzip.decompress(zipped.content)) == plain.json()
    assert zipped["ETag"] == 'W/"rows-200"'  # same content, not the same bytes
    again = client.get(
        "/v1/test/echo?rows=200", HTTP_ACCEPT_ENCODING="gzip", HTTP_IF_NONE_MATCH=zipped["ETag"]
    )
    assert again.status_code == 304 and again["ETag"] == 'W/"rows-200"' and "Accept-Encoding" in again["Vary"]
    refused = client.get("/v1/test/echo?rows=200", HTTP_ACCEPT_ENCODING="gzip;q=0")
    assert "Content-Encoding" not in refused and refused["ETag"] == '"rows-200"'


def test_small_answers_and_answers_with_a_secret_are_not_compressed(tenant, settings):  # noqa: F811
    _org, key = tenant()
    client = key_client(key)
    small = client.get("/v1/test/echo?rows=2", HTTP_ACCEPT_ENCODING="gzip")
    assert len(small.content) < settings.COMPRESSION_MIN_BYTES and "Content-Encoding" not in small
    secret = client.get("/v1/test/echo?secret=1", HTTP_ACCEPT_ENCODING="gzip")
    assert len(secret.content) > settings.COMPRESSION_MIN_BYTES and "Content-Encoding" not in secret


def test_new_keys_and_token_pairs_are_never_compressed(settings):
    settings.COMPRESSION_MIN_BYTES = 0  # everything else would be compressed
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = User.objects.create_user(email="gzip@example.test", password="correct horse battery staple")
    user = user_verify_email(token=email_verification_token(user=user))  # live keys need a verified address
    organization_create(name="Gzip Org", owner=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session_start(user=user).access}")
    created = client.post("/v1/account/keys", {"name": "k"}, format="json", HTTP_ACCEPT_ENCODING="gzip")
    assert created.status_code == 201 and "Content-Encoding" not in created
    assert created.json()["key"].startswith("cs_")
    pair = APIClient().post(
        "/v1/account/token",
        {"email": "gzip@example.test", "password": "correct horse battery staple"},
        format="json",
        HTTP_ACCEPT_ENCODING="gzip",
    )
    assert pair.status_code == 200 and "Content-Encoding" not in pair and "access" in pair.json()


def test_candles_and_csv_are_gzipped_and_revalidate(api_key, market, hour0):  # noqa: F811
    client = key_client(api_key)
    url = "/v1/coins/bitcoin/candles?timeframe=1h&limit=300"
    plain = client.get(url)
    zipped = client.get(url, HTTP_ACCEPT_ENCODING="gzip")
    assert zipped["Content-Encoding"] == "gzip" and body_of(zipped) == plain.content
    assert zipped["ETag"] == "W/" + plain["ETag"]
    assert client.get(url, HTTP_ACCEPT_ENCODING="gzip", HTTP_IF_NONE_MATCH=zipped["ETag"]).status_code == 304
    csv_plain = client.get(url + "&format=csv")
    csv_zipped = client.get(url + "&format=csv", HTTP_ACCEPT_ENCODING="gzip")
    assert csv_zipped["Content-Encoding"] == "gzip" and body_of(csv_zipped) == body_of(csv_plain)
    start = (hour0 - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    tiny = client.get(f"/v1/coins/bitcoin/candles?timeframe=1h&start={start}", HTTP_ACCEPT_ENCODING="gzip")
    assert tiny.status_code == 200 and "Content-Encoding" not in tiny  # under 1 kB


# --- unknown paths --------------------------------------------------------------------------------
@pytest.mark.parametrize("debug", [True, False])
def test_every_unknown_v1_path_is_a_problem_json_404(settings, debug):
    settings.DEBUG = debug
    client = APIClient()
    slash = client.get("/v1/prices/")
    assert slash.status_code == 404 and slash["Content-Type"] == PROBLEM
    problem = slash.json()
    assert problem["type"].endswith("/problems/not-found") and problem["instance"] == "/v1/prices/"
    assert "did you mean /v1/prices " in problem["detail"]
    for path in ("/v1/nope", "/v1/coins/bitcoin/candles/", "/v1/account/nope", "/v1/", "/v1/prices/x/y"):
        response = client.post(path) if path.endswith("y") else client.get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == PROBLEM, path
        assert "URLconf" not in response.content.decode() and response.json()["request_id"]
    assert client.get("/v1/schema").status_code == 301  # APPEND_SLASH still leads to the real page


def test_a_views_own_404_keeps_its_detail(api_key, market):  # noqa: F811
    response = key_client(api_key).get("/v1/coins/nosuchcoin")
    assert response.status_code == 404 and "nosuchcoin" in response.json()["detail"]


# --- OpenAPI: security alternatives, problem+json errors, tags ------------------------------------
@pytest.fixture(scope="module")
def openapi() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


# Public routes that take no credentials at all: reporting a published key (anyone may).
PUBLIC_WITHOUT_CREDENTIALS = {"/v1/keys/revoke-leaked"}


def test_api_key_schemes_are_alternatives_and_jwt_is_its_own(openapi):
    for path, operations in openapi["paths"].items():
        for method, op in operations.items():
            security = op.get("security", [])
            if path.startswith("/v1/account/"):
                assert security in ([{"jwtAuth": []}], [{}]), (path, method, security)
            elif path in PUBLIC_WITHOUT_CREDENTIALS:
                assert security == [{}], (path, method, security)
            else:
                assert security == [{"ApiKeyBearer": []}, {"ApiKeyHeader": []}], (path, method, security)
    assert set(openapi["components"]["securitySchemes"]) == {"ApiKeyBearer", "ApiKeyHeader", "jwtAuth"}


def test_every_error_response_is_documented_as_problem_json(openapi):
    for path, operations in openapi["paths"].items():
        for method, op in operations.items():
            for code, response in op["responses"].items():
                if code.isdigit() and int(code) >= 400:
                    assert list(response.get("content", {})) == [PROBLEM], (path, method, code)


def test_ping_and_limits_have_the_tags_of_the_docs(openapi):
    assert openapi["paths"]["/v1/ping"]["get"]["tags"] == ["service"]
    assert openapi["paths"]["/v1/limits"]["get"]["tags"] == ["limits"]
    text = json.dumps(openapi)
    assert '"account"' in text  # the management API keeps its tag
