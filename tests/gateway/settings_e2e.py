"""Settings of the web processes started by the gateway's multi-process tests."""

from apiplatform.settings import *  # noqa: F403

ROOT_URLCONF = "tests.gateway.urls"
