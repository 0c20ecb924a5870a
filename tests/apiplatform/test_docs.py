import json
import re

import pytest
import yaml
from openapi_spec_validator import validate

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.django_db


def test_schema_endpoint_serves_a_valid_openapi_3_document(client):
    response = client.get("/v1/schema/")
    assert response.status_code == 200
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.")
    validate(document)


def test_schema_is_also_served_as_json(client):
    response = client.get("/v1/schema/?format=json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "Candlestack API"


@pytest.mark.parametrize("page", ["/v1/docs/", "/v1/redoc/"])
def test_docs_pages_load_their_assets_from_this_server(client, page):
    response = client.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assert "cdn.jsdelivr.net" not in html and "unpkg.com" not in html
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert assets, "the page references no local static assets"
    for asset in assets:
        asset_response = client.get(asset)
        assert asset_response.status_code == 200, asset
        assert b"".join(
            asset_response.streaming_content if asset_response.streaming else [asset_response.content]
        )


def test_admin_login_page_loads(client):
    response = client.get("/admin/", follow=True)
    assert response.status_code == 200
    assert b"Log in" in response.content


def test_problem_types_are_documented(client):
    listing = client.get("/problems/").json()["problems"]
    slugs = {p["slug"] for p in listing}
    assert {"not-found", "validation-error", "rate-limited", "server-error"} <= slugs
    one = client.get("/problems/not-found").json()
    assert one["status"] == 404
    assert client.get("/problems/nope").status_code == 404


def test_every_problem_type_is_listed_in_docs_errors_md(client):
    documented = (REPO_ROOT / "docs" / "errors.md").read_text()
    slugs = {p["slug"] for p in client.get("/problems/").json()["problems"]}
    missing = sorted(slug for slug in slugs if f"`{slug}`" not in documented)
    assert not missing, f"docs/errors.md lacks {missing}"


# --- cheap to serve, limited per client address (apiplatform/apidocs.py) ---------------------------


def test_schema_is_generated_once_per_process_and_served_from_memory(client, monkeypatch):
    from drf_spectacular.generators import SchemaGenerator

    calls = []
    original = SchemaGenerator.get_schema

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counting)
    bodies = {client.get("/v1/schema/").content for _ in range(3)}
    json_bodies = {client.get("/v1/schema/?format=json").content for _ in range(3)}
    assert len(calls) == 1  # one build for both renditions and all six requests
    assert len(bodies) == 1 and len(json_bodies) == 1
    assert yaml.safe_load(bodies.pop()) == json.loads(json_bodies.pop())


def test_schema_has_a_strong_etag_and_answers_304_to_if_none_match(client):
    first = client.get("/v1/schema/?format=json")
    etag = first["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert "public" in first["Cache-Control"]
    again = client.get("/v1/schema/?format=json", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag
    assert client.get("/v1/schema/", HTTP_IF_NONE_MATCH=etag)["ETag"] != etag  # YAML is another body


@pytest.fixture
def mid_window(monkeypatch):
    """django-ratelimit counts in fixed windows of its clock: hold that clock 20 s into a minute, so a
    test's requests never straddle a window boundary (a slow machine made them, now and then)."""
    import types

    import django_ratelimit.core

    fixed = (int(django_ratelimit.core.time.time()) // 60) * 60 + 20
    monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=lambda: fixed))


@pytest.mark.parametrize("path", ["/v1/schema/", "/v1/docs/", "/v1/redoc/"])
def test_docs_and_schema_are_limited_per_client_address(client, settings, path, mid_window):
    settings.DOCS_RATE_IP = "3/m"
    for _ in range(3):
        assert client.get(path, REMOTE_ADDR="192.0.2.10").status_code == 200
    refused = client.get(path, REMOTE_ADDR="192.0.2.10")
    assert refused.status_code == 429
    assert refused["Content-Type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("/problems/rate-limited")
    assert 1 <= int(refused["Retry-After"]) <= 60
    # another address has its own budget
    assert client.get(path, REMOTE_ADDR="192.0.2.11").status_code == 200


def test_docs_limit_counts_the_client_behind_the_trusted_proxy(client, settings, mid_window):
    settings.DOCS_RATE_IP = "2/m"
    settings.ACCOUNTS = {**settings.ACCOUNTS, "TRUSTED_PROXY_DEPTH": 1}
    proxy = {"REMOTE_ADDR": "127.0.0.1"}
    for _ in range(2):
        assert client.get("/v1/schema/", HTTP_X_FORWARDED_FOR="198.51.100.7", **proxy).status_code == 200
    assert client.get("/v1/schema/", HTTP_X_FORWARDED_FOR="198.51.100.7", **proxy).status_code == 429
    # every client behind the same proxy is not refused with it
    assert client.get("/v1/schema/", HTTP_X_FORWARDED_FOR="198.51.100.8", **proxy).status_code == 200


def test_schema_built_at_start_up_is_served_without_generating_it(client, monkeypatch):
    from drf_spectacular.generators import SchemaGenerator

    from apiplatform import apidocs

    apidocs.warm()  # what deploy/gunicorn.conf.py does before the workers fork
    calls = []
    monkeypatch.setattr(SchemaGenerator, "get_schema", lambda *a, **k: calls.append(1))
    assert client.get("/v1/schema/").status_code == 200
    assert client.get("/v1/schema/", HTTP_ACCEPT="application/json").json()["openapi"].startswith("3.")
    assert calls == []


def test_a_client_cannot_change_the_shared_rendering(client):
    plain = client.get("/v1/schema/?format=json").content
    client.get("/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json; indent=40")
    assert client.get("/v1/schema/?format=json").content == plain
