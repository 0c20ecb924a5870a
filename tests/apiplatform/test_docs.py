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
