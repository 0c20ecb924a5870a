"""The one door to Stripe: a configured ``stripe.StripeClient`` and what its failures mean here.

Every Stripe call of the project goes through :func:`client` and runs inside :func:`errors`:

* the official ``stripe`` library, pointed at ``STRIPE_API_BASE`` (Stripe itself by default; the
  tests' local stand-in), with ``STRIPE_TIMEOUT_SECONDS`` per call and no hidden library retries
  (our retries are explicit: the task base for background work, the customer for a 503);
* every write carries an idempotency key chosen by the caller (deterministic where a repeat must
  find the first attempt's result, e.g. the organization's customer);
* failures are sorted into :class:`StripeUnavailable` (down, slow, 5xx, 429: retry later; a task
  retries it, an endpoint answers 503 with ``Retry-After``) and :class:`StripeRejected` (Stripe
  refused the request: a bug or a state we did not expect; not retried).

Without ``STRIPE_SECRET_KEY`` nothing here is called: :func:`client` raises
:class:`BillingNotConfigured` (the billing endpoints answer 503 ``billing-not-configured``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import stripe
from django.conf import settings

from apiplatform.jobs.base import PermanentError, RetryableError

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30  # what a customer is told to wait when Stripe is unavailable


class BillingNotConfigured(Exception):
    """No ``STRIPE_SECRET_KEY``: billing is switched off on this deployment."""


class StripeUnavailable(RetryableError):
    """Stripe could not be reached in time, or answered 5xx/429: nothing was decided, try later."""


class StripeRejected(PermanentError):
    """Stripe refused the request (4xx). ``code`` is Stripe's error code ("" when it gave none)."""

    def __init__(self, message: str, *, code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


@functools.lru_cache(maxsize=4)
def _client(api_key: str, base: str, timeout: float) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": base},
        http_client=stripe.HTTPXClient(timeout=timeout, allow_sync_methods=True),
        max_network_retries=0,
    )


def client() -> stripe.StripeClient:
    """The client for the current settings (one per key/base/timeout, reused across calls)."""
    if not configured():
        raise BillingNotConfigured("STRIPE_SECRET_KEY is not set")
    return _client(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE.rstrip("/"),
        float(settings.STRIPE_TIMEOUT_SECONDS),
    )


@contextmanager
def errors(action: str) -> Iterator[None]:
    """Run a Stripe call; its failures become :class:`StripeUnavailable` / :class:`StripeRejected`.
    ``action`` names the call in logs (never a secret)."""
    try:
        yield
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        logger.warning("stripe unavailable during %s: %s", action, type(exc).__name__)
        raise StripeUnavailable(
            f"Stripe unavailable during {action}", retry_after=RETRY_AFTER_SECONDS
        ) from exc
    except stripe.StripeError as exc:
        status = exc.http_status
        if status is None or status >= 500:
            logger.warning("stripe error during %s: HTTP %s", action, status)
            raise StripeUnavailable(
                f"Stripe answered {status} during {action}", retry_after=RETRY_AFTER_SECONDS
            ) from exc
        code = exc.code or ""
        logger.error("stripe refused %s: HTTP %s %s %s", action, status, code, exc.user_message or "")
        raise StripeRejected(exc.user_message or str(exc), code=code, status=status) from exc
