"""Problem types of alerts and webhook endpoints (RFC 9457; docs/errors.md)."""

from apiplatform.problems import register

WEBHOOK_URL_REFUSED = register(
    "webhook-url-refused",
    400,
    "Webhook URL refused",
    "Webhooks are delivered only to public `https://` URLs: not to private, loopback, link-local "
    "(cloud metadata) or otherwise internal addresses, and without a user name or password in the "
    "URL. `detail` says which rule the URL breaks. The same rules apply again at every delivery.",
)
ALERT_LIMIT_REACHED = register(
    "alert-limit-reached",
    409,
    "Alert limit reached",
    "The organization has as many alerts as it may have (`ALERTS_MAX_PER_ORGANIZATION`, default "
    "1000). Delete alerts it no longer needs.",
)
WEBHOOK_ENDPOINT_IN_USE = register(
    "webhook-endpoint-in-use",
    409,
    "Webhook endpoint in use",
    "Alerts still deliver to this endpoint. Delete them, or move them to another endpoint, first.",
)
DELIVERY_NOT_REPLAYABLE = register(
    "delivery-not-replayable",
    409,
    "Delivery not replayable",
    "This delivery has not made its first attempt yet; it is sent shortly. Replay it afterwards.",
)
