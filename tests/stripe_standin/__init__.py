"""A local stand-in for the Stripe API, for Candlestack's tests: a test double, not Stripe.

It runs as its own process (``python -m tests.stripe_standin --port 0``) and answers the real
``stripe`` library (form encoding, Idempotency-Key, Bearer auth) for the resources billing uses:
customers, products, prices, billing meters and meter events, Checkout and portal sessions,
subscriptions and invoices. A JSON control API under ``/_standin/`` resets it, sets its clock,
injects faults and creates what Stripe creates on its own. Nothing in the product imports it.

- ``server``: the HTTP server (routes, auth, idempotency, faults); ``resources``: the v1 handlers;
  ``control``: the control API; ``state``, ``forms``, ``errors``: memory, form decoding, errors.
- ``client``: ``StandIn`` (control API client) and ``running()`` (start/stop the process).
- ``fixtures``: the pytest fixtures ``stripe_standin`` and ``stripe_env``.
- ``webhooks``: signed webhook payloads (``signature_header``, ``event``).
"""
