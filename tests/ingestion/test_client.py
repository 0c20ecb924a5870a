"""The client against the simulator with faults on: retries, Retry-After, key rotation, rejects."""

from __future__ import annotations

import logging

import httpx
import pytest

from ingestion.coingecko import (
    CoinGeckoBadRequest,
    CoinGeckoClient,
    CoinGeckoNotFound,
    CoinGeckoPayloadError,
    CoinGeckoPlanError,
    CoinGeckoServerError,
    CoinGeckoShapeError,
    NoUsableKeyError,
    RetryPolicy,
    key_fingerprint,
)
from ingestion.simulator import Simulator, SimulatorConfig


def test_5xx_is_retried_with_backoff_and_counted(sim, make_client, caplog):
    sleeps: list[float] = []
    client = make_client(sleeps=sleeps)
    sim.force(503, 2)
    with caplog.at_level(logging.INFO, logger="ingestion.coingecko.client"):
        assert client.ping() == "(V3) To the Moon!"
    counts = client.metrics.snapshot()
    assert (counts["calls"], counts["retries"], counts["server_errors"], counts["failures"]) == (3, 2, 2, 0)
    assert len(sleeps) == 2 and all(0 < s <= 0.05 for s in sleeps)
    calls = [r for r in caplog.records if r.getMessage().startswith("coingecko call")]
    assert [r.cg_status for r in calls] == [503, 503, 200]
    assert [r.cg_attempt for r in calls] == [1, 2, 3]
    assert all(r.cg_endpoint == "/ping" and r.cg_latency_ms >= 0 for r in calls)
    assert client.metrics.shared()["calls"] == 3  # also in Redis for every worker to see


def test_retry_after_is_honoured_and_capped(sim, make_client):
    sleeps: list[float] = []
    client = make_client(
        sleeps=sleeps, retry=RetryPolicy(base_delay=0.01, max_delay=0.05, retry_after_cap=0.3)
    )
    sim.force(429, 1, retry_after=0.2)
    assert client.ping()
    sim.force(429, 1, retry_after=119)  # the value seen from the real API
    assert client.ping()
    assert sleeps == [0.2, 0.3]
    assert client.metrics.snapshot()["rate_limited"] == 2


def test_other_4xx_are_not_retried(sim, make_client):
    client = make_client(sleeps=[])
    with pytest.raises(CoinGeckoNotFound) as exc:
        client.market_chart("no-such-coin", 1)
    assert exc.value.status == 404 and exc.value.error_message == "coin not found"
    with pytest.raises(CoinGeckoBadRequest):
        client.coins_markets_page(vs_currency="xxx")
    with pytest.raises(ValueError, match="days must be one of"):
        client.ohlc("bitcoin", 2)
    counts = client.metrics.snapshot()
    assert (counts["calls"], counts["retries"], counts["failures"]) == (2, 0, 2)


def test_rejected_key_is_taken_out_of_rotation_and_reported(clock, make_client, caplog):
    sim = Simulator(SimulatorConfig(coins=50, api_keys=("good-1", "good-2")), clock=clock)
    client = make_client(app=sim, api_keys=["bad", "good-1", "good-2"], sleeps=[])
    with caplog.at_level(logging.ERROR):
        for _ in range(6):
            client.ping()
    used = [entry["key"] for entry in sim.request_log]
    assert used[0] == "bad"
    assert set(used[1:]) == {"od-1", "od-2"}, "round-robin over the keys that still work"
    assert client.metrics.snapshot()["keys_disabled"] == 1
    assert client.keys.disabled_fingerprints() == [key_fingerprint("bad")]
    assert any(key_fingerprint("bad") in r.getMessage() for r in caplog.records)
    assert all("good-1" not in r.getMessage() and "bad " not in r.getMessage() for r in caplog.records)
    sim.revoke_key("good-1")
    sim.revoke_key("good-2", status=403)
    with pytest.raises(NoUsableKeyError):
        client.ping()
        client.ping()


def test_plan_errors_do_not_disable_the_key(clock, make_client):
    demo = Simulator(SimulatorConfig(coins=50, plan="demo"), clock=clock)
    client = make_client(app=demo, plan="demo", api_keys=["demo-key"], sleeps=[])
    with pytest.raises(CoinGeckoPlanError) as exc:
        client.market_chart("bitcoin", 400)
    assert exc.value.error_code == 10012
    assert client.keys.active() == ["demo-key"]
    assert len(client.market_chart("bitcoin", 30).records) > 700


def test_malformed_records_are_rejected_with_reasons_and_the_rest_land(sim, make_client):
    client = make_client(sleeps=[])
    sim.set_faults(seed=3, malformed_rate=0.1)
    result = client.coins_markets_all()
    truth = {r["id"]: r for r in sim.markets_at()}
    assert len(result.rejects) > 20 and len(result.records) + len(result.rejects) == len(truth)
    assert all(r.reason for r in result.rejects)
    for record in result.records:
        assert record.current_price == truth[record.id]["current_price"]
    malformed = {f["coin"] for f in sim.fault_log if f["kind"].startswith("malformed") and f["coin"]}
    assert {r.id for r in result.records}.isdisjoint(malformed)
    assert client.metrics.snapshot()["records_rejected"] == len(result.rejects)


def test_truncated_json_is_retried_then_reported_naming_the_endpoint(sim, make_client):
    client = make_client(sleeps=[])
    sim.force("truncate", 1)
    assert len(client.coins_markets_page(1).records) == 250
    assert client.metrics.snapshot()["bad_payloads"] == 1
    sim.set_faults(truncate_rate=1.0)
    with pytest.raises(CoinGeckoPayloadError, match="/coins/markets") as exc:
        client.coins_markets_page(1)
    assert exc.value.attempts == client.retry.max_attempts


def test_unexpected_shape_raises_a_clear_error(make_client):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"coins": []})

    client = make_client(transport=httpx.MockTransport(handler), sleeps=[])
    with pytest.raises(CoinGeckoShapeError, match=r"/coins/markets: expected a JSON array"):
        client.coins_markets_page(1)
    assert client.metrics.snapshot()["calls"] == 1


def test_timeouts_and_error_rates_are_ridden_out(sim, make_client):
    client = make_client(sleeps=[], retry=RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.002))
    sim.set_faults(seed=5, timeout_mode="raise")
    sim.force("timeout", 1)
    assert client.ping()
    assert client.metrics.snapshot()["timeouts"] == 1
    sim.set_faults(error_rate=0.3, timeout_rate=0.05)
    result = client.coins_markets_all(per_page=50)
    assert len(result.records) == len(sim.coin_ids) and not result.rejects
    counts = client.metrics.snapshot()
    assert counts["retries"] > 0 and counts["failures"] == 0
    assert counts["calls"] == counts["retries"] + 1 + 13  # 12 full pages + 1 empty page + the ping


def test_total_time_is_bounded(sim, make_client):
    client = make_client(retry=RetryPolicy(max_attempts=100, base_delay=0.05, max_delay=0.1, max_total=0.4))
    sim.set_faults(error_rate=1.0, error_statuses=(500,))
    with pytest.raises(CoinGeckoServerError) as exc:
        client.ping()
    assert 2 <= exc.value.attempts < 100


def test_simple_price_splits_long_id_lists_to_stay_under_the_url_limit(clock, make_client):
    sim = Simulator(SimulatorConfig(coins=600, seed=7, max_url_length=1000), clock=clock)
    client = make_client(app=sim, max_url_length=900, sleeps=[])
    result = client.simple_price(sim.coin_ids)
    assert {r.id for r in result.records} == set(sim.coin_ids)
    assert sim.stats.get("status_414", 0) == 0
    assert client.metrics.snapshot()["calls"] > 5
    for record in result.records[:20]:
        assert record.price == sim.tick_at_or_before(record.id, sim.now()).price


def test_ohlc_range_splits_long_ranges(sim, make_client):
    client = make_client(sleeps=[])
    end = sim.now_ms() // 1000
    result = client.ohlc_range("bitcoin", end - 70 * 86400, end, interval="hourly")
    assert client.metrics.snapshot()["calls"] == 3
    hours = [r.close_time for r in result.records]
    assert hours == sorted(set(hours)) and 70 * 24 - 1 <= len(hours) <= 70 * 24 + 1


def test_from_settings_reads_the_coingecko_settings(settings):
    settings.COINGECKO_PLAN = "demo"
    settings.COINGECKO_API_KEYS = ["a", "b"]
    settings.COINGECKO_BASE_URL = ""
    settings.COINGECKO_RATE_LIMIT_PER_MIN = 30
    settings.COINGECKO_RATE_WINDOW = 2.0
    with CoinGeckoClient.from_settings() as client:
        assert client.base_url == "https://api.coingecko.com/api/v3"
        assert (client.budget.limit, client.budget.window) == (30, 2.0)
        assert client.keys.keys == ["a", "b"]
        assert client.budget.redis is not None


def test_from_settings_shares_state_through_the_ingestion_connection_under_prefixed_keys(settings):
    from apiplatform import redis_access

    settings.REDIS_KEY_PREFIX = "cs"
    settings.COINGECKO_VS_CURRENCY = "eur"
    with CoinGeckoClient.from_settings() as client:
        assert client.redis is redis_access.client("ingestion") is client.budget.redis
        assert client.vs_currency == "eur"
        assert (client.budget.key, client.budget.pause_key) == ("cs:cg:budget", "cs:cg:budget:pause")
        assert client.keys.redis_key == "cs:cg:keys:disabled"
        assert client.metrics.key == "cs:cg:metrics"


def test_cdn_html_429_and_error_bodies_with_200_are_handled(sim, make_client):
    sleeps: list[float] = []
    client = make_client(sleeps=sleeps)
    sim.force("html429", 1, retry_after=0.1)
    assert client.ping()
    assert sleeps == [0.1] and client.metrics.snapshot()["rate_limited"] == 1

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"error": "invalid vs_currency"})

    odd = make_client(transport=httpx.MockTransport(handler), sleeps=[])
    with pytest.raises(CoinGeckoBadRequest, match="invalid vs_currency"):
        odd.coins_markets_page(1)


def test_simulator_clock_may_return_datetimes(make_client):
    from datetime import UTC, datetime

    moment = datetime(2026, 2, 1, 8, 30, tzinfo=UTC)
    sim = Simulator(SimulatorConfig(coins=30), clock=lambda: moment)
    client = make_client(app=sim, clock=lambda: moment.timestamp(), sleeps=[])
    record = next(r for r in client.coins_markets_page(1).records if r.id == "bitcoin")
    assert record.current_price == sim.tick_at_or_before("bitcoin", moment).price
    assert record.last_updated <= moment


def test_malformed_chart_points_are_rejected_and_good_points_match_the_truth(sim, make_client):
    client = make_client(sleeps=[])
    clean = len(client.market_chart("bitcoin", 1).records)
    sim.set_faults(seed=9, malformed_rate=0.1)
    result = client.market_chart("bitcoin", 1)
    price_rejects = [r for r in result.rejects if r.series == "prices"]
    assert price_rejects and all(r.reason for r in price_rejects)
    assert len(result.records) + len(price_rejects) == clean
    for point in result.records:
        assert point.price == sim.tick_at_or_before("bitcoin", point.time).price


def test_stale_records_carry_their_old_last_updated(sim, make_client):
    client = make_client(sleeps=[])
    sim.set_faults(seed=4, stale_rate=0.2, stale_seconds=900)
    records = client.coins_markets_page(1).records
    stale = {f["coin"] for f in sim.fault_log if f["kind"] == "stale"}
    assert stale
    for record in records:
        tick = sim.tick_at_or_before(record.id, record.last_updated)
        assert record.current_price == tick.price, "every record is some real tick, old or new"
        age = sim.now() - record.last_updated
        assert (age.total_seconds() >= 900 - 60) == (record.id in stale)
