"""Problem types of billing's Stripe endpoints (RFC 9457). Listed at /problems/ and in docs/errors.md."""

from apiplatform.problems import register

BILLING_NOT_CONFIGURED = register(
    "billing-not-configured",
    503,
    "Billing is not configured",
    "This deployment has no Stripe account configured (`STRIPE_SECRET_KEY` / `STRIPE_WEBHOOK_SECRET`); "
    "plans are assigned by an operator. Everything else works.",
)
BILLING_UNAVAILABLE = register(
    "billing-unavailable",
    503,
    "Billing temporarily unavailable",
    "Stripe could not be reached in time or failed. Nothing was created or changed; retry after the "
    "`Retry-After` seconds.",
)
SUBSCRIPTION_EXISTS = register(
    "subscription-exists",
    409,
    "Subscription exists",
    "The organization already has a subscription. Change plan, payment method or cancel in the billing "
    "portal (`POST /v1/account/billing/portal`).",
)
NO_BILLING_ACCOUNT = register(
    "no-billing-account",
    409,
    "No billing account",
    "The organization has not bought anything yet, so it has no billing account to manage. Start with "
    "`POST /v1/account/billing/checkout`.",
)
WEBHOOK_INVALID = register(
    "webhook-invalid",
    400,
    "Invalid webhook delivery",
    "The Stripe webhook delivery failed verification: missing or wrong `Stripe-Signature`, a timestamp "
    "older than the tolerance (300 s), or a body that is not a Stripe event. Nothing was stored.",
)
