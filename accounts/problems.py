"""Problem types of the accounts app (RFC 9457). Listed at /problems/ and in docs/accounts.md.

API-key failures are distinct so a developer knows what to fix, yet none of them tells a caller
anything about a key it does not fully hold: "unknown" covers both a key id nobody has and a known
key id with a wrong secret; revoked/expired/IP answers need the complete, correct key.
"""

from apiplatform.problems import register

API_KEY_MISSING = register(
    "api-key-missing",
    401,
    "API key required",
    "No API key was sent. Send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
)
API_KEY_MALFORMED = register(
    "api-key-malformed",
    401,
    "Malformed API key",
    "The credential is not a Candlestack API key: wrong shape, or its checksum does not match "
    "(a typo or a truncated copy). Keys look like `cs_live_<12>_<38>` or `cs_test_<12>_<38>`.",
)
API_KEY_UNKNOWN = register(
    "api-key-unknown",
    401,
    "Unknown API key",
    "The API key is well-formed but not recognised.",
)
API_KEY_REVOKED = register(
    "api-key-revoked",
    401,
    "API key revoked",
    "This API key has been revoked. Create a new key in your account.",
)
API_KEY_EXPIRED = register(
    "api-key-expired",
    401,
    "API key expired",
    "This API key is past its expiry time (for a rotated key: the overlap window has ended). "
    "Use the replacement key.",
)
API_KEY_IP_NOT_ALLOWED = register(
    "api-key-ip-not-allowed",
    403,
    "IP address not allowed for this key",
    "This API key only accepts requests from its allowed IP ranges, and this request came from elsewhere.",
)
API_KEY_INSUFFICIENT_SCOPE = register(
    "api-key-insufficient-scope",
    403,
    "API key lacks a scope",
    "This API key does not carry the scope this endpoint requires (see `required_scope`).",
)
AUTH_RATE_LIMITED = register(
    "auth-rate-limited",
    429,
    "Too many failed authentications",
    "Too many requests from this IP address failed API-key authentication (malformed or unknown "
    "keys). Until `Retry-After` seconds have passed, only keys already in use from this address "
    "are accepted. Check the key you are sending.",
)
INVALID_CREDENTIALS = register(
    "invalid-credentials",
    401,
    "Invalid email or password",
    "No active account matches this email and password.",
)
ORGANIZATION_REQUIRED = register(
    "organization-required",
    400,
    "Choose an organization",
    "You belong to several organizations: name one with the `X-Organization: <slug>` header.",
)
ROLE_FORBIDDEN = register(
    "role-forbidden",
    403,
    "Your role does not allow this",
    "Your role in this organization does not include the permission this action needs "
    "(see `required_permission` and docs/accounts.md for the role matrix).",
)
LAST_OWNER = register(
    "last-owner",
    409,
    "An organization needs an owner",
    "This change would leave the organization without an owner. Make someone else owner first.",
)
INVITATION_INVALID = register(
    "invitation-invalid",
    400,
    "Invitation not valid",
    "The invitation token is unknown, expired, revoked, already used, or for another email address.",
)
VERIFICATION_INVALID = register(
    "verification-invalid",
    400,
    "Verification link not valid",
    "The email verification token is malformed, expired, or for another address.",
)
ALREADY_MEMBER = register(
    "already-member",
    409,
    "Already a member",
    "This email address already belongs to a member of the organization.",
)
KEY_ALREADY_REVOKED = register(
    "key-already-revoked",
    409,
    "Key already revoked",
    "This API key is already revoked; revoked keys cannot be rotated or revoked again.",
)
KEY_ALREADY_ROTATED = register(
    "key-already-rotated",
    409,
    "Key already rotated",
    "This API key already has a live replacement (`successor_key_id`): a key has at most one. "
    "Use or rotate the replacement, or revoke it before rotating this key again.",
)
SECRET_KEY_IN_BROWSER = register(
    "secret-key-in-browser",
    403,
    "Secret key used from a browser",
    "The request carries an `Origin` header, so it comes from a web page, and the key is a secret "
    "key: anyone who opens the page can copy it. Call the API from your server with the secret key, "
    "or create a browser key (`type: browser`, read-only, restricted to your site's origins) for "
    "front-end code. If this key has been published, revoke it.",
)
ORIGIN_NOT_ALLOWED = register(
    "origin-not-allowed",
    403,
    "Origin not allowed for this key",
    "This is a browser key: it works only from web pages on its `allowed_origins`, and this request's "
    "`Origin` header is missing or not in that list (see `origin`). Add the origin to a browser key, "
    "or call the API from a server with a secret key.",
)
SESSION_ENDED = register(
    "session-ended",
    401,
    "Session ended",
    "The refresh token belongs to a session that has ended: logged out (here or everywhere), past "
    "its absolute lifetime (`JWT_SESSION_MAX_DAYS`), ended by a password change or reset, or revoked "
    "because an already-used refresh token of it was presented again. Log in again.",
)
PASSWORD_RESET_INVALID = register(
    "password-reset-invalid",
    400,
    "Password reset link not valid",
    "The password-reset token is malformed, expired (`PASSWORD_RESET_TIMEOUT`), already used, or "
    "issued before the password last changed. Ask for a new one.",
)
EMAIL_UNVERIFIED = register(
    "email-unverified",
    403,
    "Verify your email address first",
    "Inviting people and creating live API keys need a verified email address, so the platform's "
    "emails always name someone who proved their address. Open the link in the verification email "
    "(or ask for another: `POST /v1/account/verify-email/resend`). Test keys work without.",
)
KEY_ALREADY_EXPIRED = register(
    "key-already-expired",
    409,
    "Key already expired",
    "This API key is past its expiry time; rotating it would issue a replacement that outlives it. "
    "Create a new key instead.",
)
TWO_FACTOR_REQUIRED = register(
    "two-factor-required",
    401,
    "Two-factor code required",
    "This account has two-factor authentication on: send `otp_code` (the 6-digit code of the "
    "authenticator app, or an unused recovery code) with the email and password. A wrong code is "
    "answered like a wrong password.",
)
