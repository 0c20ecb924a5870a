"""``python -m tests.stripe_standin --port N``: run the Stripe stand-in (a test double, not Stripe)."""

from .server import main

main()
