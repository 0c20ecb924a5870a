"""Pytest fixtures for tests that talk to Stripe through the stand-in (a test double, not Stripe).

Register them where they are used, e.g. in ``tests/billing/conftest.py``::

    from tests.stripe_standin.fixtures import stripe_env, stripe_standin  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .client import TEST_SECRET_KEY, StandIn, running

TEST_WEBHOOK_SECRET = "whsec_test_candlestack"


@pytest.fixture(scope="session")
def stripe_standin() -> Iterator[StandIn]:
    """One stand-in process for the test session (``.base``, control methods, ``stripe_client()``)."""
    with running() as standin:
        yield standin


@pytest.fixture
def stripe_env(stripe_standin: StandIn, settings) -> Iterator[StandIn]:
    """A reset stand-in and the Stripe settings pointing at it (STRIPE_API_BASE, STRIPE_SECRET_KEY,
    STRIPE_WEBHOOK_SECRET), restored after the test by pytest-django's ``settings``."""
    stripe_standin.reset()
    settings.STRIPE_API_BASE = stripe_standin.base
    settings.STRIPE_SECRET_KEY = TEST_SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = TEST_WEBHOOK_SECRET
    yield stripe_standin
    stripe_standin.reset()
