"""The CoinGecko HTTP client: keys, shared rate budget, retries, logging, counters, typed parsing."""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict
from urllib.parse import quote

import httpx
import orjson
from django.conf import settings
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from apiplatform import redis_access

from . import parsing
from .errors import (
    CoinGeckoAuthError,
    CoinGeckoBadRequest,
    CoinGeckoError,
    CoinGeckoHTTPError,
    CoinGeckoNotFound,
    CoinGeckoPayloadError,
    CoinGeckoPlanError,
    CoinGeckoRateLimited,
    CoinGeckoServerError,
    CoinGeckoTransportError,
    NoUsableKeyError,
)
from .metrics import ClientMetrics
from .ratelimit import RateBudget
from .records import (
    ChartPoint,
    CoinListItem,
    ExchangeRate,
    GlobalMarket,
    MarketRecord,
    OHLCRecord,
    ParseResult,
    Reject,
    SimplePrice,
)

logger = logging.getLogger(__name__)

PRO_BASE_URL = "https://pro-api.coingecko.com/api/v3"
DEMO_BASE_URL = "https://api.coingecko.com/api/v3"
KEY_HEADERS = {"pro": "x-cg-pro-api-key", "demo": "x-cg-demo-api-key"}
OHLC_DAYS = ("1", "7", "14", "30", "90", "180", "365", "max")
OHLC_RANGE_LIMIT_DAYS = {"daily": 180, "hourly": 31}
NOT_KEY_PROBLEMS = {10005, 10012, 1020}  # 401/403 codes that say nothing about the key itself


def key_fingerprint(key: str) -> str:
    """A short, non-reversible name for a key, safe for logs and Redis."""
    return hashlib.sha256(key.encode()).hexdigest()[:12] if key else "keyless"


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter: ``base_delay * 2**(n-1) + uniform(0, base_delay)``, capped by
    ``max_delay``; ``Retry-After`` wins (capped by ``retry_after_cap``); at most ``max_attempts``
    attempts and never a sleep that would end after ``max_total`` seconds from the first attempt."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_total: float = 120.0
    retry_after_cap: float = 60.0


class _KeyRejected(CoinGeckoAuthError):
    """A key answered 401/403 and was taken out of rotation: retry at once with the next key."""

    retryable = True


class KeyRing:
    """Round-robin over keys; a key that answers 401/403 is disabled for every process (Redis set of
    fingerprints) and reported in the log and the ``keys_disabled`` counter."""

    def __init__(self, keys: Sequence[str], redis=None, redis_key: str = "cg:keys:disabled"):
        self.keys = [k for k in keys if k]
        self.redis = redis
        self.redis_key = redis_key
        self._disabled: set[str] = set()
        self._cycle = itertools.count()
        self._lock = threading.Lock()

    def _shared_disabled(self) -> set[str]:
        if self.redis is None:
            return set()
        try:
            return {m.decode() if isinstance(m, bytes) else m for m in self.redis.smembers(self.redis_key)}
        except Exception:
            logger.warning("could not read disabled CoinGecko keys from Redis", exc_info=True)
            return set()

    def active(self) -> list[str]:
        disabled = self._disabled | self._shared_disabled()
        return [k for k in self.keys if key_fingerprint(k) not in disabled]

    def next(self) -> str:
        if not self.keys:
            return ""
        active = self.active()
        if not active:
            raise NoUsableKeyError("every configured CoinGecko API key was rejected (401/403)")
        with self._lock:
            return active[next(self._cycle) % len(active)]

    def disable(self, key: str) -> None:
        fp = key_fingerprint(key)
        self._disabled.add(fp)
        if self.redis is not None:
            try:
                self.redis.sadd(self.redis_key, fp)
            except Exception:
                logger.warning("could not share disabled CoinGecko key %s", fp, exc_info=True)

    def disabled_fingerprints(self) -> list[str]:
        return sorted((self._disabled | self._shared_disabled()) & {key_fingerprint(k) for k in self.keys})


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, (parsedate_to_datetime(value).timestamp() - time.time()))
        except (TypeError, ValueError):
            return None


def _epoch(t: datetime | float | int) -> int:
    return int(t.timestamp()) if isinstance(t, datetime) else int(t)


class _HTTPErrorArgs(TypedDict):
    """The keyword arguments every ``CoinGeckoHTTPError`` built by ``_http_error`` shares."""

    endpoint: str
    status: int
    error_code: int | None
    error_message: str


class CoinGeckoClient:
    """Client of the CoinGecko API (Pro or Demo), safe to share between threads.

    Construct from Django settings with ``CoinGeckoClient.from_settings()`` or explicitly (tests pass
    ``transport=httpx.WSGITransport(app=simulator)`` or the simulator server's URL).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        plan: str = "pro",
        api_keys: Sequence[str] = (),
        rate_limit_per_min: int = 500,
        rate_window: float = 60.0,
        timeout: float = 10.0,
        vs_currency: str = "usd",
        transport: httpx.BaseTransport | None = None,
        redis=None,
        budget: RateBudget | None = None,
        budget_key: str = "cg:budget",
        budget_max_wait: float = 120.0,
        budget_reserve: int = 0,
        disabled_keys_key: str = "cg:keys:disabled",
        metrics_key: str = "cg:metrics",
        retry: RetryPolicy | None = None,
        metrics: ClientMetrics | None = None,
        max_url_length: int = 8000,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        if plan not in KEY_HEADERS:
            raise ValueError("plan must be 'pro' or 'demo'")
        self.plan = plan
        self.base_url = (base_url or (PRO_BASE_URL if plan == "pro" else DEMO_BASE_URL)).rstrip("/")
        self.vs_currency = vs_currency
        self.redis = redis
        self.keys = KeyRing(api_keys, redis, disabled_keys_key)
        self.budget = budget or RateBudget(
            redis,
            limit=rate_limit_per_min,
            window=rate_window,
            key=budget_key,
            max_wait=budget_max_wait,
            reserve=budget_reserve,
        )  # waits for budget are real sleeps even when ``sleep`` is a test double
        self.retry = retry or RetryPolicy()
        self.metrics = metrics or ClientMetrics(redis, metrics_key)
        self.max_url_length = max_url_length
        self._sleep = sleep
        self._clock = clock
        self.http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=30),
            headers={"accept": "application/json", "user-agent": "candlestack-ingestion/1.0"},
        )

    @classmethod
    def from_settings(cls, **overrides) -> CoinGeckoClient:
        """Build from the ``COINGECKO_*`` Django settings. The budget, the disabled keys and the
        counters are shared through the ``"ingestion"`` Redis connection of apiplatform.redis_access,
        under ``<prefix>:cg:budget`` (and ``:pause``), ``<prefix>:cg:keys:disabled`` and
        ``<prefix>:cg:metrics``."""
        kwargs: dict[str, Any] = {
            "base_url": settings.COINGECKO_BASE_URL or None,
            "plan": settings.COINGECKO_PLAN,
            "api_keys": list(settings.COINGECKO_API_KEYS),
            "rate_limit_per_min": settings.COINGECKO_RATE_LIMIT_PER_MIN,
            "rate_window": settings.COINGECKO_RATE_WINDOW,
            "timeout": settings.COINGECKO_TIMEOUT,
            "vs_currency": settings.COINGECKO_VS_CURRENCY,
            "max_url_length": settings.COINGECKO_MAX_URL_LENGTH,
            "budget_key": redis_access.key("cg", "budget"),
            "budget_max_wait": settings.COINGECKO_BUDGET_MAX_WAIT,
            "disabled_keys_key": redis_access.key("cg", "keys", "disabled"),
            "metrics_key": redis_access.key("cg", "metrics"),
            "retry": RetryPolicy(
                max_attempts=settings.COINGECKO_MAX_ATTEMPTS,
                base_delay=settings.COINGECKO_RETRY_BASE_DELAY,
                max_delay=settings.COINGECKO_RETRY_MAX_DELAY,
                max_total=settings.COINGECKO_RETRY_MAX_TOTAL,
                retry_after_cap=settings.COINGECKO_RETRY_AFTER_CAP,
            ),
        }
        if "redis" not in overrides:
            kwargs["redis"] = redis_access.client("ingestion")
        kwargs.update(overrides)
        return cls(**kwargs)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> CoinGeckoClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- transport ----------------------------------------------------------------------------------
    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _KeyRejected):
            return 0.0
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry.retry_after_cap)
        # base * 2**(n-1) + uniform(0, base), at most max_delay
        return wait_exponential_jitter(
            multiplier=self.retry.base_delay, max=self.retry.max_delay, jitter=self.retry.base_delay
        )(state)

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.metrics.incr("retries")
        logger.warning(
            "coingecko retry endpoint=%s attempt=%d wait=%.2fs error=%s",
            getattr(exc, "endpoint", ""),
            state.attempt_number,
            state.upcoming_sleep,
            exc,
        )

    def get_json(
        self, path: str, params: dict[str, Any] | None = None, *, endpoint: str | None = None
    ) -> Any:
        """GET ``path`` with retries; returns the decoded JSON or raises a ``CoinGeckoError``."""
        endpoint = endpoint or path
        started = time.monotonic()
        attempts = itertools.count(1)
        last_attempt = [0]

        def attempt() -> Any:
            n = next(attempts)
            last_attempt[0] = n
            return self._attempt(path, params or {}, endpoint, n, started)

        retrying = Retrying(
            retry=retry_if_exception(lambda e: bool(getattr(e, "retryable", False))),
            stop=stop_after_attempt(self.retry.max_attempts) | stop_before_delay(self.retry.max_total),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except CoinGeckoError as exc:
            exc.attempts = last_attempt[0]
            self.metrics.incr("failures")
            logger.error("coingecko failed endpoint=%s attempts=%d error=%s", endpoint, exc.attempts, exc)
            raise

    def _attempt(self, path: str, params: dict[str, Any], endpoint: str, attempt: int, started: float) -> Any:
        key = self.keys.next()
        remaining = self.retry.max_total - (time.monotonic() - started)
        self.budget.acquire(max_wait=max(0.0, min(self.budget.max_wait, remaining)))
        headers = {KEY_HEADERS[self.plan]: key} if key else {}
        self.metrics.incr("calls")
        t0 = time.perf_counter()
        try:
            response = self.http.get(path, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            self._log(endpoint, "timeout", t0, attempt, key)
            self.metrics.incr("timeouts")
            raise CoinGeckoTransportError(f"timeout: {exc}", endpoint=endpoint) from exc
        except httpx.TransportError as exc:
            self._log(endpoint, "connection-error", t0, attempt, key)
            self.metrics.incr("timeouts")
            raise CoinGeckoTransportError(f"connection error: {exc}", endpoint=endpoint) from exc
        self._log(endpoint, response.status_code, t0, attempt, key)
        if response.status_code == 200:
            try:
                payload = orjson.loads(response.content)
            except orjson.JSONDecodeError as exc:
                self.metrics.incr("bad_payloads")
                raise CoinGeckoPayloadError(
                    f"invalid JSON ({len(response.content)} bytes, truncated?): {exc}", endpoint=endpoint
                ) from exc
            if isinstance(payload, dict) and payload and set(payload) <= {"status", "error"}:
                # an error body delivered with HTTP 200
                code, message = parsing.parse_error_body(payload)
                if code is not None or message:
                    if code == 429:
                        self.metrics.incr("rate_limited")
                        return_exc: CoinGeckoError = CoinGeckoRateLimited(
                            endpoint=endpoint, status=200, error_code=code, error_message=message
                        )
                    else:
                        return_exc = CoinGeckoBadRequest(
                            endpoint=endpoint, status=200, error_code=code, error_message=message
                        )
                    raise return_exc
            return payload
        raise self._http_error(response, endpoint, key)

    def _log(self, endpoint: str, status, t0: float, attempt: int, key: str) -> None:
        latency = time.perf_counter() - t0
        latency_ms = latency * 1000
        self.metrics.attempt(
            endpoint=endpoint, key=key_fingerprint(key), status=status, latency=latency, attempt=attempt
        )
        logger.info(
            "coingecko call endpoint=%s status=%s latency_ms=%.1f attempt=%d key=%s",
            endpoint,
            status,
            latency_ms,
            attempt,
            key_fingerprint(key),
            extra={
                "cg_endpoint": endpoint,
                "cg_status": status,
                "cg_latency_ms": round(latency_ms, 1),
                "cg_attempt": attempt,
            },
        )

    def _http_error(self, response: httpx.Response, endpoint: str, key: str) -> CoinGeckoError:
        status = response.status_code
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        code, message = parsing.parse_error_body(body)
        if body is None and response.content:
            message = response.text[:200]
        retry_after = _retry_after(response.headers)
        common: _HTTPErrorArgs = {
            "endpoint": endpoint,
            "status": status,
            "error_code": code,
            "error_message": message,
        }
        if status == 429:
            self.metrics.incr("rate_limited")
            wait = min(
                retry_after if retry_after is not None else self.retry.base_delay, self.retry.retry_after_cap
            )
            self.budget.pause(wait)  # every worker holds off, not just this one
            return CoinGeckoRateLimited(**common, retry_after=retry_after)
        if status in (401, 403):
            if code in NOT_KEY_PROBLEMS:
                return CoinGeckoPlanError(**common)
            if not key:
                return CoinGeckoAuthError(**common)
            self.keys.disable(key)
            self.metrics.incr("keys_disabled")
            logger.error(
                "coingecko key %s taken out of rotation after HTTP %s (error_code %s): %s",
                key_fingerprint(key),
                status,
                code,
                message,
            )
            if self.keys.active():
                return _KeyRejected(**common)
            return NoUsableKeyError(f"last API key rejected with HTTP {status}: {message}", endpoint=endpoint)
        if status >= 500 or status == 408:
            self.metrics.incr("server_errors")
            return CoinGeckoServerError(**common, retry_after=retry_after)
        if status == 404:
            return CoinGeckoNotFound(**common)
        return CoinGeckoBadRequest(**common)

    def _count(self, result: ParseResult) -> ParseResult:
        self.metrics.incr("records_ok", len(result.records))
        if result.rejects:
            self.metrics.incr("records_rejected", len(result.rejects))
            logger.warning(
                "coingecko %s: %d records rejected, e.g. %s",
                result.endpoint,
                len(result.rejects),
                "; ".join(f"#{r.index}: {r.reason}" for r in result.rejects[:3]),
            )
        return result

    def _now(self) -> float:
        return self._clock()

    # --- endpoints -----------------------------------------------------------------------------------
    def ping(self) -> str:
        return parsing.parse_ping(self.get_json("/ping"))

    def coins_list(self, *, include_platform: bool = False) -> ParseResult[CoinListItem]:
        params = {"include_platform": "true"} if include_platform else {}
        return self._count(parsing.parse_coins_list(self.get_json("/coins/list", params)))

    def coins_markets_page(
        self,
        page: int = 1,
        *,
        per_page: int = 250,
        vs_currency: str | None = None,
        ids: Iterable[str] | None = None,
        order: str = "market_cap_desc",
        price_change_percentage: str | None = None,
    ) -> ParseResult[MarketRecord]:
        result, _ = self._markets_page(page, per_page, vs_currency, ids, order, price_change_percentage)
        return result

    def _markets_page(
        self, page, per_page, vs_currency, ids, order, pcp
    ) -> tuple[ParseResult[MarketRecord], int]:
        if not 1 <= per_page <= 250:
            raise ValueError("per_page must be 1..250")
        params: dict[str, Any] = {
            "vs_currency": vs_currency or self.vs_currency,
            "order": order,
            "per_page": per_page,
            "page": page,
            "sparkline": "false",
        }
        if ids:
            params["ids"] = ",".join(ids)
        if pcp:
            params["price_change_percentage"] = pcp
        payload = self.get_json("/coins/markets", params)
        result = parsing.parse_coins_markets(payload, now=self._now(), page=page)
        return self._count(result), len(payload)

    def iter_coins_markets_pages(
        self, *, per_page: int = 250, max_pages: int = 400, vs_currency: str | None = None, **kwargs
    ) -> Iterator[tuple[int, ParseResult[MarketRecord]]]:
        """Yield ``(page, result)`` for pages 1, 2, ... until an empty page (the end of the universe)."""
        for page in range(1, max_pages + 1):
            result, raw_count = self._markets_page(
                page, per_page, vs_currency, kwargs.get("ids"), kwargs.get("order", "market_cap_desc"), None
            )
            if raw_count == 0:
                return
            yield page, result
        logger.warning(
            "coingecko /coins/markets: stopped after max_pages=%d without an empty page", max_pages
        )

    def coins_markets_all(
        self, *, per_page: int = 250, max_pages: int = 400, vs_currency: str | None = None
    ) -> ParseResult[MarketRecord]:
        """Walk /coins/markets page by page until an empty page. Coins that moved between pages
        while walking can appear twice: later copies are rejected as duplicates."""
        combined: ParseResult[MarketRecord] = ParseResult(endpoint="/coins/markets")
        seen: set[str] = set()
        for page, result in self.iter_coins_markets_pages(
            per_page=per_page, max_pages=max_pages, vs_currency=vs_currency
        ):
            combined.rejects.extend(result.rejects)
            for index, record in enumerate(result.records):
                if record.id in seen:
                    combined.rejects.append(
                        Reject(index, f"duplicate id {record.id!r} across pages", record.id, f"page {page}")
                    )
                    continue
                seen.add(record.id)
                combined.records.append(record)
        return combined

    def _id_chunks(self, ids: Sequence[str], fixed_params: dict[str, Any], path: str) -> list[list[str]]:
        base = len(self.base_url) + len(path) + 1 + len(str(httpx.QueryParams(fixed_params))) + len("&ids=")
        budget = self.max_url_length - base
        chunks: list[list[str]] = []
        current: list[str] = []
        used = 0
        for cid in ids:
            cost = len(quote(cid, safe="")) + (3 if current else 0)  # "," is sent as %2C
            if current and used + cost > budget:
                chunks.append(current)
                current, used = [], 0
                cost = len(quote(cid, safe=""))
            current.append(cid)
            used += cost
        if current:
            chunks.append(current)
        return chunks

    def simple_price(
        self,
        ids: Sequence[str],
        *,
        vs_currency: str | None = None,
        include_market_cap: bool = True,
        include_24hr_vol: bool = True,
        include_24hr_change: bool = True,
        include_last_updated_at: bool = True,
    ) -> ParseResult[SimplePrice]:
        """Prices of many coins, split into as many calls as needed to keep each URL within
        ``max_url_length`` (long id lists fail upstream with 414)."""
        vs = vs_currency or self.vs_currency
        params = {
            "vs_currencies": vs,
            "include_market_cap": str(include_market_cap).lower(),
            "include_24hr_vol": str(include_24hr_vol).lower(),
            "include_24hr_change": str(include_24hr_change).lower(),
            "include_last_updated_at": str(include_last_updated_at).lower(),
        }
        combined: ParseResult[SimplePrice] = ParseResult(endpoint="/simple/price")
        for chunk in self._id_chunks(list(dict.fromkeys(ids)), params, "/simple/price"):
            payload = self.get_json("/simple/price", {**params, "ids": ",".join(chunk)})
            combined.extend(self._count(parsing.parse_simple_price(payload, vs, now=self._now())))
            combined.calls += 1
        return combined

    def exchange_rates(self) -> ParseResult[ExchangeRate]:
        """BTC-to-currency rates (``value`` units per 1 BTC) of every currency the upstream knows."""
        return self._count(parsing.parse_exchange_rates(self.get_json("/exchange_rates")))

    def global_market(self) -> GlobalMarket:
        """The whole market (/global): total market cap and volume in USD, BTC/ETH dominance, …"""
        return parsing.parse_global(self.get_json("/global"), now=self._now())

    def market_chart(
        self,
        coin_id: str,
        days: int | float | str,
        *,
        vs_currency: str | None = None,
        interval: str | None = None,
    ) -> ParseResult[ChartPoint]:
        params: dict[str, Any] = {"vs_currency": vs_currency or self.vs_currency, "days": str(days)}
        if interval:
            params["interval"] = interval
        endpoint = "/coins/{id}/market_chart"
        payload = self.get_json(f"/coins/{quote(coin_id, safe='')}/market_chart", params, endpoint=endpoint)
        return self._count(parsing.parse_market_chart(payload, now=self._now(), endpoint=endpoint))

    def market_chart_range(
        self,
        coin_id: str,
        start: datetime | float,
        end: datetime | float,
        *,
        vs_currency: str | None = None,
        interval: str | None = None,
    ) -> ParseResult[ChartPoint]:
        params: dict[str, Any] = {
            "vs_currency": vs_currency or self.vs_currency,
            "from": _epoch(start),
            "to": _epoch(end),
        }
        if interval:
            params["interval"] = interval
        endpoint = "/coins/{id}/market_chart/range"
        payload = self.get_json(
            f"/coins/{quote(coin_id, safe='')}/market_chart/range", params, endpoint=endpoint
        )
        return self._count(parsing.parse_market_chart(payload, now=self._now(), endpoint=endpoint))

    def ohlc(
        self, coin_id: str, days: int | str, *, vs_currency: str | None = None, interval: str | None = None
    ) -> ParseResult[OHLCRecord]:
        """Candles keyed by CLOSE time (``OHLCRecord.close_time``); candle size from
        ``records.ohlc_candle_seconds(days, interval)``. ``days`` must be one of 1, 7, 14, 30, 90,
        180, 365, max (anything else is refused upstream with 400)."""
        if str(days) not in OHLC_DAYS:
            raise ValueError(f"days must be one of {', '.join(OHLC_DAYS)}")
        params: dict[str, Any] = {"vs_currency": vs_currency or self.vs_currency, "days": str(days)}
        if interval:
            params["interval"] = interval
        endpoint = "/coins/{id}/ohlc"
        payload = self.get_json(f"/coins/{quote(coin_id, safe='')}/ohlc", params, endpoint=endpoint)
        return self._count(parsing.parse_ohlc(payload, now=self._now(), endpoint=endpoint))

    def ohlc_range(
        self,
        coin_id: str,
        start: datetime | float,
        end: datetime | float,
        *,
        interval: str = "hourly",
        vs_currency: str | None = None,
    ) -> ParseResult[OHLCRecord]:
        """Candles (close-time keyed) between ``start`` and ``end``; a range longer than the upstream
        limit (180 days daily, 31 days hourly) is split into several calls."""
        if interval not in OHLC_RANGE_LIMIT_DAYS:
            raise ValueError("interval must be 'daily' or 'hourly'")
        s, e = _epoch(start), _epoch(end)
        step = int(timedelta(days=OHLC_RANGE_LIMIT_DAYS[interval]).total_seconds())
        endpoint = "/coins/{id}/ohlc/range"
        combined: ParseResult[OHLCRecord] = ParseResult(endpoint=endpoint)
        seen: set[datetime] = set()
        chunk_start = s
        while chunk_start < e:
            chunk_end = min(chunk_start + step, e)
            params = {
                "vs_currency": vs_currency or self.vs_currency,
                "from": chunk_start,
                "to": chunk_end,
                "interval": interval,
            }
            payload = self.get_json(f"/coins/{quote(coin_id, safe='')}/ohlc/range", params, endpoint=endpoint)
            result = self._count(parsing.parse_ohlc(payload, now=self._now(), endpoint=endpoint))
            combined.rejects.extend(result.rejects)
            for record in result.records:
                if record.close_time not in seen:
                    seen.add(record.close_time)
                    combined.records.append(record)
            chunk_start = chunk_end
        combined.records.sort(key=lambda r: r.close_time)
        return combined


__all__ = [
    "DEMO_BASE_URL",
    "PRO_BASE_URL",
    "CoinGeckoClient",
    "CoinGeckoHTTPError",
    "KeyRing",
    "RetryPolicy",
    "key_fingerprint",
]
