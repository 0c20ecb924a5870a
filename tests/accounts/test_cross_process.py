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
