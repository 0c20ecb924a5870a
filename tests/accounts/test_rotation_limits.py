"""Rotation: `old_key_expires_in: 0` stops the old key now, a rotation keeps the key's expiry (and an
expired key cannot be rotated), the overlap has an upper bound; odd key ids in paths are 4xx problems."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import keyformat, keys
from accounts.models import ApiKey

from .conftest import owner_of


def slug_of(response) -> str:
    return response.json()["type"].rsplit("/", 1)[-1]


@pytest.fixture
def owner_client(make_org, jwt_client):
    return jwt_client(owner_of(make_org()))


def _create(client, **body) -> dict:
    response = client.post("/v1/account/keys", {"name": "prod", **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_expires_in_zero_stops_the_old_key_now(owner_client, django_capture_on_commit_callbacks):
    old = _create(owner_client)
    with django_capture_on_commit_callbacks(execute=True):
        rotated = owner_client.post(
            f"/v1/account/keys/{old['key_id']}/rotate", {"old_key_expires_in": 0}, format="json"
        )
    assert rotated.status_code == 201, rotated.content
    assert rotated.json()["old_key"]["status"] == "expired"
    assert keys.verify(keyformat.parse_key(old["key"]), None)[0] == "expired"
    assert keys.verify(keyformat.parse_key(rotated.json()["new_key"]["key"]), None)[0] == "ok"


def test_rotation_keeps_the_keys_expiry(owner_client):
    expires = (timezone.now() + timedelta(days=10)).replace(microsecond=0)
    old = _create(owner_client, expires_at=expires.isoformat())
    rotated = owner_client.post(f"/v1/account/keys/{old['key_id']}/rotate", {}, format="json")
    assert rotated.status_code == 201, rotated.content
    new = ApiKey.objects.get(key_id=rotated.json()["new_key"]["key_id"])
    assert new.expires_at == expires


def test_an_expired_key_cannot_be_rotated_into_one_that_never_expires(owner_client):
    old = _create(owner_client, expires_at=(timezone.now() + timedelta(hours=1)).isoformat())
    ApiKey.objects.filter(key_id=old["key_id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    rotated = owner_client.post(f"/v1/account/keys/{old['key_id']}/rotate", {}, format="json")
    assert rotated.status_code == 409 and slug_of(rotated) == "key-already-expired"
    assert not ApiKey.objects.filter(rotated_from__key_id=old["key_id"]).exists()


@pytest.mark.parametrize(
    "body",
    [
        {"old_key_expires_at": "2999-01-01T00:00:00Z"},
        {"old_key_expires_in": 30 * 24 * 3600 + 1},
    ],
)
def test_the_overlap_has_an_upper_bound(owner_client, body):
    old = _create(owner_client)
    rotated = owner_client.post(f"/v1/account/keys/{old['key_id']}/rotate", body, format="json")
    assert rotated.status_code == 400 and slug_of(rotated) == "validation-error", rotated.content
    assert ApiKey.objects.get(key_id=old["key_id"]).expires_at is None


def test_overlap_bound_follows_the_setting(owner_client, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "ROTATION_MAX_OVERLAP_SECONDS": 3600}
    old = _create(owner_client)
    later = (timezone.now() + timedelta(hours=2)).isoformat()
    rotated = owner_client.post(
        f"/v1/account/keys/{old['key_id']}/rotate", {"old_key_expires_at": later}, format="json"
    )
    assert rotated.status_code == 400


@pytest.mark.parametrize("path", ["/v1/account/keys/ab%00cd", "/v1/account/keys/ab%00cd/revoke"])
def test_a_nul_byte_in_a_key_id_is_a_404_problem(owner_client, path):
    response = owner_client.get(path) if path.endswith("cd") else owner_client.post(path)
    assert response.status_code == 404, response.content
    assert response["Content-Type"].startswith("application/problem+json")


def test_cr_lf_in_an_organization_name_is_a_400_problem(owner_client):
    response = owner_client.patch("/v1/account/organization", {"name": "Acme\r\nX"}, format="json")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    invited = owner_client.post("/v1/account/invitations", {"email": "x@example.test"}, format="json")
    assert invited.status_code == 201
