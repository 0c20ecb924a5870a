"""Redis (the "default" connection: response cache, series versions, API-key cache) unreachable
while the platform serves: every public answer is still computed, and the log carries one warning
per outage from the back-off (apiplatform/redis_access.py), never a traceback per request."""

from __future__ import annotations

import logging
import time

import pytest

from accounts import keycache, keyformat, keys
from apiplatform import redis_access
from marketdata import cache as versions
from marketdata.api import caching

PATHS = [
    ("/v1/markets", {}),
    ("/v1/prices", {"ids": "bitcoin,ethereum"}),
    ("/v1/coins/bitcoin/candles", {"timeframe": "1h", "limit": 20}),
    ("/v1/coins/bitcoin/indicators/rsi", {"timeframe": "1h", "limit": 20}),
]


@pytest.fixture
def redis_down(settings, closed_port):
    """Point the "default" connection at a port nobody listens on, with a short back-off so that one
    test crosses several back-off periods (Redis is tried again after each)."""
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    settings.REDIS_BACKOFF_SECONDS = 0.05
    redis_access.reset_all()


def problems(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


def test_public_api_answers_with_redis_down_and_warns_once(client, market, settings, closed_port, caplog):
    healthy = {path: client.get(path, params).json() for path, params in PATHS}  # fills the cache
    caplog.clear()
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    settings.REDIS_BACKOFF_SECONDS = 0.05
    redis_access.reset_all()
    with caplog.at_level(logging.INFO):
        for round_ in range(4):
            for path, params in PATHS:
                response = client.get(path, params)
                assert response.status_code == 200, (path, response.content)
                assert response.json() == healthy[path]
            keycache.clear_local_cache()  # the key is looked up again (database: Redis is down)
            time.sleep(0.06 if round_ % 2 else 0)  # past the back-off: Redis is tried again
    warnings = problems(caplog)
    assert len(warnings) == 1, caplog.text
    assert (
        warnings[0].name == "apiplatform.redis_access" and "unavailable (default)" in warnings[0].getMessage()
    )
    assert warnings[0].exc_info is None


def test_response_cache_skips_redis_while_backing_off(redis_down, caplog, monkeypatch):
    with caplog.at_level(logging.INFO):
        assert caching.lookup("markets", ("a",), versions.snapshots_key()) == ("x", None)
    assert len(problems(caplog)) == 1  # the one warning of the outage
    attempts = []
    original = redis_access.Connection.client

    def counting(self):
        attempts.append(self.name)
        return original(self)

    monkeypatch.setattr(redis_access.Connection, "client", counting)
    for _ in range(20):  # within the back-off: no Redis call at all
        assert caching.lookup("markets", ("a",), versions.snapshots_key()) == ("x", None)
        caching.store("markets", ("a",), "1", caching.Cached(b"{}", '"e"', "private"), caching.SHORT_TTL)
        caching.screener_changed("1h")
        versions.snapshots_changed()
    assert attempts == []
    assert len(problems(caplog)) == 1


def test_key_cache_reads_the_database_with_redis_down_and_warns_once(redis_down, api_key, caplog):
    parsed = keyformat.parse_key(api_key)
    with caplog.at_level(logging.INFO):
        for _ in range(6):
            keycache.clear_local_cache()
            assert keys.verify(parsed, None)[0] == keys.KeyCheck.OK
            time.sleep(0.06)  # each lookup after a back-off period: Redis tried (and failed) again
    warnings = problems(caplog)
    assert len(warnings) == 1, caplog.text
    assert warnings[0].name == "apiplatform.redis_access" and warnings[0].exc_info is None
    assert keycache.last_used_from_redis([parsed.key_id]) == {}
