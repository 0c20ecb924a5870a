"""Browser keys: restricted to origins, read-only, CORS answered for them and only for them; secret
keys refused from browsers. Requests are made as a browser makes them (Origin header, preflight)."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.exceptions import ValidationError
from rest_framework.test import APIClient, APIRequestFactory

from accounts import keycache, keyformat, origins, principal
from accounts.authentication import ApiKeyAuthentication
from accounts.models import ApiKey
from accounts.services.api_keys import api_key_create, api_key_rotate
from apiplatform.problems import registered

from .conftest import owner_of
from .test_warm_path import RedisCalls

pytestmark = pytest.mark.urls("tests.accounts.public_urls")
URL = "/v1/test/whoami"
APP = "https://app.example.com"
EXPOSED = {"RateLimit", "RateLimit-Policy", "Retry-After", "X-Request-ID", "ETag", "Link"}


def call(key: str, origin: str | None = None, *, method: str = "get", **extra):
    if origin is not None:
        extra["HTTP_ORIGIN"] = origin
    return getattr(APIClient(), method)(URL, HTTP_AUTHORIZATION=f"Bearer {key}", **extra)


def slug(response) -> str:
    assert response["Content-Type"].startswith("application/problem+json"), response.content
    return response.json()["type"].rsplit("/", 1)[-1]


def cors_headers(response) -> set[str]:
    return {name for name in response.headers if name.lower().startswith("access-control-")}


def varies_on_origin(response) -> bool:
    return "origin" in {v.strip().lower() for v in response.get("Vary", "").split(",")}


@pytest.fixture
def browser_key(make_org, make_key):
    def make(allowed_origins=(APP,), **kwargs):
        return make_key(make_org(), kind="browser", allowed_origins=list(allowed_origins), **kwargs)

    return make


# --- the key format ----------
def test_browser_keys_are_marked_in_the_prefix_and_secret_key_format_is_unchanged(
    browser_key, make_org, make_key
):
    api_key, full = browser_key()
    assert re.fullmatch(r"cs_pub_live_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}", full)
    assert api_key.prefix == f"cs_pub_live_{api_key.key_id}" and full.startswith(api_key.prefix + "_")
    assert re.fullmatch(keyformat.KEY_RE, full)
    parsed = keyformat.parse_key(full)
    assert (parsed.kind, parsed.environment, parsed.key_id) == ("browser", "live", api_key.key_id)
    # Secret scanners keep their regex and do not flag browser keys, which are public by design.
    assert not re.search(keyformat.SCANNER_REGEX, f"const KEY = '{full}';")
    assert re.search(keyformat.BROWSER_KEY_REGEX, f"const KEY = '{full}';")
    _secret, secret_full = make_key(make_org())
    assert re.fullmatch(r"cs_live_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}", secret_full)
    assert keyformat.parse_key(secret_full).kind == "secret"
    assert re.search(keyformat.SCANNER_REGEX, secret_full)
    # The kind mark is covered by the checksum: removing it makes the key malformed.
    with pytest.raises(keyformat.MalformedKey):
        keyformat.parse_key(full.replace("cs_pub_", "cs_", 1))


def test_documented_regexes_match_the_code():
    from tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "docs" / "accounts.md").read_text()
    assert keyformat.KEY_RE.pattern in text
    assert keyformat.SCANNER_REGEX in text
    assert keyformat.BROWSER_KEY_REGEX in text
    assert origins.ORIGIN_PATTERN in text


# --- origin rules ----------
@pytest.mark.parametrize(
    ("entry", "stored"),
    [
        ("https://app.example.com", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://example.com:80", "http://example.com"),
        ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
        ("https://*.example.com", "https://*.example.com"),
        ("https://*.example.com:8443", "https://*.example.com:8443"),
    ],
)
def test_valid_origins_are_stored_as_browsers_send_them(entry, stored):
    assert origins.normalise(entry) == stored


@pytest.mark.parametrize(
    "entry",
    [
        "app.example.com",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://App.Example.com",
        "ftp://example.com",
        "https://example.com:0",
        "https://example.com:65536",
        "https://*.com",
        "https://*example.com",
        "https://a.*.example.com",
        "*",
        "null",
        " https://app.example.com",
        "https://user@example.com",
        "https://-bad.example.com",
    ],
)
def test_invalid_origins_are_refused(entry):
    with pytest.raises(origins.InvalidOrigin):
        origins.normalise(entry)
    assert not re.fullmatch(origins.ORIGIN_PATTERN, entry)


def test_wildcard_matches_subdomains_only_on_a_label_boundary():
    rules = origins.rules(["https://*.example.com", "http://localhost:3000"])
    assert rules.allows("https://a.example.com") and rules.allows("https://a.b.example.com")
    assert rules.allows("http://localhost:3000")
    for other in (
        "https://example.com",
        "https://evilexample.com",
        "https://a.example.com.evil.test",
        "http://a.example.com",
        "https://a.example.com:8443",
        "http://localhost:3001",
        "https://.example.com",
        "null",
    ):
        assert not rules.allows(other), other


# --- requests from a browser ----------
def test_browser_key_from_an_allowed_origin_gets_cors_headers(browser_key):
    _api_key, full = browser_key()
    response = call(full, APP)
    assert response.status_code == 200, response.content
    assert response["Access-Control-Allow-Origin"] == APP
    assert varies_on_origin(response)
    exposed = {h.strip() for h in response["Access-Control-Expose-Headers"].split(",")}
    assert exposed == EXPOSED
    assert "RateLimit" in response.headers and "X-Request-ID" in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_wildcard_origin_and_x_api_key_header(browser_key):
    _api_key, full = browser_key(allowed_origins=["https://*.example.com"])
    response = APIClient().get(URL, HTTP_X_API_KEY=full, HTTP_ORIGIN="https://eu.app.example.com")
    assert response.status_code == 200, response.content
    assert response["Access-Control-Allow-Origin"] == "https://eu.app.example.com"
    refused = APIClient().get(URL, HTTP_X_API_KEY=full, HTTP_ORIGIN="https://example.com")
    assert refused.status_code == 403 and slug(refused) == "origin-not-allowed"


def test_browser_key_from_another_origin_or_without_origin_is_refused(browser_key):
    _api_key, full = browser_key()
    for origin in ("https://evil.example.net", "http://app.example.com", None):
        response = call(full, origin)
        assert response.status_code == 403, (origin, response.content)
        assert slug(response) == "origin-not-allowed"
        assert response.json()["origin"] == origin
        assert not cors_headers(response)
        assert varies_on_origin(response)


def test_secret_key_with_an_origin_is_refused_and_gets_no_cors(make_org, make_key):
    _api_key, full = make_key(make_org())
    response = call(full, APP)
    assert response.status_code == 403
    assert slug(response) == "secret-key-in-browser"
    assert "browser key" in response.json()["detail"]
    assert not cors_headers(response)
    plain = call(full)  # from a server: no Origin
    assert plain.status_code == 200 and not cors_headers(plain)
    assert varies_on_origin(plain)


def test_origin_answers_need_the_complete_key(browser_key, make_org, make_key):
    """Like revoked/expired/IP answers: a wrong secret is `api-key-unknown`, whatever the Origin."""
    _api_key, full = browser_key()
    wrong = keyformat.compose_key("live", keyformat.parse_key(full).key_id, "x" * 32, kind="browser")
    assert slug(call(wrong, "https://evil.example.net")) == "api-key-unknown"
    _secret, secret_full = make_key(make_org())
    wrong_secret = keyformat.compose_key("live", keyformat.parse_key(secret_full).key_id, "y" * 32)
    assert slug(call(wrong_secret, APP)) == "api-key-unknown"


def test_browser_key_refused_after_authentication_still_gets_cors(browser_key, monkeypatch):
    """Answers after authentication (here: a scope refusal) stay readable by the page."""
    api_key, full = browser_key()
    ApiKey.objects.filter(pk=api_key.pk).update(scopes=["other:read"])
    keycache.publish(api_key.key_id)
    response = call(full, APP)
    assert response.status_code == 403 and slug(response) == "api-key-insufficient-scope"
    assert response["Access-Control-Allow-Origin"] == APP


def test_preflight_is_answered_without_a_key(db):
    response = APIClient().options(
        URL,
        HTTP_ORIGIN="https://anything.example.org",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )
    assert response.status_code == 204, response.content
    assert response["Access-Control-Allow-Origin"] == "https://anything.example.org"
    assert {m.strip() for m in response["Access-Control-Allow-Methods"].split(",")} == {
        "GET",
        "HEAD",
        "OPTIONS",
    }
    allowed = {h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "x-api-key", "if-none-match"} <= allowed
    assert int(response["Access-Control-Max-Age"]) > 0
    assert varies_on_origin(response)
    assert not response.content


def test_plain_options_is_not_a_preflight(db):
    response = APIClient().options(URL, HTTP_ORIGIN=APP)  # no Access-Control-Request-Method
    assert response.status_code == 401
    assert not cors_headers(response)


def test_management_api_has_no_cors(make_org, jwt_client):
    org = make_org()
    client = jwt_client(owner_of(org))
    response = client.get("/v1/account/keys", HTTP_ORIGIN=APP)
    assert response.status_code == 200
    assert not cors_headers(response)
    preflight = APIClient().options(
        "/v1/account/keys", HTTP_ORIGIN=APP, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert not cors_headers(preflight)
    schema = APIClient().options("/v1/schema/", HTTP_ORIGIN=APP, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
    assert not cors_headers(schema)


def test_problem_types_are_registered():
    table = registered()
    assert table["secret-key-in-browser"].status == 403
    assert table["origin-not-allowed"].status == 403


# --- the cache ----------
def test_warm_path_of_a_browser_key_is_free(browser_key, django_assert_num_queries, monkeypatch):
    _api_key, full = browser_key()

    def authenticate():
        request = APIRequestFactory().get(URL, HTTP_AUTHORIZATION=f"Bearer {full}", HTTP_ORIGIN=APP)
        return ApiKeyAuthentication().authenticate(request)

    authenticate()  # cold
    calls = RedisCalls(monkeypatch)
    with django_assert_num_queries(0):
        for _ in range(100):
            _user, found = authenticate()
    assert calls.count == 0
    assert found.is_browser and found.allowed_origins == (APP,)


def test_redis_entry_carries_type_and_origins(browser_key, django_assert_num_queries):
    api_key, full = browser_key(allowed_origins=[APP, "https://*.example.org"])
    call(full, APP)  # fills Redis
    keycache.clear_local_cache()  # another web process
    with django_assert_num_queries(0):
        entry = keycache.lookup(api_key.key_id)
    assert entry.principal is not None and entry.principal.kind == "browser"
    assert entry.principal.allowed_origins == (APP, "https://*.example.org")
    assert entry.origins.allows("https://x.example.org")


def test_cache_entries_written_before_browser_keys_read_as_secret_keys(make_org, make_key):
    api_key, _full = make_key(make_org())
    entry = keycache.entry_from_row(ApiKey.objects.select_related("organization").get(pk=api_key.pk))
    data = json.loads(keycache._entry_to_json(entry))
    del data["t"], data["og"]
    old = keycache._entry_from_json(json.dumps(data))
    assert old.principal is not None and old.principal.kind == "secret" and not old.principal.allowed_origins


# --- creating browser keys ----------
def test_browser_key_create_through_the_management_api(make_org, jwt_client):
    org = make_org()
    client = jwt_client(owner_of(org))
    created = client.post(
        "/v1/account/keys",
        {"name": "dashboard", "type": "browser", "allowed_origins": [APP, "http://localhost:3000"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["key"].startswith("cs_pub_live_") and body["prefix"].startswith("cs_pub_live_")
    assert body["type"] == "browser" and body["allowed_origins"] == [APP, "http://localhost:3000"]
    assert body["scopes"] == ["market_data:read"]
    listed = client.get("/v1/account/keys").json()
    assert [(k["type"], k["allowed_origins"]) for k in listed] == [
        ("browser", [APP, "http://localhost:3000"])
    ]
    detail = client.get(f"/v1/account/keys/{body['key_id']}").json()
    assert detail["type"] == "browser"
    # the new key works from the page right away
    assert call(body["key"], "http://localhost:3000").status_code == 200
    secret = client.post("/v1/account/keys", {"name": "server"}, format="json").json()
    assert secret["type"] == "secret" and secret["allowed_origins"] == []
    assert secret["key"].startswith("cs_live_")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"type": "browser"}, "allowed_origins"),
        ({"type": "browser", "allowed_origins": []}, "allowed_origins"),
        ({"type": "browser", "allowed_origins": ["https://app.example.com/"]}, "allowed_origins"),
        ({"type": "browser", "allowed_origins": ["*"]}, "allowed_origins"),
        ({"type": "browser", "allowed_origins": [APP], "scopes": ["market_data:write"]}, "scopes"),
        ({"type": "browser", "allowed_origins": [APP], "scopes": ["keys.manage"]}, "scopes"),
        ({"allowed_origins": [APP]}, "allowed_origins"),
        ({"type": "secret", "allowed_origins": [APP]}, "allowed_origins"),
        ({"type": "public"}, "type"),
    ],
)
def test_browser_key_create_refusals(make_org, jwt_client, payload, field):
    client = jwt_client(owner_of(make_org()))
    response = client.post("/v1/account/keys", {"name": "k", **payload}, format="json")
    assert response.status_code == 400, response.content
    assert field in {e.get("parameter") or e.get("field") for e in response.json().get("errors", [])} or (
        field in response.content.decode()
    )
    assert not ApiKey.objects.exists()


def test_browser_keys_get_read_only_scopes_only(make_org, monkeypatch):
    """Even once keys can carry a write scope, a browser key refuses it (the service's rule)."""
    monkeypatch.setattr(principal, "KEY_SCOPES", (principal.SCOPE_MARKET_DATA_READ, "alerts:write"))
    org = make_org()
    with pytest.raises(ValidationError, match="read-only"):
        api_key_create(
            organization=org, name="b", kind="browser", allowed_origins=[APP], scopes=["alerts:write"]
        )
    row, _full = api_key_create(organization=org, name="s", scopes=["alerts:write"])
    assert row.kind == "secret" and row.scopes == ["alerts:write"]


def test_rotation_keeps_type_and_origins(browser_key):
    old, _full = browser_key(allowed_origins=[APP, "https://*.example.org"])
    new, new_full, _old = api_key_rotate(api_key=old)
    assert new.kind == "browser" and new.allowed_origins == [APP, "https://*.example.org"]
    assert new_full.startswith("cs_pub_live_")


# --- the migration ----------
@pytest.mark.django_db(transaction=True)
def test_migration_keeps_existing_keys_secret():
    before = [("accounts", "0004_last_used_schedule")]
    after = [("accounts", "0005_apikey_kind_allowed_origins")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        apps = executor.loader.project_state(before).apps
        organization = apps.get_model("accounts", "Organization").objects.create(name="Old", slug="old-org")
        apps.get_model("accounts", "ApiKey").objects.create(
            organization=organization,
            name="old key",
            key_id="OldKey000001",
            prefix="cs_live_OldKey000001",
            secret_hash="0" * 64,
            scopes=["market_data:read"],
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(after)
    row = ApiKey.objects.get(key_id="OldKey000001")
    assert row.kind == "secret" and row.allowed_origins == []
    # Back to the latest state: later migrations' tables (e.g. accounts_session) exist for later tests.
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
