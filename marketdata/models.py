"""Market data store: coins, latest snapshots, raw ticks and OHLCV candles.

Write through :mod:`marketdata.services` only (one write path: COPY → staging → upsert); read
through :mod:`marketdata.selectors`. See docs/marketdata.md for the schema and the reasons.

Numbers are ``double precision`` (``FloatField``): upstream sends JSON floats, prices span
1e-10 … 1e6, and float8 keeps every value bit-exact as received while staying compact and fast.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import models
from django.utils import timezone


class Timeframe(models.TextChoices):
    M1 = "1m", "1 minute"
    M5 = "5m", "5 minutes"
    M15 = "15m", "15 minutes"
    H1 = "1h", "1 hour"
    H4 = "4h", "4 hours"
    D1 = "1d", "1 day"
    W1 = "1w", "1 week"


#: Length of one bucket of each timeframe.
TIMEFRAME_DELTA: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
    "1w": timedelta(weeks=1),
}
#: Every timeframe, shortest first: the order roll-ups run in (each after its source).
TIMEFRAMES: tuple[str, ...] = tuple(TIMEFRAME_DELTA)

#: The origin of the bucket grid (UTC): Monday 1970-01-05 00:00. Buckets of every timeframe are
#: ``BUCKET_ORIGIN + k * length``. The Unix epoch (1970-01-01) was a Thursday, so weeks counted from
#: it would start on Thursdays; the origin is 4 days later, a whole number of every shorter bucket
#: (minutes, 4 hours, days), so those grids are the same as from the epoch: 4h buckets start at
#: 00:00, 04:00, … 20:00 UTC and 1w buckets on Mondays 00:00 UTC.
BUCKET_ORIGIN = datetime(1970, 1, 5, tzinfo=UTC)


def timeframe_numbers(name: str, value: str) -> dict[str, int]:
    """A "timeframe=number,…" setting (``"1m=30,5m=365"``) as {timeframe: number}, in the order given.
    Raises ValueError naming the setting for an unknown timeframe or a number that is not one."""
    out: dict[str, int] = {}
    for part in (value or "").split(","):
        if not part.strip():
            continue
        tf, _, number = part.partition("=")
        tf = tf.strip()
        if tf not in TIMEFRAME_DELTA:
            raise ValueError(f"{name}: unknown timeframe {tf!r}")
        try:
            out[tf] = int(number)
        except ValueError:
            raise ValueError(f"{name}: {part.strip()!r} is not timeframe=<whole number>") from None
    return out


#: Each higher timeframe is rolled up from the one before it.
ROLLUP_SOURCE: dict[str, str] = {"5m": "1m", "15m": "5m", "1h": "15m", "4h": "1h", "1d": "1h", "1w": "1d"}


def rollup_targets(base: str) -> tuple[str, ...]:
    """The timeframes rolled up (directly or through others) from ``base``, in the order to compute
    them: ``1h`` → (4h, 1d, 1w); ``1d`` → (1w,); ``1w`` → ()."""
    reached = {base}
    out = []
    for tf in TIMEFRAMES:
        if ROLLUP_SOURCE.get(tf) in reached:
            reached.add(tf)
            out.append(tf)
    return tuple(out)


class Coin(models.Model):
    """One asset of the upstream universe. Never deleted: delisted coins become inactive."""

    upstream_id = models.CharField(max_length=200, unique=True, help_text="CoinGecko id, e.g. 'bitcoin'.")
    symbol = models.CharField(max_length=100, db_index=True)
    name = models.CharField(max_length=300)
    active = models.BooleanField(default=True, db_index=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["upstream_id"]

    def __str__(self) -> str:
        return f"{self.upstream_id} ({self.symbol})"


class MarketSnapshot(models.Model):
    """The latest market data of a coin (one row per coin, replaced on every refresh)."""

    coin = models.OneToOneField(Coin, on_delete=models.CASCADE, primary_key=True, related_name="snapshot")
    price = models.FloatField(null=True)
    market_cap = models.FloatField(null=True)
    rank = models.PositiveIntegerField(null=True, db_index=True, help_text="Upstream market-cap rank.")
    volume_24h = models.FloatField(null=True, help_text="Rolling 24h traded volume (quote currency).")
    high_24h = models.FloatField(null=True)
    low_24h = models.FloatField(null=True)
    change_24h_pct = models.FloatField(null=True)
    last_updated = models.DateTimeField(null=True, help_text="Upstream's own update time of these values.")
    fetched_at = models.DateTimeField(help_text="When we fetched these values.")
    # The "details" of /coins/markets (refreshed every minute; the price columns above may be fresher,
    # see docs/marketdata.md "Snapshots"). Null where the upstream has no (valid) value.
    change_1h_pct = models.FloatField(null=True)
    change_7d_pct = models.FloatField(null=True)
    change_30d_pct = models.FloatField(null=True)
    circulating_supply = models.FloatField(null=True)
    total_supply = models.FloatField(null=True)
    max_supply = models.FloatField(null=True)
    fully_diluted_valuation = models.FloatField(null=True, help_text="Price x max (or total) supply, USD.")
    ath = models.FloatField(null=True, help_text="All-time high price, USD.")
    ath_date = models.DateTimeField(null=True)
    atl = models.FloatField(null=True, help_text="All-time low price, USD.")
    atl_date = models.DateTimeField(null=True)
    image_url = models.CharField(max_length=500, blank=True, default="")
    details_updated = models.DateTimeField(null=True, help_text="When the detail columns were fetched.")

    class Meta:
        indexes = [models.Index(fields=["-market_cap"], name="snapshot_market_cap_desc")]

    def __str__(self) -> str:
        return f"snapshot {self.coin_id} @ {self.last_updated}"


class ExchangeRate(models.Model):
    """The latest rate of a quote currency (upstream /exchange_rates, refreshed on a schedule).

    ``per_btc`` is the upstream's value (units per 1 BTC); ``per_usd`` = per_btc / the USD per_btc,
    the rate fiat prices are converted with. BTC and ETH quotes are not converted with these: they
    come from our own bitcoin/ethereum snapshots (docs/marketdata.md "Quote currencies")."""

    code = models.CharField(max_length=10, primary_key=True, help_text="Lower case, e.g. 'eur'.")
    name = models.CharField(max_length=100)
    unit = models.CharField(max_length=20)
    kind = models.CharField(max_length=20, help_text="fiat, crypto or commodity (upstream 'type').")
    per_btc = models.FloatField()
    per_usd = models.FloatField()
    fetched_at = models.DateTimeField()

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.per_usd:g}/USD"


class GlobalSnapshot(models.Model):
    """The whole market at one upstream time (/global, stored on a schedule): the history of
    ``GET /v1/global``. One row per upstream ``updated_at`` (a re-fetch of the same is a no-op)."""

    time = models.DateTimeField(primary_key=True, help_text="Upstream updated_at.")
    total_market_cap = models.FloatField(help_text="USD.")
    total_volume = models.FloatField(help_text="Rolling 24h volume, USD.")
    btc_dominance = models.FloatField(null=True, help_text="Bitcoin's share of the total market cap, %.")
    eth_dominance = models.FloatField(null=True, help_text="Ethereum's share of the total market cap, %.")
    active_coins = models.IntegerField(null=True)
    markets = models.IntegerField(null=True, help_text="Exchanges tracked upstream.")
    market_cap_change_24h_pct = models.FloatField(null=True)
    fetched_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"global @ {self.time}"


class Tick(models.Model):
    """One upstream observation of a coin, keyed by the upstream's update time (seen twice = once).

    Ticks are the input of the 1m candles; they are kept for ``TICK_RETENTION_HOURS`` only.
    """

    pk = models.CompositePrimaryKey("coin_id", "time")
    coin = models.ForeignKey(Coin, on_delete=models.CASCADE, db_constraint=True)
    time = models.DateTimeField(help_text="Upstream last_updated.")
    price = models.FloatField()
    market_cap = models.FloatField(null=True)
    volume_24h = models.FloatField(null=True)
    fetched_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["time"], name="tick_time")]

    def __str__(self) -> str:
        return f"tick {self.coin_id} @ {self.time}"


class Candle(models.Model):
    """One OHLCV bucket, keyed (coin, timeframe, bucket_start). The table is created by SQL.

    ``marketdata_candle`` is partitioned LIST (timeframe) → RANGE (bucket_start), with a DEFAULT
    partition at each level, which Django's schema editor cannot express; migration 0002 creates it
    with RunSQL and only records this model in the migration state. Never ``save()`` candles:
    write with ``services.candles_upsert`` (the admin lists them through ``CandleListing``).

    - ``volume``: volume traded inside the bucket; null where the source does not provide it
      (CoinGecko does not: it reports a rolling 24h volume). Roll-ups sum it (null if all null).
    - ``volume_24h``: the upstream's rolling 24h volume at the bucket's close. Roll-ups take the last.
    - ``market_cap``: market cap at the bucket's close (last). Serves rankings at a past time.
    - ``closed``: the bucket's end has passed (a late correction can still rewrite it).
    - ``filled``: no upstream value inside the bucket; carried forward flat from the previous close
      after a successful poll (a minute we failed to poll stays a gap, i.e. no row).
    - ``samples``: upstream observations (ticks) the candle was built from; roll-ups sum them (null
      when any part has none: candles from upstream OHLC or imports have null).
    - ``partial``: the bucket started before our first observation of the coin (its open is not the
      price at the bucket's start). Roll-ups: partial if a part is partial, or if the series starts
      inside the bucket (its first part is missing and no earlier one exists).
    """

    pk = models.CompositePrimaryKey("coin_id", "timeframe", "bucket_start")
    coin = models.ForeignKey(Coin, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    timeframe = models.CharField(max_length=3, choices=Timeframe.choices)
    bucket_start = models.DateTimeField()
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField(null=True)
    volume_24h = models.FloatField(null=True)
    market_cap = models.FloatField(null=True)
    closed = models.BooleanField(default=False)
    filled = models.BooleanField(default=False)
    samples = models.IntegerField(null=True, help_text="Upstream observations (ticks) behind the candle.")
    partial = models.BooleanField(
        default=False, db_default=False, help_text="The bucket started before our first observation."
    )
    source = models.CharField(max_length=16)
    revision = models.IntegerField(default=0, help_text="0 as first written; +1 each time values changed.")
    updated_at = models.DateTimeField()

    class Meta:
        # The table is created by SQL in migration 0002 (SeparateDatabaseAndState): Django keeps the
        # model "managed" so that test flushes truncate it, but never creates or alters it itself.
        db_table = "marketdata_candle"

    def __str__(self) -> str:
        return f"{self.coin_id} {self.timeframe} {self.bucket_start:%Y-%m-%d %H:%M}"

    @property
    def bucket_end(self):
        return self.bucket_start + TIMEFRAME_DELTA[self.timeframe]


class SeriesWatermark(models.Model):
    """Per (coin, timeframe, source) series: what was fetched from upstream.

    A forward-only series (delta updates) has ``until`` only. A series filled newest first (the
    history job, source ``history``) also has ``since``: everything in [since, until) was fetched,
    and ``start_reached`` says upstream has nothing older (the coin's first data).
    """

    coin = models.ForeignKey(Coin, on_delete=models.CASCADE, related_name="+")
    timeframe = models.CharField(max_length=3, choices=Timeframe.choices)
    source = models.CharField(max_length=16)
    until = models.DateTimeField(help_text="Everything before this time has been fetched.")
    since = models.DateTimeField(
        null=True, blank=True, help_text="Filled back to: everything from here to `until` was fetched."
    )
    start_reached = models.BooleanField(
        default=False, help_text="Upstream has nothing before `since` (the series' first data)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["coin", "timeframe", "source"], name="watermark_series_unique")
        ]

    def __str__(self) -> str:
        return f"{self.coin_id} {self.timeframe} {self.source} < {self.until}"


class CandleListing(models.Model):
    """Read-only view of ``marketdata_candle`` for the admin (which cannot list composite-key models).

    Unmanaged; ``bucket_start`` poses as the primary key only so the changelist can render rows. It is
    not unique: never use this model for lookups or writes.
    """

    coin = models.ForeignKey(Coin, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    timeframe = models.CharField(max_length=3, choices=Timeframe.choices)
    bucket_start = models.DateTimeField(primary_key=True)
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField(null=True)
    volume_24h = models.FloatField(null=True)
    market_cap = models.FloatField(null=True)
    closed = models.BooleanField()
    filled = models.BooleanField()
    samples = models.IntegerField(null=True)
    partial = models.BooleanField()
    source = models.CharField(max_length=16)
    revision = models.IntegerField()
    updated_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "marketdata_candle"
        verbose_name = "candle"
        verbose_name_plural = "candles"

    def __str__(self) -> str:
        return f"{self.coin_id} {self.timeframe} {self.bucket_start:%Y-%m-%d %H:%M}"


# --- H5: precomputed latest indicators (the screener's table; written by marketdata.screener) -----
class LatestIndicator(models.Model):
    """The indicators of the newest CLOSED candle of each (coin, timeframe), with the screener's
    fixed parameters (see ``marketdata.screener.SCREENER_PARAMS``). Rebuilt by
    ``marketdata.screener.latest_indicators_refresh`` after each roll-up; null = not enough history."""

    coin = models.ForeignKey(Coin, on_delete=models.CASCADE, related_name="+")
    timeframe = models.CharField(max_length=3, choices=Timeframe.choices)
    time = models.DateTimeField(help_text="bucket_start of the candle these values belong to.")
    close = models.FloatField()
    change_pct = models.FloatField(null=True, help_text="Close vs the previous candle's close, in %.")
    volume_24h = models.FloatField(null=True)
    sma = models.FloatField(null=True)
    ema = models.FloatField(null=True)
    rsi = models.FloatField(null=True)
    macd = models.FloatField(null=True)
    macd_signal = models.FloatField(null=True)
    macd_histogram = models.FloatField(null=True)
    bb_upper = models.FloatField(null=True)
    bb_middle = models.FloatField(null=True)
    bb_lower = models.FloatField(null=True)
    atr = models.FloatField(null=True)
    volatility = models.FloatField(null=True)
    computed_at = models.DateTimeField()
    # The incremental refresh's state (marketdata.screener_state): the indicators' recursive parts
    # and the last closes after the candle at ``anchor`` (a few candles before ``time``, so that the
    # newest candles, which late corrections rewrite, are re-read each refresh). Null for a coin with
    # fewer than HISTORY closed candles (recomputed in full each time).
    anchor = models.DateTimeField(null=True, help_text="bucket_start of the candle the state is after.")
    state = models.BinaryField(null=True, editable=False, help_text="Packed float64 (screener_state.WIDTH).")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["timeframe", "coin"], name="latest_indicator_series_unique")
        ]

    def __str__(self) -> str:
        return f"latest indicators {self.coin_id} {self.timeframe} @ {self.time}"


class CandleChange(models.Model):
    """A change to a closed candle: one row per (timeframe, coin) and write, with the oldest bucket the
    write changed. Written in the transaction of the change by the candle write path
    (``services._run_upsert`` and ``services.candles_close``), consumed (deleted) by the screener's
    refresh of that timeframe, which recomputes in full a coin whose change reaches back before its
    stored state (marketdata.screener). Append-only: writers never wait on each other or on the
    screener."""

    id = models.BigAutoField(primary_key=True)
    timeframe = models.CharField(max_length=3, choices=Timeframe.choices)
    coin_id = models.BigIntegerField()
    bucket_start = models.DateTimeField(help_text="The oldest bucket of the series the write changed.")

    class Meta:
        indexes = [models.Index(fields=["timeframe"], name="candlechange_timeframe")]

    def __str__(self) -> str:
        return f"change {self.coin_id} {self.timeframe} from {self.bucket_start}"
