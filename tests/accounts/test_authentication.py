"""API-key authentication on the public API: each failure mode, its problem type and headers."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import keycache, keyformat, keys
from accounts.models import ApiKey
from accounts.services.api_keys import api_key_revoke
from apiplatform import redis_access

pytestmark = pytest.mark.urls("tests.accounts.public_urls")
URL = "/v1/test/whoami"


def call(key: str | None = None, *, header: str = "bearer", remote_addr: str = "127.0.0.1", **extra):
    client = APIClient()
    if key is not None and header == "bearer":
        extra["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    elif key is not None:
        extra["HTTP_X_API_KEY"] = key
    return client.get(URL, REMOTE_ADDR=remote_addr, **extra)


def problem_slug(response) -> str:
    assert response["Content-Type"].startswith("application/problem+json"), response.content
    return response.json()["type"].rsplit("/", 1)[-1]


def test_valid_key_authenticates_with_bearer_and_x_api_key(make_org, make_key):
    org = make_org()
    api_key, full = make_key(org)
    for header in ("bearer", "x-api-key"):
        response = call(full, header=header)
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["key_id"] == api_key.key_id
        assert body["organization_id"] == org.pk
        assert body["organization_slug"] == org.slug
        assert body["user"] == f"apikey:{api_key.prefix}"


def test_missing_key_is_401_with_www_authenticate():
    response = call(None)
    assert response.status_code == 401
    assert problem_slug(response) == "api-key-missing"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_malformed_and_bad_checksum_keys_are_rejected_without_a_query(django_assert_num_queries):
    _key_id, full = keyformat.generate_key("live")
    flipped = full[:-1] + ("A" if full[-1] != "A" else "B")  # wrong checksum
    typo = full[:20] + ("x" if full[20] != "x" else "y") + full[21:]  # typo in the secret
    for candidate in ("hello", full[:-3], flipped, typo, "cs_prod_" + full[8:]):
        with django_assert_num_queries(0):
            response = call(candidate)
        assert response.status_code == 401
        assert problem_slug(response) == "api-key-malformed"
        assert "WWW-Authenticate" in response
    response = APIClient().get(URL, HTTP_AUTHORIZATION=f"Basic {full}")
    assert problem_slug(response) == "api-key-malformed"


def test_unknown_key_and_wrong_secret_of_another_tenants_key_look_the_same(make_org, make_key):
    victim_key, _ = make_key(make_org())
    _, never_issued = keyformat.generate_key("live")
    # A well-formed key carrying the victim's (public) key id but a made-up secret.
    forged = keyformat.compose_key("live", victim_key.key_id, "A" * keyformat.SECRET_LENGTH)
    unknown, forged_resp = call(never_issued), call(forged)
    assert unknown.status_code == forged_resp.status_code == 401
    assert problem_slug(unknown) == problem_slug(forged_resp) == "api-key-unknown"
    assert unknown.json()["detail"] == forged_resp.json()["detail"]
    assert victim_key.key_id not in forged_resp.content.decode()


def test_revoked_key_is_rejected(make_org, make_key, django_capture_on_commit_callbacks):
    api_key, full = make_key(make_org())
    assert call(full).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(api_key=api_key)
    response = call(full)
    assert response.status_code == 401
    assert problem_slug(response) == "api-key-revoked"
    assert "WWW-Authenticate" in response


def test_expired_key_is_rejected(make_org, make_key, monkeypatch):
    _api_key, full = make_key(make_org(), expires_at=timezone.now() + timedelta(hours=1))
    assert call(full).status_code == 200
    # Simulated time: one hour and a second later (the cached principal carries expires_at).
    later = keys.time.time() + 3601
    monkeypatch.setattr(keys.time, "time", lambda: later)
    response = call(full)
    assert response.status_code == 401
    assert problem_slug(response) == "api-key-expired"


def test_ip_allow_list(make_org, make_key):
    _api_key, full = make_key(make_org(), allowed_ips=["10.1.0.0/16", "2001:db8::1"])
    assert call(full, remote_addr="10.1.2.3").status_code == 200
    assert call(full, remote_addr="2001:db8::1").status_code == 200
    response = call(full, remote_addr="10.2.0.1")
    assert response.status_code == 403
    assert problem_slug(response) == "api-key-ip-not-allowed"


def test_key_without_market_data_scope_is_403(make_org, make_key):
    api_key, full = make_key(make_org())
    ApiKey.objects.filter(pk=api_key.pk).update(scopes=[])
    keycache.clear_local_cache()
    redis_access.client().delete(keycache.entry_key(api_key.key_id))
    response = call(full)
    assert response.status_code == 403
    assert problem_slug(response) == "api-key-insufficient-scope"


def test_problem_types_are_distinct_and_registered():
    from apiplatform.problems import registered

    slugs = [
        "api-key-missing",
        "api-key-malformed",
        "api-key-unknown",
        "api-key-revoked",
        "api-key-expired",
        "api-key-ip-not-allowed",
    ]
    table = registered()
    assert all(slug in table for slug in slugs)
    assert {table[slug].status for slug in slugs} == {401, 403}


def test_key_format_matches_documented_regex_and_hash_is_stored(make_org, make_key):
    api_key, full = make_key(make_org(), environment="test")
    assert re.fullmatch(r"cs_test_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}", full)
    assert re.search(keyformat.SCANNER_REGEX, f"leaked: {full}.")
    row = ApiKey.objects.get(pk=api_key.pk)
    assert full not in str(row.__dict__)
    assert row.prefix == full[: len(row.prefix)]
    hash_key = keyformat.hash_key
    assert row.secret_hash == hash_key(full) != hash_key(full.replace("cs_test_", "cs_live_"))
