"""Candlestack settings: one module, every machine-specific value from the environment.

See README.md ("Configuration") for the variables. Development defaults are safe to run on a
laptop; with DEBUG=0 (production mode) the settings refuse to start without real secrets and hosts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dj_database_url

from apiplatform.env import (
    check_secret,
    check_secret_key,
    env_bool,
    env_cidrs,
    env_float,
    env_int,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# --- core -------------------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", True)
PRODUCTION = not DEBUG

SECRET_KEY = env_str("SECRET_KEY")
check_secret_key(SECRET_KEY, production=PRODUCTION)
if not SECRET_KEY:
    SECRET_KEY = "dev-only-insecure-key-never-use-in-production"  # noqa: S105 - refused above when DEBUG=0

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
if PRODUCTION and (not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("ALLOWED_HOSTS must list the real host names when DEBUG=0 (no '*').")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_celery_beat",
    "apiplatform.jobs",
    "apiplatform.ops",  # manage.py doctor
    "accounts",
    "billing",
    "marketdata",
    "marketdata.alerts",  # customer alerts and their webhook deliveries (docs/alerts.md)
    "ingestion",
]

MIDDLEWARE = [
    "apiplatform.telemetry.MetricsMiddleware",  # requests and latency for GET /metrics (first: times all)
    "apiplatform.middleware.RequestIdMiddleware",
    "apiplatform.middleware.CompressionMiddleware",  # gzip for /v1/ answers >= COMPRESSION_MIN_BYTES
    "apiplatform.middleware.UnknownPathMiddleware",  # unknown /v1/ paths: problem+json 404
    "accounts.cors.BrowserKeyCorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "apiplatform.middleware.PageCSPMiddleware",  # CONTENT_SECURITY_POLICY on pages (django-csp)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "apiplatform.urls"
WSGI_APPLICATION = "apiplatform.wsgi.application"
ASGI_APPLICATION = "apiplatform.asgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "apiplatform" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database: PostgreSQL through psycopg 3 with its connection pool -------------------------------
DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/candlestack")
_db = dj_database_url.parse(DATABASE_URL)
_db["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django requires 0 with pool enabled
_db["OPTIONS"] = {
    "pool": {
        "min_size": env_int("DB_POOL_MIN_SIZE", 1),
        "max_size": env_int("DB_POOL_MAX_SIZE", 8),
        "timeout": env_float("DB_POOL_TIMEOUT", 10.0),
    },
}
_db["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME") or f"test_{_db['NAME']}"}
DATABASES = {"default": _db}

# --- Redis: cache (and, by default, everything else that is shared between processes) -------------
# Every project key is named by apiplatform.redis_access.key(): "<REDIS_KEY_PREFIX>:<namespace>:...".
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/1")
REDIS_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "cs")
REDIS_TIMEOUT = env_float("REDIS_TIMEOUT", 0.5)  # seconds per call on the request path
REDIS_INGESTION_TIMEOUT = env_float("REDIS_INGESTION_TIMEOUT", 5.0)  # workers (budget, counters)
REDIS_BACKOFF_SECONDS = env_float("REDIS_BACKOFF_SECONDS", 1.0)  # not tried again after a failure
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_KEY_PREFIX,
        "TIMEOUT": 300,
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}
# Users of that Redis (apiplatform/redis_access.py). IPv6 clients are counted per /64 by the
# brute-force limits (django-ratelimit reads this too; accounts/failures.py). Off: every public API
# answer is computed, nothing is cached (marketdata/api/caching.py; the API benchmark's "uncached" run).
RATELIMIT_IPV6_MASK = env_int("RATELIMIT_IPV6_MASK", 64)
MARKETDATA_RESPONSE_CACHE = env_bool("MARKETDATA_RESPONSE_CACHE", True)

# --- auth -----------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- i18n / static ----------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))  # collectstatic's target
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- email ----------------------------------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
# Where django.core.mail.backends.filebased.EmailBackend writes (one file per connection): a test outbox.
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(BASE_DIR / ".run" / "mail"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Candlestack <no-reply@candlestack.localhost>")
SERVER_EMAIL = env_str("SERVER_EMAIL", DEFAULT_FROM_EMAIL)  # sender of Django's own error emails
# SMTP (EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend): the relay or provider to send
# through. Production must name it (no silent "localhost"); `manage.py doctor` opens a connection.
EMAIL_HOST = env_str("EMAIL_HOST", "" if PRODUCTION else "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)  # STARTTLS after connecting (submission, port 587)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)  # TLS from the first byte (port 465)
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10.0)  # seconds per SMTP operation: a hung server frees the worker
SMTP_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "EMAIL_USE_TLS and EMAIL_USE_SSL are mutually exclusive: STARTTLS (port 587) or TLS from the "
        "start (port 465), set one."
    )
if PRODUCTION and EMAIL_BACKEND == SMTP_EMAIL_BACKEND and not EMAIL_HOST:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "EMAIL_HOST must be set when DEBUG=0 with the SMTP email backend (the relay or provider to "
        "send through, e.g. localhost for a local relay)."
    )
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000")

# --- security (production) ---------------------------------------------------------------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- the developer portal (accounts/portal/, docs/portal.md): session auth, cookies, CSP ---------------
LOGIN_URL = "/login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600)
CSRF_COOKIE_HTTPONLY = True  # pages carry the token in forms and in htmx's hx-headers, never read by JS
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "accounts.portal.errors.csrf_failure"
# No inline script or style anywhere: every asset is ours (/static/). The API docs pages (Swagger UI,
# Redoc) relax this for themselves only (apiplatform/apidocs.py). No form-action: the billing page's
# POSTs redirect to Stripe Checkout / Customer Portal, which Chromium checks against form-action.
from csp.constants import NONE, SELF  # noqa: E402

CONTENT_SECURITY_POLICY: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- compression of API answers (apiplatform.middleware.CompressionMiddleware, docs/api.md) -----------
COMPRESSION_MIN_BYTES = env_int("COMPRESSION_MIN_BYTES", 1024)  # smaller answers are sent as they are

# --- REST framework and OpenAPI ------------------------------------------------------------------------
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_RENDERER_CLASSES": ["apiplatform.renderers.ORJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # Management API (/v1/account/): user JWTs. Public /v1 views (PublicAPIView) use API keys instead.
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.session_auth.SessionJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "apiplatform.schema.ProblemAutoSchema",  # errors: application/problem+json
    "EXCEPTION_HANDLER": "apiplatform.exceptions.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "Candlestack API",
    "DESCRIPTION": (
        "Crypto market data as a product: coins, prices, OHLCV candles and indicators.\n\n"
        "Every error is an RFC 9457 `application/problem+json` document carrying a `request_id`; "
        "send `X-Request-ID` to choose your own, it is echoed on every response."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # choice sets named after their model (several components have a "status" member)
    "ENUM_NAME_OVERRIDES": {
        "DeliveryStatusEnum": "marketdata.alerts.models.Delivery.Status",
        # the alert condition variants (marketdata/alerts/schema.py): each names its own type
        "IndicatorConditionTypeEnum": ["indicator"],
    },
}

# --- accounts: JWT for the management API, API keys for the public API (docs/accounts.md) ------------
from datetime import timedelta  # noqa: E402

SIMPLE_JWT: dict[str, Any] = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 7)),
    # Rotation, reuse detection and revocation are accounts/services/sessions.py's (a session per
    # login; simplejwt's refresh serializer and blacklist are not used).
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": check_secret("JWT_SIGNING_KEY", env_str("JWT_SIGNING_KEY"), production=PRODUCTION)
    or SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
}
ACCOUNTS: dict[str, Any] = {
    # HMAC key for API-key hashes. Changing it invalidates every API key: set it once per deployment.
    "API_KEY_PEPPER": check_secret("API_KEY_PEPPER", env_str("API_KEY_PEPPER"), production=PRODUCTION)
    or f"api-key-pepper:{SECRET_KEY}",
    "KEY_LOCAL_CACHE_TTL": min(env_float("API_KEY_LOCAL_CACHE_TTL", 1.0), 1.0),  # revocation bound
    "KEY_REDIS_CACHE_TTL": env_int("API_KEY_REDIS_CACHE_TTL", 300),
    "LAST_USED_INTERVAL": env_int("API_KEY_LAST_USED_INTERVAL", 60),
    "ROTATION_OVERLAP_SECONDS": env_int("API_KEY_ROTATION_OVERLAP_SECONDS", 24 * 3600),
    "MAX_KEYS_PER_ORGANIZATION": env_int("MAX_KEYS_PER_ORGANIZATION", 100),
    "TRUSTED_PROXY_DEPTH": env_int("TRUSTED_PROXY_DEPTH", 0),
    "INVITATION_TTL_SECONDS": env_int("INVITATION_TTL_SECONDS", 7 * 24 * 3600),
    "EMAIL_VERIFICATION_MAX_AGE": env_int("EMAIL_VERIFICATION_MAX_AGE", 3 * 24 * 3600),
    # django-ratelimit rates protecting sign-up and login (per IP and per account email).
    "RATE_SIGNUP_IP": env_str("RATE_SIGNUP_IP", "10/h"),
    "RATE_SIGNUP_ACCOUNT": env_str("RATE_SIGNUP_ACCOUNT", "5/h"),
    "RATE_LOGIN_IP": env_str("RATE_LOGIN_IP", "30/m"),
    # Per (account email, client IP): a stranger's guesses do not lock the owner out; the per-account
    # ceiling (all clients together) is the backstop against guessing from many addresses.
    "RATE_LOGIN_ACCOUNT": env_str("RATE_LOGIN_ACCOUNT", "5/m"),
    "RATE_LOGIN_ACCOUNT_CEILING": env_str("RATE_LOGIN_ACCOUNT_CEILING", "20/m"),
    "RATE_REFRESH_IP": env_str("RATE_REFRESH_IP", "60/m"),
    "RATE_VERIFY_RESEND_USER": env_str("RATE_VERIFY_RESEND_USER", "3/h"),  # verification email again
    # Sessions (accounts/services/sessions.py): a login lasts at most this long, however often its
    # refresh token is redeemed; then the user logs in again.
    "SESSION_MAX_DAYS": env_int("JWT_SESSION_MAX_DAYS", 30),
    # Password change (per user) and reset requests (per client IP and per email address).
    "RATE_PASSWORD_CHANGE_USER": env_str("RATE_PASSWORD_CHANGE_USER", "5/h"),
    "RATE_PASSWORD_RESET_IP": env_str("RATE_PASSWORD_RESET_IP", "10/h"),
    "RATE_PASSWORD_RESET_ACCOUNT": env_str("RATE_PASSWORD_RESET_ACCOUNT", "3/h"),
    # Failed API-key authentications (malformed or unknown key) one client IP may cause per minute
    # before it is refused with 429 auth-rate-limited (accounts/failures.py); 0 switches it off.
    "API_KEY_FAILURES_PER_MINUTE": env_int("API_KEY_FAILURES_PER_MINUTE", 30),
    # Abuse of the platform's own emails (docs/accounts.md "Emails cannot be turned against users").
    "RATE_INVITE_ORGANIZATION": env_str("RATE_INVITE_ORGANIZATION", "20/h"),  # invitations per org
    "RATE_INVITE_USER": env_str("RATE_INVITE_USER", "10/h"),  # invitations per inviting user
    "UNVERIFIED_SIGNUP_TTL": env_int("UNVERIFIED_SIGNUP_TTL", 3 * 24 * 3600),  # then the sign-up is deleted
    "MAX_FREE_ORGANIZATIONS_PER_USER": env_int("MAX_FREE_ORGANIZATIONS_PER_USER", 3),
    # Longest overlap a rotation may give the old key (old_key_expires_at / old_key_expires_in).
    "ROTATION_MAX_OVERLAP_SECONDS": env_int("API_KEY_ROTATION_MAX_OVERLAP_SECONDS", 30 * 24 * 3600),
    # POST /v1/keys/revoke-leaked (secret scanners' reports), per client IP.
    "RATE_REVOKE_LEAKED_IP": env_str("RATE_REVOKE_LEAKED_IP", "30/m"),
}
RATELIMIT_USE_CACHE = "default"
# Seconds a password-reset token is valid (Django's setting; the token is also single-use).
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3600)

# --- CORS, for browser keys only (accounts/cors.py; docs/accounts.md "Browser keys") ---------------
# Seconds a browser may reuse the answer to a preflight (Chromium caps it at 7200, Firefox at 86400).
CORS_PREFLIGHT_MAX_AGE = env_int("CORS_PREFLIGHT_MAX_AGE", 7200)

# --- Celery ----------------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
# The longest countdown/ETA the project uses must stay below this, or Redis redelivers the task
# while it is still waiting (see docs/operations.md).
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 2 * 3600)
CELERY_MAX_COUNTDOWN = CELERY_VISIBILITY_TIMEOUT // 2
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "unacked_restore_interval": env_int("CELERY_UNACKED_RESTORE_INTERVAL", 60),
    # kombu restores unacked messages only every interval x throttle seconds
    "unacked_restore_throttle": env_int("CELERY_UNACKED_RESTORE_THROTTLE", 10),
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 360)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- billing / gateway (plans, rate limits, quotas, metering; see docs/plans-and-limits.md) ---------
GATEWAY_ENABLED = env_bool("GATEWAY_ENABLED", True)  # off: PublicAPIView skips limits + metering (bench)
GATEWAY_REDIS_URL = env_str("GATEWAY_REDIS_URL", REDIS_URL)
GATEWAY_REDIS_TIMEOUT = env_float("GATEWAY_REDIS_TIMEOUT", 0.25)  # seconds per Redis call on the request path
GATEWAY_REDIS_RETRY_SECONDS = env_float("GATEWAY_REDIS_RETRY_SECONDS", 1.0)  # back-off after a Redis failure
GATEWAY_LOCAL_PLAN_TTL = env_float("GATEWAY_LOCAL_PLAN_TTL", 60.0)  # fallback plan cache (Redis down only)
GATEWAY_PLAN_TTL = env_int("GATEWAY_PLAN_TTL", 3600)  # Redis copy of an org's plan; reloaded after
GATEWAY_BENCH_ROUTES = env_bool("GATEWAY_BENCH_ROUTES", False)  # bench twins under /v1/bench/
BILLING_DEFAULT_PLAN = env_str("BILLING_DEFAULT_PLAN", "free")
BILLING_UPGRADE_URL = env_str("BILLING_UPGRADE_URL", f"{PUBLIC_BASE_URL.rstrip('/')}/pricing")
BILLING_USAGE_FLUSH_SECONDS = env_int("BILLING_USAGE_FLUSH_SECONDS", 60)  # beat schedule of the flush task

# --- the stream (GET /v1/stream, Server-Sent Events under uvicorn; see docs/stream.md) ----------------
STREAM_PUBLIC_URL = env_str("STREAM_PUBLIC_URL", "http://127.0.0.1:8001")  # where clients reach the stream
STREAM_BUFFER_SECONDS = env_float("STREAM_BUFFER_SECONDS", 600.0)  # Last-Event-ID resume window
STREAM_HEARTBEAT_SECONDS = env_float("STREAM_HEARTBEAT_SECONDS", 15.0)  # heartbeat event interval
STREAM_MAX_IDS = env_int("STREAM_MAX_IDS", 50)  # coin ids per connection
STREAM_CLIENT_QUEUE = env_int("STREAM_CLIENT_QUEUE", 2000)  # events waiting per client; more: dropped
STREAM_KEY_CHECK_SECONDS = env_float("STREAM_KEY_CHECK_SECONDS", 5.0)  # revoked/expired key check
STREAM_SLOT_LEASE_SECONDS = env_float("STREAM_SLOT_LEASE_SECONDS", 30.0)  # concurrency lease (crash-safe)
STREAM_CREDITS_PER_MINUTE = env_int("STREAM_CREDITS_PER_MINUTE", 1)  # per minute connected, after the open
STREAM_MINUTE_SECONDS = env_float("STREAM_MINUTE_SECONDS", 60.0)  # the charged "minute" (tests shorten it)
STREAM_RETRY_MS = env_int("STREAM_RETRY_MS", 3000)  # the SSE "retry:" a client waits before reconnecting
STREAM_WRITE_TIMEOUT = env_float("STREAM_WRITE_TIMEOUT", 30.0)  # a write blocked longer: slow client, dropped
STREAM_OPEN_CONCURRENCY = env_int("STREAM_OPEN_CONCURRENCY", 16)  # stream opens (request threads) at once

# --- Stripe (subscriptions, metered overage, webhooks; see docs/billing.md) -------------------------
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", "")  # empty: billing endpoints answer 503, rest works
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "")  # whsec_...: webhook signatures
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "https://api.stripe.com")  # tests: the local stand-in
STRIPE_TIMEOUT_SECONDS = env_float("STRIPE_TIMEOUT_SECONDS", 10.0)  # every Stripe call
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env_int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300)  # signed timestamp age
STRIPE_METER_EVENT_NAME = env_str("STRIPE_METER_EVENT_NAME", "candlestack_api_credits")
STRIPE_CURRENCY = env_str("STRIPE_CURRENCY", "usd")
BILLING_PAST_DUE_GRACE_DAYS = env_int("BILLING_PAST_DUE_GRACE_DAYS", 7)  # limits kept while past_due
BILLING_REPORT_EVERY_SECONDS = env_int("BILLING_REPORT_EVERY_SECONDS", 600)  # overage reporter schedule

# --- CoinGecko upstream ---------------------------------------------------------------------------
COINGECKO_PLAN = env_str("COINGECKO_PLAN", "pro")  # "pro" or "demo"
COINGECKO_API_KEYS = env_list("COINGECKO_API_KEYS", [])
COINGECKO_BASE_URL = env_str("COINGECKO_BASE_URL", "")  # empty: the plan's official host
COINGECKO_RATE_LIMIT_PER_MIN = env_int("COINGECKO_RATE_LIMIT_PER_MIN", 500)
COINGECKO_TIMEOUT = env_float("COINGECKO_TIMEOUT", 10.0)
COINGECKO_VS_CURRENCY = env_str("COINGECKO_VS_CURRENCY", "usd")
COINGECKO_RATE_WINDOW = env_float("COINGECKO_RATE_WINDOW", 60.0)  # seconds of the shared budget window
COINGECKO_MAX_ATTEMPTS = env_int("COINGECKO_MAX_ATTEMPTS", 6)  # per logical call, first try included
COINGECKO_RETRY_BASE_DELAY = env_float("COINGECKO_RETRY_BASE_DELAY", 0.5)  # backoff base (s), with jitter
COINGECKO_RETRY_MAX_DELAY = env_float("COINGECKO_RETRY_MAX_DELAY", 30.0)
COINGECKO_RETRY_MAX_TOTAL = env_float("COINGECKO_RETRY_MAX_TOTAL", 120.0)  # bound on one call incl. waits
COINGECKO_RETRY_AFTER_CAP = env_float("COINGECKO_RETRY_AFTER_CAP", 60.0)  # longest Retry-After honoured
# /simple/price id lists are split to keep each URL under this; 8000 stays below the 8 KiB request
# line of the upstream's front servers (the simulator's default) and fits 250 ids in one call.
COINGECKO_MAX_URL_LENGTH = env_int("COINGECKO_MAX_URL_LENGTH", 8000)
COINGECKO_BUDGET_MAX_WAIT = env_float("COINGECKO_BUDGET_MAX_WAIT", 120.0)  # longest wait for budget

# --- market data store (see docs/marketdata.md) ----------------------------------------------------
# Days of candles kept per timeframe (0 = forever); enforced per whole partition by the maintenance job.
CANDLE_RETENTION_DAYS = env_str("CANDLE_RETENTION_DAYS", "1m=30,5m=365,15m=730,1h=0,1d=0")
CANDLE_PARTITIONS_AHEAD = env_int("CANDLE_PARTITIONS_AHEAD", 3)  # future partitions kept ready per timeframe
TICK_RETENTION_HOURS = env_int("TICK_RETENTION_HOURS", 48)
# Data-quality re-fetches one check may schedule (the rest wait for the next checks), so that the
# repair of a long outage never starves the live refresh of upstream budget (docs/ingestion.md).
INGESTION_REFETCH_PER_RUN = env_int("INGESTION_REFETCH_PER_RUN", 50)
INGESTION_RUN_RETENTION_DAYS = env_int("INGESTION_RUN_RETENTION_DAYS", 30)  # runs kept (housekeeping)
# Data quality (docs/ingestion.md): windows per timeframe ("timeframe=minutes,..."), the grace after a
# bucket's end before it counts as missing, the jump rule (z * the series' own sigma, at least
# JUMP_MIN log deviation), when a coin is stale, and how often a still-open flag is re-fetched.
INGESTION_QUALITY_MISSING_LOOKBACK = env_str(
    "INGESTION_QUALITY_MISSING_LOOKBACK", "1m=180,1h=10080,1d=525600"
)
INGESTION_QUALITY_JUMP_LOOKBACK = env_str("INGESTION_QUALITY_JUMP_LOOKBACK", "1m=180,1h=10080")
INGESTION_QUALITY_GRACE_MINUTES = env_int("INGESTION_QUALITY_GRACE_MINUTES", 3)
INGESTION_QUALITY_JUMP_Z = env_float("INGESTION_QUALITY_JUMP_Z", 12.0)
INGESTION_QUALITY_JUMP_MIN = env_float("INGESTION_QUALITY_JUMP_MIN", 0.05)
INGESTION_QUALITY_STALE_MINUTES = env_int("INGESTION_QUALITY_STALE_MINUTES", 30)
INGESTION_REFETCH_RETRY_MINUTES = env_int("INGESTION_REFETCH_RETRY_MINUTES", 60)
INGESTION_REFETCH_MAX = env_int("INGESTION_REFETCH_MAX", 3)
# History (docs/ingestion.md, "History"): daily candles since INGESTION_HISTORY_START (CoinGecko's
# oldest /ohlc/range data) and hourly ones for the last INGESTION_HISTORY_HOURLY_DAYS, filled newest
# first for every active coin; tiers of market-cap rank ("100,1000": the top 100 first, then the top
# 1,000, then the rest); calls per budget window kept for the live work (0 = automatic); how long one
# run of the scheduled job works before it hands over to the next.
INGESTION_HISTORY_START = env_str("INGESTION_HISTORY_START", "2018-02-09")
INGESTION_HISTORY_HOURLY_DAYS = env_int("INGESTION_HISTORY_HOURLY_DAYS", 90)
INGESTION_HISTORY_TIERS = env_str("INGESTION_HISTORY_TIERS", "100,1000")
INGESTION_HISTORY_RESERVE = env_int("INGESTION_HISTORY_RESERVE", 0)
INGESTION_HISTORY_RUN_SECONDS = env_int("INGESTION_HISTORY_RUN_SECONDS", 240)
# The fast path (docs/ingestion.md "Fresher top coins"): the top coins by market cap refreshed through
# /simple/price every INGESTION_FAST_EVERY_SECONDS (the upstream's cache time); 0 coins turns it off.
INGESTION_FAST_COINS = env_int("INGESTION_FAST_COINS", 250)
INGESTION_FAST_EVERY_SECONDS = env_int("INGESTION_FAST_EVERY_SECONDS", 20)
# Quote currencies of /v1/prices and /v1/markets (`vs`): usd, the fiat ones converted with the stored
# /exchange_rates, btc and eth from our own bitcoin/ethereum snapshots (docs/marketdata.md).
MARKETDATA_VS_CURRENCIES = env_list(
    "MARKETDATA_VS_CURRENCIES",
    ["usd", "eur", "gbp", "jpy", "chf", "cad", "aud", "cny", "inr", "krw", "brl", "btc", "eth"],
)
# A tick more than this factor (either way) from the coin's last accepted price is rejected as a jump.
PIPELINE_MAX_TICK_JUMP = env_float("PIPELINE_MAX_TICK_JUMP", 5.0)

# --- alerts and webhook deliveries (docs/alerts.md) -------------------------------------------------
# Development only: also allow http:// webhook URLs (and https://) whose host resolves to loopback
# (a receiver on the developer's machine). Every other private, link-local or metadata address is
# refused at registration and again at connection time, whatever this says.
ALERTS_WEBHOOK_ALLOW_LOOPBACK = env_bool("ALERTS_WEBHOOK_ALLOW_LOOPBACK", False)
ALERTS_WEBHOOK_CONNECT_TIMEOUT = env_float("ALERTS_WEBHOOK_CONNECT_TIMEOUT", 3.0)
ALERTS_WEBHOOK_TIMEOUT = env_float("ALERTS_WEBHOOK_TIMEOUT", 10.0)  # one attempt, start to end
ALERTS_WEBHOOK_RESPONSE_BYTES = env_int("ALERTS_WEBHOOK_RESPONSE_BYTES", 4096)  # read at most
# Retries: base * 2^(n-1) after the n-th failure, capped, until WINDOW seconds after the first try.
ALERTS_WEBHOOK_RETRY_BASE = env_int("ALERTS_WEBHOOK_RETRY_BASE", 60)
ALERTS_WEBHOOK_RETRY_MAX = env_int("ALERTS_WEBHOOK_RETRY_MAX", 6 * 3600)
ALERTS_WEBHOOK_RETRY_WINDOW = env_int("ALERTS_WEBHOOK_RETRY_WINDOW", 24 * 3600)
ALERTS_MAX_PER_ORGANIZATION = env_int("ALERTS_MAX_PER_ORGANIZATION", 1000)
ALERTS_DELIVERY_RETENTION_DAYS = env_int("ALERTS_DELIVERY_RETENTION_DAYS", 30)
# Keys encrypting webhook signing secrets at rest (marketdata/alerts/encryption.py): comma-separated,
# the first encrypts, every one decrypts (rotation: put a new key first, run
# `manage.py alerts_rotate_secret_key`, then drop the old one). Required when DEBUG=0, each as strong
# as SECRET_KEY; unset in development, one key is derived from SECRET_KEY (HKDF).
ALERTS_SECRET_KEYS = env_list("ALERTS_SECRET_KEYS", [])
for _key in ALERTS_SECRET_KEYS:
    check_secret("ALERTS_SECRET_KEYS", _key, production=PRODUCTION, derivable=False)
if PRODUCTION and not ALERTS_SECRET_KEYS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "ALERTS_SECRET_KEYS must be set when DEBUG=0 (production mode): the key that encrypts webhook "
        "signing secrets (python -c 'import secrets; print(secrets.token_urlsafe(64))')."
    )

# --- logging: JSON in production, readable text in development, request/task ids on every line ------
LOG_FORMAT = env_str("LOG_FORMAT", "json" if PRODUCTION else "text")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "apiplatform.logging.ContextFilter"},
        "redact": {"()": "apiplatform.logging.RedactSecretsFilter"},  # JWTs, API keys, ?token=
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(task_id)s "
            "%(organization_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {
            "format": "%(asctime)s %(levelname)s [%(name)s] req=%(request_id)s task=%(task_id)s "
            "org=%(organization_id)s %(message)s"
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},  # ingestion.coingecko.client logs every upstream call itself
        "celery": {"level": LOG_LEVEL},
    },
}

# --- cheap denial of service (docs/operations.md "Denial of service") ------------------------------
# Seconds each /readyz check may take before its dependency counts as down (checks run side by side).
READYZ_CHECK_TIMEOUT = env_float("READYZ_CHECK_TIMEOUT", 1.0)
# Calls of /v1/schema/, /v1/docs/ and /v1/redoc/ one client address may make (apiplatform/apidocs.py),
# and how long a client may reuse the schema before revalidating it (ETag: a 304 is cheap).
DOCS_RATE_IP = env_str("DOCS_RATE_IP", "30/m")
DOCS_SCHEMA_MAX_AGE = env_int("DOCS_SCHEMA_MAX_AGE", 300)

# --- operators' metrics (GET /metrics; docs/operations.md "Metrics") -------------------------------
# A scrape is allowed with `Authorization: Bearer <METRICS_TOKEN>` or from an address in
# METRICS_ALLOWED_IPS (CIDR ranges, comma-separated; the client address as accounts.authentication's
# client_ip sees it). Both empty (the default): /metrics refuses everyone. The web process's worker
# aggregation is configured by the PROMETHEUS_MULTIPROC_DIR environment variable (deploy/gunicorn.conf.py).
METRICS_TOKEN = check_secret("METRICS_TOKEN", env_str("METRICS_TOKEN", ""), production=PRODUCTION) or ""
METRICS_ALLOWED_IPS = env_cidrs("METRICS_ALLOWED_IPS", [])
