"""Revocation is seen by a second, separately started web process within one second.

The test starts gunicorn (one worker, its own Python process) on a free loopback port, pointed at
this test database and this Redis database, serving the project plus one trivial public endpoint
(tests/accounts/public_urls.py). The key is revoked here, in the test process; the other process
learns it only through Redis once its process-local entry (TTL 1 s) expires.
"""

from __future__ import annotations

import os
import time

import httpx
import pytest
from django.conf import settings

from accounts.models import Organization
from accounts.services.api_keys import api_key_create, api_key_revoke
from accounts.services.organizations import organization_create
from tests.conftest import web_process


@pytest.fixture
def second_web_process(transactional_db, tmp_path):
    env = {"DJANGO_SETTINGS_MODULE": "tests.accounts.public_settings", "REDIS_URL": settings.REDIS_URL}
    with web_process(tmp_path, settings_module="tests.accounts.public_settings", env=env) as (base, proc):
        yield base, proc.pid


def test_revoked_key_is_rejected_by_other_process_within_a_second(second_web_process):
    base, other_pid = second_web_process
    assert other_pid != os.getpid()
    organization = organization_create(name="Cross Process")
    api_key, full = api_key_create(organization=organization, name="k")
    headers = {"Authorization": f"Bearer {full}"}
    with httpx.Client(base_url=base, timeout=5) as client:
        for _ in range(3):  # warm the other process's local cache
            warm = client.get("/v1/test/whoami", headers=headers)
            assert warm.status_code == 200, warm.text
            assert warm.json()["organization_slug"] == organization.slug
        api_key_revoke(api_key=api_key)  # commits here, publishes to Redis
        revoked_at = time.monotonic()
        ttl = settings.ACCOUNTS["KEY_LOCAL_CACHE_TTL"]
        time.sleep(ttl)  # the other process's local entry has expired by now at the latest
        response = client.get("/v1/test/whoami", headers=headers)
        seen_after = time.monotonic() - revoked_at
    assert response.status_code == 401, response.text
    assert response.json()["type"].endswith("/api-key-revoked")
    assert "WWW-Authenticate" in response.headers
    assert seen_after < ttl + 0.5
    assert Organization.objects.filter(pk=organization.pk).exists()


def test_a_removed_members_key_is_rejected_by_other_process_within_a_second(second_web_process):
    """Offboarding revokes the member's keys through the same path: after commit, Redis, then every
    process once its local entry (TTL 1 s) expires."""
    from accounts.models import Membership, User
    from accounts.services.memberships import membership_add, membership_remove
    from accounts.services.users import email_verification_token, user_verify_email

    base, _other_pid = second_web_process
    owner = User.objects.create_user(email="owner-x@example.test", password="x" * 20)
    developer = User.objects.create_user(email="dev-x@example.test", password="x" * 20)
    developer = user_verify_email(token=email_verification_token(user=developer))
    organization = organization_create(name="Offboarding", owner=owner)
    membership_add(organization=organization, user=developer, role="developer", actor=owner)
    api_key, full = api_key_create(organization=organization, name="dev key", created_by=developer)
    headers = {"Authorization": f"Bearer {full}"}
    with httpx.Client(base_url=base, timeout=5) as client:
        for _ in range(3):
            assert client.get("/v1/test/whoami", headers=headers).status_code == 200
        membership = Membership.objects.get(organization=organization, user=developer)
        result = membership_remove(membership=membership, actor=owner, actor_role="owner")  # commits here
        assert [k.key_id for k in result.revoked_keys] == [api_key.key_id]
        time.sleep(settings.ACCOUNTS["KEY_LOCAL_CACHE_TTL"])
        response = client.get("/v1/test/whoami", headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["type"].endswith("/api-key-revoked")
