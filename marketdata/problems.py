"""Problem types of the market data API (RFC 9457). Listed at /problems/ and in docs/errors.md."""

from apiplatform.problems import register

NO_DATA = register(
    "no-data",
    404,
    "No data for this date",
    "The coin exists but no stored candle covers the date asked for: before its first data, after its "
    "latest, in the future, or in a gap. `earliest_date` and `latest_date` give the range that has data "
    "(null when the coin has none yet).",
)

NO_DATA_AT = register(
    "no-data-at",
    404,
    "No data at this time",
    "Nothing is stored for the time asked for (`at`): it is before the first data, or in a gap. "
    "`earliest` (null when there is no data at all) is the earliest time that can be asked for.",
)
