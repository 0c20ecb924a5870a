"""Settings for the second web process started by the cross-process revocation test."""

from apiplatform.settings import *  # noqa: F403

ROOT_URLCONF = "tests.accounts.public_urls"
