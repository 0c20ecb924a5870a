"""The CoinGecko simulator as a plain WSGI application (no Django).

``Simulator`` is both the ground truth (deterministic ticks, market snapshots, candles) and a WSGI
callable serving ``/api/v3/...`` like the real host: same paths, parameters, limits, JSON shapes,
headers and error bodies, with deterministic fault injection and a per-key rate limit. Control
endpoints under ``/_sim/`` exist only in the simulator.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from urllib.parse import parse_qs

import numpy as np
import orjson

from .config import FaultConfig, SimulatorConfig
from .core import DAY_MS, HOUR_MS, GroundTruth, MarketState, Tick, iso_ms, ms_to_datetime, to_ms
from .universe import DATA_START_MS, S_FAULTS, build_universe
from .walk import round_significant, seed_keys, uniform

logger = logging.getLogger(__name__)

MIN5_MS = 300_000
RATE_LIMIT_BODY = {
    "status": {
        "error_code": 429,
        "error_message": "You've exceeded the Rate Limit. Please visit "
        "https://www.coingecko.com/en/api/pricing to subscribe to our API plans for higher rate limits.",
    }
}
VS_RATES = {"usd": 1.0, "eur": 0.92, "gbp": 0.79, "jpy": 150.0, "chf": 0.88, "cad": 1.37, "aud": 1.52}
ENTERPRISE_ONLY = (
    "You may not have access to this endpoint. This request is limited to Enterprise plan subscribers."
)
OHLC_DAYS = ("1", "7", "14", "30", "90", "180", "365", "max")
MARKET_ORDERS = ("market_cap_desc", "market_cap_asc", "volume_desc", "volume_asc", "id_asc", "id_desc")
ERROR_MESSAGES = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_STATE_COLS = (
    "k", "price", "market_cap", "total_volume", "tick_ms", "price_24h", "market_cap_24h",
    "high_24h", "low_24h", "rank",
)  # fmt: skip
_UNIVERSE_COLS = ("circulating", "total_supply", "max_supply", "ath_ref", "atl_ref", "roi_base")
# kinds of record-level faults (counter offsets of the fault hash)
F_MALFORMED, F_MALFORMED_KIND, F_SPIKE, F_STALE, F_GAP = 1, 2, 3, 4, 5


class SimClock:
    """A settable clock: ``now = start + (wall - wall_at_start) * speed`` in epoch seconds."""

    def __init__(self, start: float | datetime | None = None, speed: float = 1.0, wall=time.time):
        self._wall = wall
        self._lock = threading.Lock()
        self._base_wall = wall()
        self._base = self._base_wall if start is None else to_ms(start) / 1000.0
        self.speed = float(speed)

    def __call__(self) -> float:
        with self._lock:
            return self._base + (self._wall() - self._base_wall) * self.speed

    def set(self, now: float | datetime | None = None, speed: float | None = None) -> None:
        current = self()
        with self._lock:
            self._base_wall = self._wall()
            self._base = current if now is None else to_ms(now) / 1000.0
            if speed is not None:
                self.speed = float(speed)

    def advance(self, seconds: float) -> None:
        self.set(now=self() + seconds)


class ManualClock:
    """A clock that only moves when told to (tests): ``clock.advance(60)``."""

    def __init__(self, start: float | datetime):
        self.t = to_ms(start) / 1000.0

    def __call__(self) -> float:
        return self.t

    def set(self, now: float | datetime | None = None, speed: float | None = None) -> None:
        if now is not None:
            self.t = to_ms(now) / 1000.0

    def advance(self, seconds: float) -> None:
        self.t += seconds


class _Reply(Exception):
    def __init__(self, status: int, body, headers: dict[str, str] | None = None, raw: bytes | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.raw = raw


def _flat_error(status: int, message: str) -> _Reply:
    return _Reply(status, {"error": message})


def _status_error(status: int, code: int, message: str) -> _Reply:
    return _Reply(status, {"status": {"error_code": code, "error_message": message}})


def _nested_error(status: int, code: int, message: str) -> _Reply:
    ts = datetime.now(tz=UTC).isoformat(timespec="milliseconds")
    return _Reply(
        status, {"error": {"status": {"timestamp": ts, "error_code": code, "error_message": message}}}
    )


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


def _num(x: float) -> float | int | None:
    """JSON number: integers without a fraction stay ints (as CoinGecko prints them)."""
    if x is None:
        return None
    f = float(x)
    if f != f:  # NaN
        return None
    return int(f) if f.is_integer() and -1e15 < f < 1e15 else f


def _round_sig(x: float, digits: int = 8) -> float:
    """Scalar twin of walk.round_significant for derived values (conversions, outliers)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def _status_text(status: int) -> str:
    from http import HTTPStatus

    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


class Simulator:
    """CoinGecko simulator: ground truth + WSGI app. ``clock()`` returns epoch seconds or a datetime."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        clock: Callable[[], float | datetime] | None = None,
        rate_clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config or SimulatorConfig()
        self.universe = build_universe(self.config.coins, self.config.seed, tuple(self.config.tick_period))
        self.truth = GroundTruth(self.universe)
        self.clock = clock or SimClock()
        self.rate_clock = rate_clock
        self._lock = threading.Lock()
        self._seq = 0
        self._forced: deque[dict] = deque()
        self._revoked: dict[str, int] = {}
        self._rate_counts: dict[tuple[str, int], int] = {}
        self._fault_keys = seed_keys(self.config.faults.seed, len(self.universe), S_FAULTS)
        self.stats: Counter = Counter()
        self.request_log: deque[dict] = deque(maxlen=5000)
        self.fault_log: deque[dict] = deque(maxlen=20000)

    # --- time ----------------------------------------------------------------------------------
    def now_ms(self) -> int:
        return to_ms(self.clock())

    def now(self) -> datetime:
        return ms_to_datetime(self.now_ms())

    # --- ground truth (see core.GroundTruth) ----------------------------------------------------
    @property
    def coin_ids(self) -> list[str]:
        return self.universe.ids

    def tick_at_or_before(self, coin_id: str, t: datetime | float) -> Tick | None:
        return self.truth.tick_at_or_before(coin_id, t)

    def ticks_between(self, coin_id: str, start: datetime | float, end: datetime | float) -> list[Tick]:
        return self.truth.ticks_between(coin_id, start, end)

    def market_state(self, t: datetime | float | None = None) -> MarketState:
        return self.truth.market_state(self.now_ms() if t is None else to_ms(t))

    def markets_at(self, t: datetime | float | None = None, *, vs_currency: str = "usd") -> list[dict]:
        """Every /coins/markets record at ``t`` (market_cap_desc order, no faults): the ground truth."""
        t_ms = self.now_ms() if t is None else to_ms(t)
        state = self.truth.market_state(t_ms)
        order = self._order(state, "market_cap_desc")
        return self._market_records(state, order, VS_RATES[vs_currency], faults=False)

    # --- run-time control -----------------------------------------------------------------------
    @property
    def faults(self) -> FaultConfig:
        return self.config.faults

    def set_faults(self, **changes) -> None:
        """Change fault settings at run time (e.g. ``sim.set_faults(error_rate=0.2)``)."""
        with self._lock:
            self.config.faults.update(**changes)
            if "seed" in changes:
                self._fault_keys = seed_keys(self.config.faults.seed, len(self.universe), S_FAULTS)

    def clear_faults(self) -> None:
        with self._lock:
            self.config.faults = FaultConfig(seed=self.config.faults.seed)
            self._forced.clear()

    def force(
        self, kind: int | str, count: int = 1, *, retry_after: int | None = None, paths: str | None = None
    ) -> None:
        """Answer the next ``count`` API requests with ``kind``: an HTTP status (429, 500, 503...),
        ``"timeout"``, ``"truncate"``, ``"html429"`` (a CDN HTML page) or ``"garbage"`` (not JSON).
        ``paths``: only requests whose path contains this string."""
        with self._lock:
            for _ in range(count):
                self._forced.append({"kind": kind, "retry_after": retry_after, "paths": paths})

    def revoke_key(self, key: str, status: int = 401) -> None:
        """From now on, requests with ``key`` get ``status`` (401 or 403) and the real error body."""
        self._revoked[key] = status

    def restore_key(self, key: str) -> None:
        self._revoked.pop(key, None)

    # --- WSGI -----------------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        started = time.perf_counter()
        path = environ.get("PATH_INFO", "") or "/"
        query = environ.get("QUERY_STRING", "")
        with self._lock:
            self._seq += 1
            seq = self._seq
        key = (
            environ.get("HTTP_X_CG_PRO_API_KEY")
            or environ.get("HTTP_X_CG_DEMO_API_KEY")
            or next(
                (v[-1] for k, v in parse_qs(query).items() if k in ("x_cg_pro_api_key", "x_cg_demo_api_key")),
                "",
            )
        )
        try:
            if path.startswith("/_sim/"):
                reply = self._control(environ, path, query)
            else:
                _, reply = self._api(environ, path, query, seq)
        except _Reply as r:
            reply = r
        status = reply.status
        if reply.raw is not None:
            body = reply.raw
            ctype = reply.headers.pop("Content-Type", "application/json; charset=utf-8")
        else:
            body = orjson.dumps(reply.body, option=orjson.OPT_SERIALIZE_NUMPY)
            ctype = "application/json; charset=utf-8"
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        headers += list(reply.headers.items())
        self.stats[f"status_{status}"] += 1
        self.request_log.append(
            {
                "seq": seq,
                "path": path,
                "query": query,
                "status": status,
                "key": key[-4:] if key else "",
                "ms": round((time.perf_counter() - started) * 1000, 2),
            }
        )
        start_response(_status_text(status), headers)
        return [body]

    # --- API --------------------------------------------------------------------------------------
    def _api(self, environ: dict, path: str, query: str, seq: int) -> tuple[str, _Reply]:
        cfg = self.config
        target_len = len(path) + (len(query) + 1 if query else 0)
        if target_len > cfg.max_url_length:
            raise _Reply(
                414,
                None,
                {"Content-Type": "text/html"},
                raw=b"<html><head><title>414 Request-URI Too Large</title></head><body><center>"
                b"<h1>414 Request-URI Too Large</h1></center><hr><center>cloudflare</center></body></html>",
            )
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        key = self._authenticate(environ, params)
        self._rate_limit(key or environ.get("REMOTE_ADDR", "keyless"))
        self.stats["api_requests"] += 1
        self._request_faults(path, seq)
        if not path.startswith("/api/v3/"):
            raise _flat_error(404, "Not Found")
        route = path[len("/api/v3") :].rstrip("/") or "/"
        parts = route.strip("/").split("/")
        now_ms = self.now_ms()
        if route == "/ping":
            body = {"gecko_says": "(V3) To the Moon!"}
        elif route == "/key" and cfg.plan == "pro":
            body = {
                "plan": "Other",
                "rate_limit_request_per_minute": cfg.rate_limit_per_min or 1000,
                "monthly_call_credit": 1000000,
                "current_total_monthly_calls": int(self.stats["api_requests"]),
                "current_remaining_monthly_calls": max(0, 1000000 - int(self.stats["api_requests"])),
            }
        elif route == "/simple/supported_vs_currencies":
            body = list(VS_RATES)
        elif route == "/coins/list":
            body = self._coins_list(params, now_ms)
        elif route == "/coins/markets":
            body = self._coins_markets(params, now_ms)
        elif route == "/simple/price":
            body = self._simple_price(params, now_ms)
        elif len(parts) >= 3 and parts[0] == "coins":
            i = self.universe.index.get(parts[1])
            sub = "/".join(parts[2:])
            if sub not in ("market_chart", "market_chart/range", "ohlc", "ohlc/range"):
                raise _flat_error(404, "Not Found")
            if i is None or self.universe.listed_ms[i] > now_ms:
                raise _flat_error(404, "coin not found")
            rate = self._vs_rate(params.get("vs_currency"), "vs_currency")
            if sub == "market_chart":
                body = self._market_chart(i, params, rate, now_ms, key)
            elif sub == "market_chart/range":
                body = self._market_chart_range(i, params, rate, now_ms, key)
            elif sub == "ohlc":
                body = self._ohlc(i, params, rate, now_ms)
            else:
                body = self._ohlc_range(i, params, rate, now_ms)
        else:
            raise _flat_error(404, "Not Found")
        return key, self._finish(body, path, seq)

    def _finish(self, body, path: str, seq: int) -> _Reply:
        cache = "max-age=30" if "market_chart" in path else "max-age=45"
        if "ohlc" in path:
            cache = "max-age=900"
        headers = {"Cache-Control": f"public, {cache}", "Access-Control-Allow-Origin": "*"}
        f = self.config.faults
        if f.truncate_rate and self._req_u(seq, 7) < f.truncate_rate:
            raw = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
            self._log_fault("truncate", path)
            return _Reply(200, None, headers, raw=raw[: max(1, len(raw) // 2)])
        return _Reply(200, body, headers)

    def _authenticate(self, environ: dict, params: dict) -> str:
        cfg = self.config
        pro = environ.get("HTTP_X_CG_PRO_API_KEY") or params.get("x_cg_pro_api_key") or ""
        demo = environ.get("HTTP_X_CG_DEMO_API_KEY") or params.get("x_cg_demo_api_key") or ""
        if cfg.plan == "pro":
            if not pro and demo:
                raise _status_error(
                    401,
                    10011,
                    "If you are using Demo API key, please change your root URL from pro-api.coingecko.com "
                    "to api.coingecko.com",
                )
            if not pro:
                raise _status_error(401, 10002, "API Key Missing")
            key = pro
        else:
            if not demo and pro:
                raise _status_error(
                    401,
                    10010,
                    "If you are using Pro API key, please change your root URL from api.coingecko.com "
                    "to pro-api.coingecko.com",
                )
            if not demo and cfg.require_key:
                raise _status_error(401, 10002, "API Key Missing")
            key = demo
        if key and key in self._revoked:
            status = self._revoked[key]
            self.stats["auth_rejected"] += 1
            if status == 403:
                raise _status_error(403, 403, "Access to this API key has been revoked")
            raise _status_error(
                401, 10002, "Invalid API Key: you have provided incorrect API key credentials"
            )
        if key and cfg.api_keys and key not in cfg.api_keys:
            self.stats["auth_rejected"] += 1
            raise _status_error(
                401, 10002, "Invalid API Key: you have provided incorrect API key credentials"
            )
        return key

    def _rate_limit(self, who: str) -> None:
        cfg = self.config
        if cfg.rate_limit_per_min <= 0:
            return
        now = self.rate_clock()
        window = int(now // cfg.rate_limit_window)
        with self._lock:
            count = self._rate_counts.get((who, window), 0) + 1
            self._rate_counts[(who, window)] = count
            if len(self._rate_counts) > 1000:
                for k in [k for k in self._rate_counts if k[1] < window]:
                    del self._rate_counts[k]
        if count > cfg.rate_limit_per_min:
            self.stats["rate_limited"] += 1
            retry = cfg.retry_after
            if retry is None:
                retry = max(1, math.ceil((window + 1) * cfg.rate_limit_window - now))
            raise _Reply(429, RATE_LIMIT_BODY, {"retry-after": str(retry)})

    def _req_u(self, seq: int, kind: int) -> float:
        key = np.array([self._fault_keys[0] ^ np.uint64(0xA5A5A5A5)], dtype=np.uint64)
        return float(uniform(key, np.array([seq * 16 + kind]))[0])

    def _request_faults(self, path: str, seq: int) -> None:
        f = self.config.faults
        forced = None
        with self._lock:
            for idx, item in enumerate(self._forced):
                if item["paths"] is None or item["paths"] in path:
                    forced = item
                    del self._forced[idx]
                    break
        if forced is not None:
            self._raise_fault(forced["kind"], path, forced["retry_after"])
        if f.latency or f.latency_jitter:
            time.sleep(f.latency + f.latency_jitter * self._req_u(seq, 1))
        if f.timeout_rate and self._req_u(seq, 2) < f.timeout_rate:
            self._raise_fault("timeout", path, None)
        if f.error_rate and self._req_u(seq, 3) < f.error_rate:
            statuses = f.error_statuses or (500,)
            status = statuses[int(self._req_u(seq, 4) * len(statuses)) % len(statuses)]
            self._raise_fault(status, path, None)

    def _raise_fault(self, kind: int | str, path: str, retry_after: int | None) -> None:
        self._log_fault(str(kind), path)
        f = self.config.faults
        if kind == "timeout":
            if f.timeout_mode == "raise":
                import httpx

                raise httpx.ReadTimeout("simulated upstream timeout")
            time.sleep(f.timeout_seconds)
            raise _Reply(
                504,
                None,
                {"Content-Type": "text/html"},
                raw=b"<html><body>504 Gateway Time-out</body></html>",
            )
        if kind == "truncate":
            raise _Reply(200, None, raw=b'[{"id":"bitcoin","symbol":"btc","name":"Bitc')
        if kind == "garbage":
            raise _Reply(
                200, None, {"Content-Type": "text/html"}, raw=b"<html><body>Just a moment...</body></html>"
            )
        if kind == "html429":
            raise _Reply(
                429,
                None,
                {"Content-Type": "text/html", "retry-after": str(retry_after or 1)},
                raw=b"<html><head><title>429 Too Many Requests</title></head>"
                b"<body>Too Many Requests</body></html>",
            )
        status = int(kind)
        if status == 429:
            self.stats["rate_limited"] += 1
            raise _Reply(
                429, RATE_LIMIT_BODY, {"retry-after": str(retry_after if retry_after is not None else 1)}
            )
        if status in (401, 403):
            raise _status_error(status, 10002 if status == 401 else 403, "API Key Missing")
        if status == 404:
            raise _flat_error(404, "coin not found")
        if status == 400:
            raise _flat_error(400, "invalid vs_currency")
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        raise _Reply(
            status,
            {"status": {"error_code": status, "error_message": ERROR_MESSAGES.get(status, "Error")}},
            headers,
        )

    def _log_fault(self, kind: str, path: str, coin: str | None = None, t_ms: int | None = None) -> None:
        self.stats[f"fault_{kind}"] += 1
        self.fault_log.append({"kind": kind, "path": path, "coin": coin, "t_ms": t_ms})

    # --- record-level fault decisions (deterministic per coin and tick/point) --------------------
    def _rec_u(self, i: np.ndarray | int, counter: np.ndarray | int, kind: int) -> np.ndarray:
        i = np.asarray(i, dtype=np.int64)
        c = np.asarray(counter, dtype=np.int64)
        return uniform(self._fault_keys[i], c * 16 + kind)

    # --- endpoints ---------------------------------------------------------------------------------
    def _vs_rate(self, value: str | None, name: str) -> float:
        if not value:
            raise _flat_error(400, f"Missing parameter {name}")
        rate = VS_RATES.get(value.lower())
        if rate is None:
            raise _flat_error(400, f"invalid {name}")
        return rate

    def _coins_list(self, params: dict, now_ms: int) -> list[dict]:
        u = self.universe
        if params.get("status", "active") == "inactive":
            return []
        with_platforms = _truthy(params.get("include_platform"))
        out = []
        for i, cid in sorted(enumerate(u.ids), key=lambda pair: pair[1]):  # upstream sorts by id
            if u.listed_ms[i] > now_ms:
                continue
            item = {"id": cid, "symbol": u.symbols[i], "name": u.names[i]}
            if with_platforms:
                item["platforms"] = {}
            out.append(item)
        return out

    def _order(self, state: MarketState, order: str) -> np.ndarray:
        n = len(self.universe)
        ci = np.arange(n)
        if order in ("market_cap_desc", "market_cap_asc"):
            # ranked coins by rank, unranked (no market cap) after them by volume
            key_rank = np.where(state.rank > 0, state.rank, n + 1)
            idx = np.lexsort((ci, -state.total_volume, key_rank))
            if order == "market_cap_asc":
                idx = idx[::-1]
        elif order in ("volume_desc", "volume_asc"):
            idx = np.lexsort((ci, -state.total_volume))
            if order == "volume_asc":
                idx = idx[::-1]
        else:
            idx = np.argsort(np.array(self.universe.ids, dtype=object), kind="stable")
            if order == "id_desc":
                idx = idx[::-1]
        return idx[state.listed[idx]]

    def _coins_markets(self, params: dict, now_ms: int) -> list[dict]:
        rate = self._vs_rate(params.get("vs_currency"), "vs_currency")
        order = params.get("order") or "market_cap_desc"
        if order not in MARKET_ORDERS:
            raise _flat_error(400, "invalid order")
        try:
            per_page = int(float(params.get("per_page") or 100))
            page = int(float(params.get("page") or 1))
        except ValueError:
            raise _flat_error(400, "invalid per_page or page") from None
        per_page = min(max(per_page, 1), 250)
        page = max(page, 1)
        state = self.truth.market_state(now_ms)
        idx = self._order(state, order)
        u = self.universe
        if params.get("category"):
            idx = idx[:0]
        elif params.get("ids"):
            wanted = {s.strip().lower() for s in params["ids"].split(",")}
            idx = np.array([i for i in idx if u.ids[i] in wanted], dtype=np.int64)
        elif params.get("names"):
            wanted = {s.strip().lower() for s in params["names"].split(",")}
            idx = np.array([i for i in idx if u.names[i].lower() in wanted], dtype=np.int64)
        elif params.get("symbols"):
            wanted = {s.strip().lower() for s in params["symbols"].split(",")}
            idx = np.array([i for i in idx if u.symbols[i].lower() in wanted], dtype=np.int64)
        chosen = idx[(page - 1) * per_page : page * per_page]
        pcts = [p for p in (params.get("price_change_percentage") or "").split(",") if p]
        return self._market_records(state, chosen, rate, faults=True, pcts=pcts)

    def _market_records(
        self, state: MarketState, chosen, rate: float, *, faults: bool, pcts: list[str] | None = None
    ) -> list[dict]:
        """Records of the coins ``chosen`` (universe indices), columns pulled out once per page."""
        ch = np.asarray(chosen, dtype=np.int64)
        if not ch.size:
            return []
        cols = {n: getattr(state, n)[ch].tolist() for n in _STATE_COLS}
        cols |= {n: getattr(self.universe, n)[ch].tolist() for n in _UNIVERSE_COLS}
        f = self.config.faults
        flags: dict[str, list[bool]] = {}
        for name, share, kind in (
            ("stale", f.stale_rate, F_STALE),
            ("spike", f.spike_rate, F_SPIKE),
            ("malformed", f.malformed_rate, F_MALFORMED),
        ):
            if faults and share > 0:
                flags[name] = (self._rec_u(ch, state.k[ch], kind) < share).tolist()
            else:
                flags[name] = [False] * ch.size
        return [
            self._market_record(
                state,
                i,
                {n: cols[n][j] for n in cols},
                rate,
                stale=flags["stale"][j],
                spike=flags["spike"][j],
                malformed=flags["malformed"][j],
                pcts=pcts,
            )
            for j, i in enumerate(ch.tolist())
        ]

    def _market_record(
        self,
        state: MarketState,
        i: int,
        row: dict,
        rate: float,
        *,
        stale: bool,
        spike: bool,
        malformed: bool,
        pcts: list[str] | None = None,
    ) -> dict:
        u = self.universe
        f = self.config.faults
        k = row["k"]
        price = row["price"]
        mcap = row["market_cap"]
        vol = row["total_volume"]
        tick_ms = row["tick_ms"]
        if stale:
            old = self.truth.values_at(np.array([i]), state.t_ms - int(f.stale_seconds * 1000))
            if bool(old["listed"][0]):
                price = float(old["price"][0])
                mcap = float(old["market_cap"][0])
                vol = float(old["total_volume"][0])
                tick_ms = int(old["tick_ms"][0])
                self._log_fault("stale", "/coins/markets", u.ids[i], tick_ms)
        if spike:
            price = _round_sig(price * f.spike_factor)
            mcap = round(mcap * f.spike_factor)
            self._log_fault("spike", "/coins/markets", u.ids[i], tick_ms)

        def conv(x: float) -> float | None:
            if x is None or math.isnan(x):
                return None
            return _round_sig(x * rate) if rate != 1.0 else x

        p = conv(price)
        p24 = row["price_24h"]
        m24 = row["market_cap_24h"]
        change = None if math.isnan(p24) else _round_sig((price - p24) * rate)
        change_pct = None if math.isnan(p24) or p24 == 0 else round((price / p24 - 1) * 100, 5)
        mchange = None if math.isnan(m24) or mcap == 0 else (mcap - m24) * rate
        mchange_pct = None if math.isnan(m24) or m24 == 0 or mcap == 0 else round((mcap / m24 - 1) * 100, 5)
        total_supply = row["total_supply"]
        max_supply = row["max_supply"]
        fdv_supply = max_supply if not math.isnan(max_supply) else total_supply
        fdv = None if math.isnan(fdv_supply) or mcap == 0 else round(price * fdv_supply * rate)
        ath_ref, atl_ref = row["ath_ref"], row["atl_ref"]
        ath, ath_date = (ath_ref, u.ath_date[i]) if price <= ath_ref else (price, iso_ms(tick_ms))
        atl, atl_date = (atl_ref, u.atl_date[i]) if price >= atl_ref else (price, iso_ms(tick_ms))
        roi = None
        if not math.isnan(row["roi_base"]):
            times = price / row["roi_base"] - 1
            roi = {"times": times, "currency": "usd", "percentage": times * 100}
        rec = {
            "id": u.ids[i],
            "symbol": u.symbols[i],
            "name": u.names[i],
            "image": u.images[i],
            "current_price": _num(p),
            "market_cap": _num(round(mcap * rate)),
            "market_cap_rank": row["rank"] or None,
            "fully_diluted_valuation": _num(fdv),
            "total_volume": _num(round(vol * rate)),
            "high_24h": _num(conv(max(row["high_24h"], price))),
            "low_24h": _num(conv(min(row["low_24h"], price))),
            "price_change_24h": _num(change),
            "price_change_percentage_24h": _num(change_pct),
            "market_cap_change_24h": _num(mchange),
            "market_cap_change_percentage_24h": _num(mchange_pct),
            "circulating_supply": _num(row["circulating"]),
            "total_supply": _num(total_supply),
            "max_supply": _num(max_supply),
            "ath": _num(conv(ath)),
            "ath_change_percentage": _num(round((price / ath - 1) * 100, 5)),
            "ath_date": ath_date,
            "atl": _num(conv(atl)),
            "atl_change_percentage": _num(round((price / atl - 1) * 100, 5)),
            "atl_date": atl_date,
            "roi": roi,
            "last_updated": iso_ms(tick_ms),
        }
        for window in pcts or ():
            if window in ("1h", "24h", "7d", "14d", "30d", "200d", "1y"):
                rec[f"price_change_percentage_{window}_in_currency"] = self._change_pct(
                    i, price, state.t_ms, window
                )
        if malformed:
            self._malform_record(rec, i, k)
        return rec

    def _change_pct(self, i: int, price: float, t_ms: int, window: str) -> float | None:
        ms = {"1h": HOUR_MS, "24h": DAY_MS, "7d": 7 * DAY_MS, "14d": 14 * DAY_MS, "30d": 30 * DAY_MS}
        ms |= {"200d": 200 * DAY_MS, "1y": 365 * DAY_MS}
        old = self.truth.values_at(np.array([i]), t_ms - ms[window])
        if not bool(old["listed"][0]):
            return None
        return round((price / float(old["price"][0]) - 1) * 100, 5)

    def _malform_record(self, rec: dict, i: int, k: int) -> None:
        kind = int(self._rec_u(i, k, F_MALFORMED_KIND) * 7)
        self._log_fault(f"malformed_{kind}", "/coins/markets", rec["id"], None)
        if kind == 0:
            rec["current_price"] = None
        elif kind == 1:
            rec["current_price"] = "NaN"
        elif kind == 2:
            rec["current_price"] = -abs(rec["current_price"] or 1.0)
        elif kind == 3:
            rec["current_price"] = "abc"
        elif kind == 4:
            rec["last_updated"] = "not-a-date"
        elif kind == 5:
            del rec["id"]
        else:
            rec["last_updated"] = "1970-01-01T00:00:00.000Z"

    def _simple_price(self, params: dict, now_ms: int) -> dict:
        vs_list = [v.strip().lower() for v in (params.get("vs_currencies") or "").split(",") if v.strip()]
        if not vs_list:
            raise _flat_error(400, "Missing parameter vs_currencies")
        for vs in vs_list:
            self._vs_rate(vs, "vs_currencies")
        ids = [s.strip().lower() for s in (params.get("ids") or "").split(",") if s.strip()]
        u = self.universe
        known = [u.index[c] for c in dict.fromkeys(ids) if c in u.index]
        if not known:
            return {}
        ci = np.array(known, dtype=np.int64)
        now = self.truth.values_at(ci, now_ms)
        ago = self.truth.values_at(ci, now_ms - DAY_MS)
        f = self.config.faults
        out: dict = {}
        for j, i in enumerate(known):
            if not bool(now["listed"][j]):
                continue
            price = float(now["price"][j])
            k = int(now["k"][j])
            if f.spike_rate and self._rec_u(i, k, F_SPIKE) < f.spike_rate:
                price = _round_sig(price * f.spike_factor)
                self._log_fault("spike", "/simple/price", u.ids[i], int(now["tick_ms"][j]))
            entry: dict = {}
            for vs in vs_list:
                rate = VS_RATES[vs]
                entry[vs] = _num(_round_sig(price * rate) if rate != 1.0 else price)
                if _truthy(params.get("include_market_cap")):
                    entry[f"{vs}_market_cap"] = _num(float(now["market_cap"][j]) * rate)
                if _truthy(params.get("include_24hr_vol")):
                    entry[f"{vs}_24h_vol"] = _num(float(now["total_volume"][j]) * rate)
                if _truthy(params.get("include_24hr_change")):
                    p24 = float(ago["price"][j])
                    entry[f"{vs}_24h_change"] = (price / p24 - 1) * 100 if bool(ago["listed"][j]) else None
            if _truthy(params.get("include_last_updated_at")):
                entry["last_updated_at"] = int(now["tick_ms"][j]) // 1000
            if f.malformed_rate and self._rec_u(i, k, F_MALFORMED) < f.malformed_rate:
                entry[vs_list[0]] = [None, "NaN", -1.5, "abc"][int(self._rec_u(i, k, F_MALFORMED_KIND) * 4)]
                self._log_fault("malformed", "/simple/price", u.ids[i], None)
            out[u.ids[i]] = entry
        return out

    # --- charts ---------------------------------------------------------------------------------
    def _parse_days(self, value: str | None) -> float | None:
        if value is None or value == "":
            raise _flat_error(400, "Missing parameter days")
        if value == "max":
            return None
        try:
            days = float(value)
        except ValueError:
            raise _flat_error(400, "invalid days") from None
        if not math.isfinite(days) or days <= 0:
            raise _flat_error(400, "invalid days")
        return days

    def _check_history(self, key: str, from_ms: int, now_ms: int) -> None:
        if self.config.plan == "demo" and from_ms < now_ms - self.config.demo_history_days * DAY_MS:
            raise _nested_error(
                401,
                10012,
                "Your request exceeds the allowed time range. Public API users are limited to querying "
                f"historical data within the past {self.config.demo_history_days} days.",
            )

    def _chart_body(self, i: int, times: np.ndarray, rate: float) -> dict:
        times = np.asarray(times, dtype=np.int64)
        if times.size:
            vals = self.truth.values_at(np.full(times.shape, i), times)
            keep = vals["listed"]
            times = times[keep]
            price, mcap, vol = vals["price"][keep], vals["market_cap"][keep], vals["total_volume"][keep]
        else:
            price = mcap = vol = np.zeros(0)
        f = self.config.faults
        sec = times // 1000
        if f.gap_rate and times.size > 1:
            keep = self._rec_u(np.full(times.shape, i), sec, F_GAP) >= f.gap_rate
            keep[-1] = True
            for t in times[~keep]:
                self._log_fault("gap", "/market_chart", self.universe.ids[i], int(t))
            times, price, mcap, vol, sec = times[keep], price[keep], mcap[keep], vol[keep], sec[keep]
        if rate != 1.0:
            price = round_significant(price * rate, 8)
            mcap, vol = mcap * rate, vol * rate
        if f.spike_rate and times.size:
            spikes = self._rec_u(np.full(times.shape, i), sec, F_SPIKE) < f.spike_rate
            price = np.where(spikes, round_significant(price * f.spike_factor, 8), price)
            for t in times[spikes]:
                self._log_fault("spike", "/market_chart", self.universe.ids[i], int(t))
        prices: list = [[int(t), float(p)] for t, p in zip(times, price, strict=True)]
        if f.malformed_rate and times.size:
            bad = self._rec_u(np.full(times.shape, i), sec, F_MALFORMED) < f.malformed_rate
            kinds = (self._rec_u(np.full(times.shape, i), sec, F_MALFORMED_KIND) * 5).astype(int)
            for j in np.nonzero(bad)[0]:
                t = prices[j][0]
                prices[j] = [[t, None], [t, "abc"], [t], [t, -abs(prices[j][1])], [t // 1000, prices[j][1]]][
                    kinds[j]
                ]
                self._log_fault(f"malformed_{kinds[j]}", "/market_chart", self.universe.ids[i], int(t))
        return {
            "prices": prices,
            "market_caps": [[int(t), _num(m)] for t, m in zip(times, mcap, strict=True)],
            "total_volumes": [[int(t), _num(v)] for t, v in zip(times, vol, strict=True)],
        }

    @staticmethod
    def _grid(from_ms: int, to_ms_: int, step: int, now_ms: int) -> np.ndarray:
        end = min(to_ms_, now_ms)
        first = -(-from_ms // step) * step
        grid = np.arange(first, end + 1, step, dtype=np.int64)
        if to_ms_ >= now_ms and (grid.size == 0 or grid[-1] != now_ms):
            grid = np.append(grid, now_ms)  # the last point is "now", not aligned to a bucket
        return grid

    def _market_chart(self, i: int, params: dict, rate: float, now_ms: int, key: str) -> dict:
        days = self._parse_days(params.get("days"))
        listed = int(self.universe.listed_ms[i])
        from_ms = listed if days is None else now_ms - round(days * DAY_MS)
        self._check_history(key, from_ms, now_ms)
        interval = params.get("interval") or ""
        if interval not in ("", "5m", "hourly", "daily"):
            raise _flat_error(400, "invalid interval")
        if interval in ("5m", "hourly") and not self.config.enterprise:
            raise _status_error(401, 10005, ENTERPRISE_ONLY)
        if interval == "daily" or (not interval and (days is None or days > 90)):
            step = DAY_MS
        elif interval == "hourly" or (not interval and days > 1):
            step = HOUR_MS
        else:
            step = MIN5_MS
        return self._chart_body(i, self._grid(max(from_ms, listed), now_ms, step, now_ms), rate)

    def _parse_time(self, value: str | None, name: str) -> int:
        if value is None or value == "":
            raise _flat_error(400, f"Missing parameter {name}")
        try:
            return math.floor(float(value) * 1000)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _flat_error(400, f"invalid {name}") from None
        return to_ms(dt)

    def _market_chart_range(self, i: int, params: dict, rate: float, now_ms: int, key: str) -> dict:
        from_ms = self._parse_time(params.get("from"), "from")
        to_ms_ = self._parse_time(params.get("to"), "to")
        self._check_history(key, from_ms, now_ms)
        interval = params.get("interval") or ""
        if interval in ("5m", "hourly") and not self.config.enterprise:
            raise _status_error(401, 10005, ENTERPRISE_ONLY)
        span = to_ms_ - from_ms
        if to_ms_ < from_ms:
            return {"prices": [], "market_caps": [], "total_volumes": []}
        recent = to_ms_ >= now_ms - HOUR_MS
        if interval == "5m" or (not interval and span <= DAY_MS and (recent or self.config.range_5m_anytime)):
            step, floor_ms = MIN5_MS, DATA_START_MS
        elif interval == "hourly" or (not interval and span <= 90 * DAY_MS):
            step, floor_ms = HOUR_MS, DATA_START_MS
        else:
            step, floor_ms = DAY_MS, DATA_START_MS
        start = max(from_ms, floor_ms, int(self.universe.listed_ms[i]))
        return self._chart_body(i, self._grid(start, to_ms_, step, now_ms), rate)

    def _candles(self, i: int, starts: np.ndarray, candle_ms: int, rate: float, now_ms: int) -> list:
        sample = None
        if candle_ms >= 4 * DAY_MS:
            sample = HOUR_MS
        elif candle_ms >= DAY_MS:
            sample = MIN5_MS
        ohlc = self.truth.ohlc(self.universe.ids[i], starts, candle_ms, now_ms, sample)
        close_ms = ohlc["start_ms"] + candle_ms
        o, h, lo, c = (round_significant(ohlc[x] * rate, 8) for x in ("open", "high", "low", "close"))
        f = self.config.faults
        sec = close_ms // 1000
        idx = np.full(close_ms.shape, i)
        keep = np.ones(close_ms.shape, dtype=bool)
        if f.gap_rate and close_ms.size > 1:
            keep = self._rec_u(idx, sec, F_GAP) >= f.gap_rate
            keep[-1] = True
        if f.spike_rate and close_ms.size:
            spikes = self._rec_u(idx, sec, F_SPIKE) < f.spike_rate
            h = np.where(spikes, round_significant(h * f.spike_factor, 8), h)
            c = np.where(spikes, round_significant(c * f.spike_factor, 8), c)
        rows: list = []
        for j in range(close_ms.size):
            if not keep[j]:
                self._log_fault("gap", "/ohlc", self.universe.ids[i], int(close_ms[j]))
                continue
            row = [
                int(close_ms[j]),
                _num(float(o[j])),
                _num(float(h[j])),
                _num(float(lo[j])),
                _num(float(c[j])),
            ]
            if f.malformed_rate and self._rec_u(i, int(sec[j]), F_MALFORMED) < f.malformed_rate:
                kind = int(self._rec_u(i, int(sec[j]), F_MALFORMED_KIND) * 4)
                row = [
                    row[:4],
                    [row[0], None, row[2], row[3], row[4]],
                    [row[0], row[1], row[3] * 0.5, row[3], row[4]],
                    [row[0], "NaN", row[2], row[3], row[4]],
                ][kind]
                self._log_fault(f"malformed_{kind}", "/ohlc", self.universe.ids[i], int(close_ms[j]))
            rows.append(row)
        return rows

    def _ohlc(self, i: int, params: dict, rate: float, now_ms: int) -> list:
        days_s = params.get("days")
        if days_s not in OHLC_DAYS:
            raise _flat_error(400, "invalid days: must be one of 1, 7, 14, 30, 90, 180, 365, max")
        interval = params.get("interval") or ""
        if interval not in ("", "daily", "hourly"):
            raise _flat_error(400, "invalid interval")
        if interval and self.config.plan == "demo":
            raise _status_error(401, 10005, "This request is limited to paid plan subscribers.")
        listed = int(self.universe.listed_ms[i])
        days = None if days_s == "max" else int(days_s)
        from_ms = listed if days is None else now_ms - days * DAY_MS
        if interval == "daily":
            candle = DAY_MS
        elif interval == "hourly":
            candle = HOUR_MS
        elif days is not None and days <= 2:
            candle = 30 * 60_000
        elif days is not None and days <= 30:
            candle = 4 * HOUR_MS
        else:
            candle = 4 * DAY_MS
        return self._candles(
            i, self._candle_starts(max(from_ms, listed), now_ms, candle, now_ms), candle, rate, now_ms
        )

    def _candle_starts(self, from_ms: int, to_ms_: int, candle: int, now_ms: int) -> np.ndarray:
        first = (from_ms // candle) * candle
        if first + candle <= from_ms:
            first += candle
        last = min(to_ms_, now_ms)
        starts = np.arange(first, last, candle, dtype=np.int64)
        if not self.config.ohlc_include_partial:
            starts = starts[starts + candle <= now_ms]
        return starts

    def _ohlc_range(self, i: int, params: dict, rate: float, now_ms: int) -> list:
        if self.config.plan == "demo":
            raise _status_error(401, 10005, "This request is limited to paid plan subscribers.")
        from_ms = self._parse_time(params.get("from"), "from")
        to_ms_ = self._parse_time(params.get("to"), "to")
        interval = params.get("interval")
        if interval not in ("daily", "hourly"):
            raise _flat_error(400, "invalid interval: must be daily or hourly")
        candle = DAY_MS if interval == "daily" else HOUR_MS
        limit_days = 180 if interval == "daily" else 31
        if to_ms_ - from_ms > limit_days * DAY_MS:
            raise _flat_error(
                400, f"The time range exceeds the maximum of {limit_days} days for interval={interval}"
            )
        start = max(from_ms, DATA_START_MS, int(self.universe.listed_ms[i]))
        return self._candles(i, self._candle_starts(start, to_ms_, candle, now_ms), candle, rate, now_ms)

    # --- control endpoints (simulator only) ------------------------------------------------------
    def _control(self, environ: dict, path: str, query: str) -> _Reply:
        method = environ.get("REQUEST_METHOD", "GET")
        body: dict = {}
        if method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            try:
                body = orjson.loads(raw) if raw else {}
            except orjson.JSONDecodeError:
                raise _flat_error(400, "body must be JSON") from None
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        if path == "/_sim/state":
            return _Reply(200, self.state())
        if path == "/_sim/clock":
            if method == "POST":
                setter = getattr(self.clock, "set", None)
                if setter is None:
                    raise _flat_error(400, "this simulator's clock cannot be set")
                now = body.get("now")
                if isinstance(now, str):
                    now = datetime.fromisoformat(now.replace("Z", "+00:00"))
                setter(now=now, speed=body.get("speed"))
                if body.get("advance"):
                    self.clock.advance(float(body["advance"]))
            return _Reply(200, {"now": self.now_ms() / 1000, "now_iso": iso_ms(self.now_ms())})
        if path == "/_sim/faults":
            if method == "POST":
                try:
                    self.set_faults(**body)
                except (ValueError, TypeError) as exc:
                    raise _flat_error(400, str(exc)) from None
            return _Reply(200, asdict(self.config.faults))
        if path == "/_sim/force" and method == "POST":
            self.force(
                body["kind"],
                int(body.get("count", 1)),
                retry_after=body.get("retry_after"),
                paths=body.get("paths"),
            )
            return _Reply(200, {"queued": len(self._forced)})
        if path == "/_sim/keys/revoke" and method == "POST":
            self.revoke_key(body["key"], int(body.get("status", 401)))
            return _Reply(200, {"revoked": True})
        if path == "/_sim/truth/tick":
            t = float(params.get("t") or self.now_ms() / 1000)
            tick = (
                self.tick_at_or_before(params.get("coin", ""), t)
                if params.get("coin") in self.universe.index
                else None
            )
            if tick is None:
                raise _flat_error(404, "no tick")
            return _Reply(
                200,
                {
                    "coin_id": tick.coin_id,
                    "index": tick.index,
                    "time_ms": tick.time_ms,
                    "price": tick.price,
                    "market_cap": tick.market_cap,
                    "total_volume": tick.total_volume,
                },
            )
        raise _flat_error(404, "Not Found")

    def state(self) -> dict:
        return {
            "now": self.now_ms() / 1000,
            "now_iso": iso_ms(self.now_ms()),
            "coins": len(self.universe),
            "seed": self.config.seed,
            "plan": self.config.plan,
            "rate_limit_per_min": self.config.rate_limit_per_min,
            "rate_limit_window": self.config.rate_limit_window,
            "faults": asdict(self.config.faults),
            "stats": dict(self.stats),
        }
