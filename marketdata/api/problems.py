"""Problem types of the public market data API (RFC 9457). Listed at /problems/ and in docs/errors.md."""

from apiplatform.problems import register

NO_DATA_AT = register(
    "no-data-at",
    404,
    "No data at this time",
    "Nothing is stored for the time asked for (`at`): it is before the first data, or in a gap. "
    "`earliest` (null when there is no data at all) is the earliest time that can be asked for.",
)
