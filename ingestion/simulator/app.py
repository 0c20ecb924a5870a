"""The CoinGecko simulator as a plain WSGI application (no Django).

``Simulator`` serves ``/api/v3/...`` like the real host: same paths, parameters, limits, JSON shapes,
headers and error bodies. This module does the request pipeline (URL length, authentication, the
per-key rate limit, request-level faults, routing, the answer and its log); the endpoint families live
in ``endpoints/``, the ``/_sim/`` control API in ``control``, fault injection in ``faults``, the shared
reply/error/parameter helpers in ``protocol``, and the ground truth and run-time state in ``state``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from urllib.parse import parse_qs

import orjson

from .control import control
from .endpoints import charts, coins, markets, meta, ohlc, reference, simple
from .faults import request_faults, truncated
from .protocol import RATE_LIMIT_BODY, VS_RATES, Reply, flat_error, status_error, status_text, vs_rate
from .state import SimState

URI_TOO_LONG = (
    b"<html><head><title>414 Request-URI Too Large</title></head><body><center>"
    b"<h1>414 Request-URI Too Large</h1></center><hr><center>cloudflare</center></body></html>"
)
CoinEndpoint = Callable[[SimState, int, dict, float, int], dict | list]

COIN_ENDPOINTS: dict[str, CoinEndpoint] = {
    "market_chart": charts.market_chart,
    "market_chart/range": charts.market_chart_range,
    "ohlc": ohlc.ohlc,
    "ohlc/range": ohlc.ohlc_range,
}


class Simulator(SimState):
    """CoinGecko simulator: ground truth (see ``SimState``) + WSGI app."""

    def markets_at(self, t: datetime | float | None = None, *, vs_currency: str = "usd") -> list[dict]:
        """Every /coins/markets record at ``t`` (market_cap_desc order, no faults): the ground truth."""
        market = self.market_state(t)
        order = markets.ordered(self, market, "market_cap_desc")
        return markets.market_records(self, market, order, VS_RATES[vs_currency], faults=False)

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
                reply = control(self, environ, path, query)
            else:
                reply = self._api(environ, path, query, seq)
        except Reply as r:
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
        start_response(status_text(status), headers)
        return [body]

    # --- API --------------------------------------------------------------------------------------
    def _api(self, environ: dict, path: str, query: str, seq: int) -> Reply:
        cfg = self.config
        target_len = len(path) + (len(query) + 1 if query else 0)
        if target_len > cfg.max_url_length:
            raise Reply(414, None, {"Content-Type": "text/html"}, raw=URI_TOO_LONG)
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        key = self._authenticate(environ, params)
        self._rate_limit(key or environ.get("REMOTE_ADDR", "keyless"))
        self.stats["api_requests"] += 1
        request_faults(self, path, seq)
        if not path.startswith("/api/v3/"):
            raise flat_error(404, "Not Found")
        route = path[len("/api/v3") :].rstrip("/") or "/"
        parts = route.strip("/").split("/")
        now_ms = self.now_ms()
        body: dict | list
        if route == "/ping":
            body = meta.ping()
        elif route == "/key" and cfg.plan == "pro":
            body = meta.key_usage(self)
        elif route == "/simple/supported_vs_currencies":
            body = simple.supported_vs_currencies()
        elif route == "/coins/list":
            body = coins.coins_list(self, params, now_ms)
        elif route == "/coins/markets":
            body = markets.coins_markets(self, params, now_ms)
        elif route == "/simple/price":
            body = simple.simple_price(self, params, now_ms)
        elif route == "/exchange_rates":
            body = reference.exchange_rates(self, now_ms)
        elif route == "/global":
            body = reference.global_market(self, now_ms)
        elif len(parts) >= 3 and parts[0] == "coins":
            i = self.universe.index.get(parts[1])
            endpoint = COIN_ENDPOINTS.get("/".join(parts[2:]))
            if endpoint is None:
                raise flat_error(404, "Not Found")
            if i is None or self.universe.listed_ms[i] > now_ms:
                raise flat_error(404, "coin not found")
            rate = vs_rate(params.get("vs_currency"), "vs_currency")
            body = endpoint(self, i, params, rate, now_ms)
        else:
            raise flat_error(404, "Not Found")
        return self._finish(body, path, seq)

    def _finish(self, body: dict | list, path: str, seq: int) -> Reply:
        cache = "max-age=30" if "market_chart" in path else "max-age=45"
        if "ohlc" in path:
            cache = "max-age=900"
        elif "simple/price" in path:
            cache = "max-age=20"
        elif "exchange_rates" in path or "global" in path:
            cache = "max-age=300"
        headers = {"Cache-Control": f"public, {cache}", "Access-Control-Allow-Origin": "*"}
        return truncated(self, body, headers, path, seq) or Reply(200, body, headers)

    def _authenticate(self, environ: dict, params: dict) -> str:
        cfg = self.config
        pro = environ.get("HTTP_X_CG_PRO_API_KEY") or params.get("x_cg_pro_api_key") or ""
        demo = environ.get("HTTP_X_CG_DEMO_API_KEY") or params.get("x_cg_demo_api_key") or ""
        if cfg.plan == "pro":
            if not pro and demo:
                raise status_error(
                    401,
                    10011,
                    "If you are using Demo API key, please change your root URL from pro-api.coingecko.com "
                    "to api.coingecko.com",
                )
            if not pro:
                raise status_error(401, 10002, "API Key Missing")
            key = pro
        else:
            if not demo and pro:
                raise status_error(
                    401,
                    10010,
                    "If you are using Pro API key, please change your root URL from api.coingecko.com "
                    "to pro-api.coingecko.com",
                )
            if not demo and cfg.require_key:
                raise status_error(401, 10002, "API Key Missing")
            key = demo
        if key and key in self._revoked:
            status = self._revoked[key]
            self.stats["auth_rejected"] += 1
            if status == 403:
                raise status_error(403, 403, "Access to this API key has been revoked")
            raise status_error(401, 10002, "Invalid API Key: you have provided incorrect API key credentials")
        if key and cfg.api_keys and key not in cfg.api_keys:
            self.stats["auth_rejected"] += 1
            raise status_error(401, 10002, "Invalid API Key: you have provided incorrect API key credentials")
        return key

    def _rate_limit(self, who: str) -> None:
        """Fixed windows of ``rate_limit_window`` seconds, ``rate_limit_per_min`` calls each, per key."""
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
            raise Reply(429, RATE_LIMIT_BODY, {"retry-after": str(retry)})
