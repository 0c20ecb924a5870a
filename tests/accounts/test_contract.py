"""The management API's contract: what /v1/schema/ documents is what the server answers (errors as
problem+json, 401 on every JWT operation, PATCH bodies), key rotation at most once, withdrawn
invitations gone."""

from __future__ import annotations

import re
import threading
import time

import jsonschema
import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.principal import KEY_SCOPES
from accounts.services.api_keys import api_key_rotate
from accounts.services.invitations import invitation_create
from apiplatform.problems import PROBLEM_CONTENT_TYPE, ProblemError

from .conftest import owner_of

METHODS = ("get", "post", "put", "patch", "delete")


def slug_of(response) -> str:
    return response.json()["type"].rsplit("/", 1)[-1]


@pytest.fixture
def openapi(db) -> dict:
    response = APIClient().get("/v1/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def management_operations(openapi: dict):
    for path, item in openapi["paths"].items():
        if path.startswith("/v1/account/"):
            for method in METHODS:
                if method in item:
                    yield path, method, item[method]


def needs_jwt(operation: dict) -> bool:
    return any("jwtAuth" in requirement for requirement in operation.get("security", []))


def test_every_jwt_operation_documents_401_and_every_error_is_problem_json(openapi):
    operations = list(management_operations(openapi))
    jwt_operations = [(path, method) for path, method, op in operations if needs_jwt(op)]
    assert len(jwt_operations) >= 20  # the walk really covers the management API (usage included)
    assert ("/v1/account/usage", "get") in jwt_operations
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        if needs_jwt(op):
            assert "401" in op["responses"], where
        for status, response in op["responses"].items():
            if int(status) >= 400:
                assert list(response.get("content", {})) == [PROBLEM_CONTENT_TYPE], (where, status)
                assert re.search(r"`[a-z-]+`", response["description"]), (where, status)  # names its types
        tenant_scoped = any(p["name"] == "X-Organization" for p in op.get("parameters", []))
        if tenant_scoped:
            assert {"400", "404"} <= set(op["responses"]), where  # organization-required, unknown slug
        if "requestBody" in op:
            assert {"400", "415"} <= set(op["responses"]), where


def test_documented_statuses_of_sample_operations(openapi):
    paths = openapi["paths"]
    rotate = paths["/v1/account/keys/{key_id}/rotate"]["post"]["responses"]
    assert "key-already-rotated" in rotate["409"]["description"]
    conflict = rotate["409"]["content"][PROBLEM_CONTENT_TYPE]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "successor_key_id" in openapi["components"]["schemas"][conflict]["properties"]
    assert "403" in paths["/v1/account/keys"]["post"]["responses"]  # keys.manage: not every role
    assert "403" not in paths["/v1/account/members"]["get"]["responses"]  # members.read: every role
    invitation = paths["/v1/account/invitations/{invitation_id}"]
    assert set(invitation["delete"]["responses"]) >= {"204", "404"}
    assert "404" in invitation["get"]["responses"]
    assert "409" in paths["/v1/account/invitations/accept"]["post"]["responses"]  # already-member
    # PATCH bodies: optional members, at least one, nothing else; scopes: at least one real scope.
    schemas = openapi["components"]["schemas"]
    for path in ("/v1/account/organization", "/v1/account/members/{member_id}"):
        ref = paths[path]["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        body = schemas[ref.rsplit("/", 1)[-1]]
        assert body["minProperties"] == 1 and body["additionalProperties"] is False
        assert not body.get("required")
    scopes = schemas["ApiKeySecretInRequest"]["properties"]["scopes"]
    assert scopes["minItems"] == 1
    enum_ref = scopes["items"]["$ref"].rsplit("/", 1)[-1]
    assert schemas[enum_ref]["enum"] == list(KEY_SCOPES)
    audit = {p["name"]: p["schema"] for p in paths["/v1/account/audit-events"]["get"]["parameters"]}
    assert audit["limit"]["minimum"] == 1 and audit["limit"]["maximum"] == 500


def test_every_jwt_operation_answers_401_problem_without_a_token(openapi, make_org, make_key):
    org = make_org()
    api_key, _ = make_key(org)
    client = APIClient()
    for path, method, op in management_operations(openapi):
        if not needs_jwt(op):
            continue
        url = path.format(
            member_id=1, invitation_id=1, key_id=api_key.key_id, alert_id=1, endpoint_id=1, delivery_id=1
        )
        for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer not-a-jwt"}):
            response = getattr(client, method)(url, {}, format="json", **headers)
            assert response.status_code == 401, (method, url, response.content)
            assert response["Content-Type"].startswith(PROBLEM_CONTENT_TYPE)
            assert slug_of(response) == "not-authenticated"


def test_unknown_organization_is_a_documented_404(make_org, jwt_client):
    org = make_org()
    client = jwt_client(owner_of(org))
    for url in ("/v1/account/organization", "/v1/account/keys", "/v1/account/usage"):
        response = client.get(url, HTTP_X_ORGANIZATION="no-such-org")
        assert response.status_code == 404 and slug_of(response) == "not-found"
        assert response["Content-Type"].startswith(PROBLEM_CONTENT_TYPE)


# --- PATCH bodies and list parameters: as documented ---
def test_patch_bodies_need_one_known_member(make_org, jwt_client):
    org = make_org()
    client = jwt_client(owner_of(org))
    empty = client.patch("/v1/account/organization", {}, format="json")
    assert empty.status_code == 400 and slug_of(empty) == "validation-error"
    unknown = client.patch("/v1/account/organization", {"name": "A", "slug": "b"}, format="json")
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["parameter"] == "slug"
    renamed = client.patch("/v1/account/organization", {"name": "Acme Ltd"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["organization"]["name"] == "Acme Ltd"
    member = owner_of(org).memberships.get()
    assert client.patch(f"/v1/account/members/{member.pk}", {}, format="json").status_code == 400


def test_bodies_that_must_not_be_empty_are_required_in_the_schema(openapi):
    for path, method in (
        ("/v1/account/organization", "patch"),
        ("/v1/account/members/{member_id}", "patch"),
        ("/v1/account/signup", "post"),
        ("/v1/account/keys", "post"),
    ):
        assert openapi["paths"][path][method]["requestBody"].get("required") is True, (method, path)


def test_signup_schema_needs_an_organization_name_unless_an_invitation_token(openapi):
    body = openapi["components"]["schemas"]["SignupInRequest"]
    validator = jsonschema.Draft202012Validator(body)
    base = {"email": "ada@example.com", "password": "a long passphrase"}
    assert not validator.is_valid(base)  # the server: organization_name required (unless invitation_token)
    assert not validator.is_valid({**base, "organization_name": "   "})
    assert validator.is_valid({**base, "organization_name": "Acme"})
    assert validator.is_valid({**base, "invitation_token": "abc"})
    assert not validator.is_valid({**base, "organization_name": "Acme", "password": "1234567890123"})
    assert not validator.is_valid({**base, "organization_name": "Acme", "password": "short"})


def test_signup_without_organization_or_invitation_is_refused(db):
    response = APIClient().post(
        "/v1/account/signup", {"email": "ada@example.com", "password": "a long passphrase"}, format="json"
    )
    assert response.status_code == 400 and response.json()["errors"][0]["parameter"] == "organization_name"


def test_passwords_are_taken_as_typed(db):
    client = APIClient()
    password = "  a long passphrase  "
    body = {"email": "ada@example.com", "password": password, "organization_name": "Acme"}
    assert client.post("/v1/account/signup", body, format="json").status_code == 202
    login = {"email": "ada@example.com", "password": password}
    assert client.post("/v1/account/token", login, format="json").status_code == 200
    trimmed = {"email": "ada@example.com", "password": password.strip()}
    assert client.post("/v1/account/token", trimmed, format="json").status_code == 401


def test_request_strings_refuse_numbers_and_nul(make_org, jwt_client, openapi):
    org = make_org()
    client = jwt_client(owner_of(org))
    number = client.patch("/v1/account/organization", {"name": 12}, format="json")
    assert number.status_code == 400 and number.json()["errors"][0]["parameter"] == "name"
    assert client.patch("/v1/account/organization", {"name": "a\x00b"}, format="json").status_code == 400
    name = openapi["components"]["schemas"]["PatchedOrganizationUpdateInRequest"]["properties"]["name"]
    assert re.search(name["pattern"], "Acme") and not re.search(name["pattern"], "a\x00b")
    assert not re.search(name["pattern"], "   ")  # trimmed: blank


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=x", "before=0"])
def test_audit_parameters_out_of_range_say_so(make_org, jwt_client, query):
    org = make_org()
    response = jwt_client(owner_of(org)).get(f"/v1/account/audit-events?{query}")
    assert response.status_code == 400 and slug_of(response) == "validation-error"
    assert response.json()["errors"][0]["parameter"] == query.split("=")[0]


# --- key rotation: at most one live successor ---
def test_rotating_a_rotated_key_is_409_with_the_successor(make_org, jwt_client):
    org = make_org()
    client = jwt_client(owner_of(org))
    old = client.post("/v1/account/keys", {"name": "prod"}, format="json").json()["key_id"]
    first = client.post(f"/v1/account/keys/{old}/rotate", {}, format="json")
    assert first.status_code == 201
    successor = first.json()["new_key"]["key_id"]
    again = client.post(f"/v1/account/keys/{old}/rotate", {}, format="json")
    assert again.status_code == 409 and slug_of(again) == "key-already-rotated"
    assert again["Content-Type"].startswith(PROBLEM_CONTENT_TYPE)
    assert again.json()["successor_key_id"] == successor
    assert ApiKey.objects.filter(rotated_from__key_id=old).count() == 1
    # The successor itself can be rotated; once the successor is revoked, the old key may be again.
    assert client.post(f"/v1/account/keys/{successor}/rotate", {}, format="json").status_code == 201
    assert client.post(f"/v1/account/keys/{successor}/revoke").status_code == 200
    assert client.post(f"/v1/account/keys/{old}/rotate", {}, format="json").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_concurrent_rotations_of_one_key_exactly_one_succeeds(make_org, make_key):
    org = make_org()
    api_key, _ = make_key(org)
    results: list[tuple[str, str | None]] = []

    def rotate() -> None:
        try:
            new, _full, _old = api_key_rotate(api_key=api_key)
            results.append(("created", new.key_id))
        except ProblemError as exc:
            results.append((exc.problem.slug, exc.extra.get("successor_key_id")))
        finally:
            connection.close()

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    with transaction.atomic():
        # Hold the key's row lock so that both rotations are in flight at once, queued behind it.
        ApiKey.objects.select_for_update().get(pk=api_key.pk)
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        with connection.cursor() as cursor:
            while True:
                cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                if cursor.fetchone()[0] >= 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(slug for slug, _ in results) == ["created", "key-already-rotated"], results
    created = next(key_id for slug, key_id in results if slug == "created")
    assert next(key_id for slug, key_id in results if slug != "created") == created
    assert list(ApiKey.objects.filter(rotated_from=api_key).values_list("key_id", flat=True)) == [created]


# --- withdrawn invitations are gone ---
def test_withdrawn_invitation_is_gone_for_the_api(make_org, make_user, jwt_client):
    org = make_org()
    owner = owner_of(org)
    client = jwt_client(owner)
    pending, token = invitation_create(
        organization=org, email="late@example.test", role="developer", actor=owner, actor_role="owner"
    )
    kept, _ = invitation_create(
        organization=org, email="kept@example.test", role="developer", actor=owner, actor_role="owner"
    )
    assert client.get(f"/v1/account/invitations/{pending.pk}").status_code == 200
    withdrawn = client.delete(f"/v1/account/invitations/{pending.pk}")
    assert withdrawn.status_code == 204 and not withdrawn.content
    gone = client.get(f"/v1/account/invitations/{pending.pk}")
    assert gone.status_code == 404 and slug_of(gone) == "not-found"
    assert gone["Content-Type"].startswith(PROBLEM_CONTENT_TYPE)
    assert [i["id"] for i in client.get("/v1/account/invitations").json()] == [kept.pk]
    assert client.delete(f"/v1/account/invitations/{pending.pk}").status_code == 404
    late = jwt_client(make_user("late@example.test"))
    refused = late.post("/v1/account/invitations/accept", {"token": token}, format="json")
    assert refused.status_code == 400 and slug_of(refused) == "invitation-invalid"


def test_audit_events_page_by_cursor_with_link_and_keep_before_as_alias(make_org, jwt_client):
    from accounts.services.audit import audit_record
    from tests.accounts.conftest import owner_of

    org = make_org()
    owner_client = jwt_client(owner_of(org))
    for i in range(5):
        audit_record(organization=org, actor=None, action="test.event", target_id=i)
    first = owner_client.get("/v1/account/audit-events", {"limit": 2})
    assert first.status_code == 200
    body = first.json()
    assert len(body["results"]) == 2 and body["next_cursor"]
    assert f"cursor={body['next_cursor']}" in first["Link"] and 'rel="next"' in first["Link"]
    seen = [e["id"] for e in body["results"]]
    cursor = body["next_cursor"]
    while cursor:
        page = owner_client.get("/v1/account/audit-events", {"limit": 2, "cursor": cursor}).json()
        seen += [e["id"] for e in page["results"]]
        cursor = page["next_cursor"]
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) >= 5
    # the deprecated alias still pages the same way
    alias = owner_client.get("/v1/account/audit-events", {"limit": 2, "before": body["next_before"]}).json()
    assert [e["id"] for e in alias["results"]] == seen[2:4]
    bad = owner_client.get("/v1/account/audit-events", {"cursor": "bm90LWF1ZGl0OjE"})  # "not-audit:1"
    assert bad.status_code == 400 and bad["Content-Type"].startswith("application/problem+json")
    assert "cursor" in bad.json()["detail"]
