"""The stand-in's own tests use the fixtures it offers to the rest of the suite."""

from tests.stripe_standin.fixtures import stripe_env, stripe_standin  # noqa: F401
