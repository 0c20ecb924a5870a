"""The warm path: zero SQL, amortised zero Redis round trips; last-used without per-request writes."""

from __future__ import annotations

import pytest
from rest_framework.test import APIRequestFactory

from accounts import keycache, keyformat, keys
from accounts.authentication import ApiKeyAuthentication
from accounts.models import ApiKey
from accounts.services.api_keys import api_key_revoke
from apiplatform import redis_access


class RedisCalls:
    """Counts round trips of the accounts Redis client (a pipeline is one round trip)."""

    def __init__(self, monkeypatch):
        self.count = 0
        client = redis_access.client()
        original_execute_command = client.execute_command
        original_pipeline = client.pipeline

        def execute_command(*args, **kwargs):
            self.count += 1
            return original_execute_command(*args, **kwargs)

        def pipeline(*args, **kwargs):
            pipe = original_pipeline(*args, **kwargs)
            original_execute = pipe.execute

            def execute(*a, **kw):
                self.count += 1
                return original_execute(*a, **kw)

            pipe.execute = execute
            return pipe

        monkeypatch.setattr(client, "execute_command", execute_command)
        monkeypatch.setattr(client, "pipeline", pipeline)


def _authenticate(full_key: str):
    request = APIRequestFactory().get("/v1/anything", HTTP_AUTHORIZATION=f"Bearer {full_key}")
    return ApiKeyAuthentication().authenticate(request)


def test_warm_path_makes_no_sql_and_no_redis_round_trip(
    make_org, make_key, django_assert_num_queries, monkeypatch
):
    _api_key, full = make_key(make_org())
    calls = RedisCalls(monkeypatch)
    _authenticate(full)  # cold: database + Redis
    assert calls.count >= 1
    calls.count = 0
    with django_assert_num_queries(0):
        for _ in range(200):
            user, principal = _authenticate(full)
    assert calls.count == 0
    assert user.is_authenticated and principal.organization_id == _api_key.organization_id


def test_other_process_cold_start_is_served_from_redis_without_sql(
    make_org, make_key, django_assert_num_queries, monkeypatch
):
    _api_key, full = make_key(make_org())
    _authenticate(full)  # fills Redis
    keycache.clear_local_cache()  # as if this were another web process
    calls = RedisCalls(monkeypatch)
    with django_assert_num_queries(0):
        _authenticate(full)
    assert calls.count == 1  # one GET (with the last-used HSET pipelined into the same round trip)


def test_local_entry_expires_after_ttl_and_refreshes_with_one_round_trip(make_org, make_key, monkeypatch):
    _api_key, full = make_key(make_org())
    _authenticate(full)
    calls = RedisCalls(monkeypatch)
    now = keycache.time.monotonic()
    monkeypatch.setattr(keycache.time, "monotonic", lambda: now + 1.01)
    _authenticate(full)
    assert calls.count == 1


@pytest.mark.django_db
def test_unknown_keys_are_cached_too(django_assert_num_queries):
    _, full = keyformat.generate_key("live")
    _authenticate_safely(full)
    keycache.clear_local_cache()
    with django_assert_num_queries(0):  # the negative entry is in Redis
        _authenticate_safely(full)


def _authenticate_safely(full):
    from apiplatform.problems import ProblemError

    with pytest.raises(ProblemError):
        _authenticate(full)


def test_last_used_is_recorded_in_redis_and_flushed_by_the_task(
    make_org, make_key, django_assert_num_queries
):
    from accounts.tasks import flush_key_last_used

    api_key, full = make_key(make_org())
    _authenticate(full)
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at is None  # no DB write on the request path
    seen = keycache.last_used_from_redis([api_key.key_id])
    assert api_key.key_id in seen
    assert flush_key_last_used() == 1
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == seen[api_key.key_id]
    assert flush_key_last_used() == 0  # nothing new


def test_last_used_write_is_throttled_per_process(make_org, make_key, monkeypatch):
    api_key, full = make_key(make_org())
    _authenticate(full)
    redis_access.client().delete(keycache.last_used_key())
    now = keycache.time.monotonic()
    # local entry expired, < 60 s since write
    monkeypatch.setattr(keycache.time, "monotonic", lambda: now + 5)
    _authenticate(full)
    assert keycache.last_used_from_redis([api_key.key_id]) == {}
    monkeypatch.setattr(keycache.time, "monotonic", lambda: now + 61)
    _authenticate(full)
    assert api_key.key_id in keycache.last_used_from_redis([api_key.key_id])


def test_stale_reader_cannot_overwrite_a_revocation_in_redis(
    make_org, make_key, django_capture_on_commit_callbacks
):
    api_key, full = make_key(make_org())
    stale_version, stale_entry = keycache._load_from_db(api_key.key_id)  # read before the revoke
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(api_key=api_key)
    keycache._set_if_newer(redis_access.client(), api_key.key_id, stale_version, stale_entry)  # late write
    keycache.clear_local_cache()
    assert keys.verify(keyformat.parse_key(full), None)[0] == "revoked"


def test_redis_unreachable_falls_back_to_the_database(make_org, make_key, settings, closed_port, caplog):
    api_key, full = make_key(make_org())
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    try:
        _user, principal = _authenticate(full)
        assert principal.key_id == api_key.key_id
        assert "Redis unavailable" in caplog.text
        keycache.clear_local_cache()
        ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=keycache.datetime.now(tz=keycache.UTC))
        from apiplatform.problems import ProblemError

        with pytest.raises(ProblemError) as excinfo:  # the database is the truth while Redis is down
            _authenticate(full)
        assert excinfo.value.problem.slug == "api-key-revoked"
    finally:
        keycache.clear_local_cache()
