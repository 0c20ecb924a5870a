"""Customer alerts on market data, delivered to the customer's webhooks (docs/alerts.md).

A Django app of its own (label ``alerts``) inside marketdata, because it is market data's reaction
to its own writes: the ingestion write cycle calls :func:`marketdata.alerts.hooks.candles_written`
(one call), which evaluates every active alert against the values just written.

- ``models``: webhook endpoints (per-endpoint signing secret), alerts (condition + crossing state),
  deliveries and their attempts (recorded before sending, Saleor's pattern);
- ``conditions`` / ``evaluation``: the values alerts compare (price, % change over a window, RSI,
  MACD) read in one query per kind for all alerts of a refresh, and the crossing rule;
- ``transport``: the SSRF-safe HTTP client (https only, resolved address checked at connection
  time, no redirects, short timeouts, bounded reads); ``signing``: the Stripe-style signature;
- ``delivery``: attempts, the retry schedule (24 h), dead letters (apiplatform.jobs), replay;
- ``views``: the management API under /v1/account/ (JWT, tenant-scoped through accounts.tenancy:
  an explicit exemption in the import contracts, pyproject.toml).
"""
