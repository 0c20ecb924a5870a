"""Input validation and output shapes of the management API (no business rules here)."""

from __future__ import annotations

import base64

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts import roles
from accounts.models import KeyEnvironment, KeyKind, Role
from accounts.names import ORGANIZATION_NAME_HELP, ORGANIZATION_NAME_PATTERN
from accounts.origins import MAX_ORIGIN_LENGTH, ORIGIN_PATTERN
from accounts.principal import BROWSER_KEY_SCOPES, KEY_SCOPES
from apiplatform.query import QuerySerializer
from apiplatform.serializers import PatchSerializer


# --- input ----------
class StrictCharField(serializers.CharField):
    """A string, as the schema says: a JSON number is a 400 ``Not a valid string.`` (DRF's CharField
    would take 12 as "12")."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "pattern": ORGANIZATION_NAME_PATTERN, "maxLength": 200})
class OrganizationNameField(StrictCharField):
    """An organization's name: plain text (accounts/names.py; checked by the service, as sent)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", ORGANIZATION_NAME_HELP)
        super().__init__(max_length=200, trim_whitespace=False, **kwargs)


class SignupIn(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    # A password is taken as typed (no trimming, like Django's own password forms).
    password = StrictCharField(
        write_only=True, max_length=128, trim_whitespace=False, style={"input_type": "password"}
    )
    organization_name = OrganizationNameField(required=False, allow_blank=True, default="")
    full_name = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    invitation_token = StrictCharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="Join the inviting organization instead of creating one (organization_name not needed).",
    )

    def validate(self, attrs):
        if not attrs.get("invitation_token") and not attrs.get("organization_name", "").strip():
            raise serializers.ValidationError(
                {"organization_name": "required (unless invitation_token is given)"}
            )
        return attrs


class TokenIn(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = StrictCharField(write_only=True, max_length=128, trim_whitespace=False)
    otp_code = StrictCharField(
        required=False,
        write_only=True,
        max_length=32,
        help_text="With two-factor authentication on (set up in the portal): the 6-digit code of the "
        "authenticator app, or an unused recovery code.",
    )


class RefreshIn(serializers.Serializer):
    refresh = StrictCharField()


class TokenOut(serializers.Serializer):
    access = StrictCharField()
    refresh = StrictCharField()
    token_type = StrictCharField(default="Bearer")
    access_expires_in = serializers.IntegerField(help_text="Seconds until the access token expires")
    session_expires_at = serializers.DateTimeField(
        help_text="When the session ends whatever the refreshes (JWT_SESSION_MAX_DAYS after the login)"
    )


class VerifyEmailIn(serializers.Serializer):
    token = StrictCharField(max_length=1000)


class VerifyResendOut(serializers.Serializer):
    queued = serializers.BooleanField(help_text="A verification email was queued.")
    email_verified = serializers.BooleanField()


class OrganizationUpdateIn(PatchSerializer):
    name = OrganizationNameField(required=False)


class RoleChangeIn(PatchSerializer):
    role = serializers.ChoiceField(choices=Role.choices, required=False)


class InvitationIn(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.DEVELOPER)


CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"


def audit_cursor(event_id: int) -> str:
    """The opaque cursor of the audit page that starts after event ``event_id``."""
    return base64.urlsafe_b64encode(f"audit:{event_id}".encode()).decode().rstrip("=")


class AuditQuery(QuerySerializer):
    cursor = serializers.RegexField(
        CURSOR_PATTERN, required=False, max_length=64, help_text="`next_cursor` of the previous page."
    )
    before = serializers.IntegerField(
        required=False, min_value=1, help_text="Deprecated (use `cursor`): events older than this id."
    )
    limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=500)

    def validate_cursor(self, value: str) -> int:
        try:
            kind, _, number = (
                base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode().partition(":")
            )
            event_id = int(number)
        except (ValueError, UnicodeDecodeError):
            kind, event_id = "", 0
        if kind != "audit" or event_id < 1:
            raise serializers.ValidationError("is not a cursor returned by this API")
        return event_id


class InvitationAcceptIn(serializers.Serializer):
    token = StrictCharField(max_length=200)


@extend_schema_field(
    {
        "type": "string",
        "format": "uri",
        "pattern": ORIGIN_PATTERN,
        "maxLength": MAX_ORIGIN_LENGTH,
        "example": "https://app.example.com",
    }
)
class OriginField(StrictCharField):
    """One allowed origin; the rule itself is accounts/origins.py's (checked by the service)."""

    def __init__(self, **kwargs):
        super().__init__(max_length=MAX_ORIGIN_LENGTH, trim_whitespace=False, **kwargs)


@extend_schema_field({"type": "string", "enum": [KeyKind.SECRET.value]}, component_name="SecretKeyType")
class SecretKindField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=[KeyKind.SECRET.value], **kwargs)


@extend_schema_field({"type": "string", "enum": [KeyKind.BROWSER.value]}, component_name="BrowserKeyType")
class BrowserKindField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=[KeyKind.BROWSER.value], **kwargs)


@extend_schema_field({"type": "string", "enum": [k.value for k in KeyKind]}, component_name="ApiKeyType")
class KindField(serializers.CharField):
    pass


class _ApiKeyCommonIn(serializers.Serializer):
    name = StrictCharField(max_length=100)
    environment = serializers.ChoiceField(choices=KeyEnvironment.choices, default=KeyEnvironment.LIVE)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    allowed_ips = serializers.ListField(
        child=StrictCharField(max_length=64),
        required=False,
        default=list,
        max_length=50,
        help_text="IP addresses or CIDR ranges; empty = any address.",
    )


class ApiKeySecretIn(_ApiKeyCommonIn):
    """A secret key (the default): for servers; refused from browsers (any ``Origin`` header)."""

    type = SecretKindField(source="kind", required=False, default=KeyKind.SECRET.value)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=[(sc, sc) for sc in KEY_SCOPES]),
        required=False,
        min_length=1,
        help_text="Default: ['market_data:read']. Management scopes cannot be granted to API keys.",
    )
    allowed_origins = serializers.ListField(
        child=OriginField(),
        required=False,
        default=list,
        max_length=0,
        error_messages={"max_length": 'only browser keys have allowed origins: send "type": "browser"'},
        help_text="Secret keys have no allowed origins (they refuse every request carrying an Origin).",
    )


class ApiKeyBrowserIn(_ApiKeyCommonIn):
    """A browser key (``cs_pub_…``): read-only, usable only from web pages on its allowed origins,
    which get CORS answers."""

    type = BrowserKindField(source="kind")
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=[(sc, sc) for sc in BROWSER_KEY_SCOPES]),
        required=False,
        min_length=1,
        help_text="Read-only scopes only. Default: ['market_data:read'].",
    )
    allowed_origins = serializers.ListField(
        child=OriginField(),
        min_length=1,
        max_length=50,
        help_text="Web origins allowed to use the key, as browsers send them in `Origin`: "
        "`scheme://host[:port]` (http or https, lowercase, no path, no trailing slash), or "
        "`https://*.example.com` for every subdomain of example.com (not example.com itself).",
    )


def api_key_in(data) -> _ApiKeyCommonIn:
    """The create-key input serializer for ``data``: browser or secret by its ``type``."""
    kind = data.get("type") if hasattr(data, "get") else None
    serializer = ApiKeyBrowserIn if kind == KeyKind.BROWSER.value else ApiKeySecretIn
    return serializer(data=data)


class ApiKeyRotateIn(serializers.Serializer):
    old_key_expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Until when the old key keeps working. Default: now + 24 hours; at most "
        "ROTATION_MAX_OVERLAP_SECONDS (30 days) from now.",
    )
    old_key_expires_in = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=0,
        max_value=settings.ACCOUNTS["ROTATION_MAX_OVERLAP_SECONDS"],
        help_text="Alternative to old_key_expires_at (and used if both are sent): seconds from now "
        "(0 = the old key stops now).",
    )


class LeakedKeyIn(serializers.Serializer):
    key = StrictCharField(max_length=200, help_text="The published key, as found.")
    url = StrictCharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Where it was found (recorded in the organization's audit log).",
    )


class LeakedKeyOut(serializers.Serializer):
    received = serializers.BooleanField(help_text="Always true: the answer is the same for any key.")
    detail = serializers.CharField()


# --- output ----------
class OrganizationOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    created_at = serializers.DateTimeField()


class MyMembershipOut(serializers.Serializer):
    organization = OrganizationOut()
    role = serializers.ChoiceField(choices=Role.choices)
    permissions = serializers.SerializerMethodField()

    def get_permissions(self, obj) -> list[str]:
        return roles.permissions_of(obj.role)


class UserOut(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    full_name = serializers.CharField()
    email_verified = serializers.SerializerMethodField()

    def get_email_verified(self, obj) -> bool:
        return obj.email_verified_at is not None


class MeOut(UserOut):
    memberships = MyMembershipOut(many=True)


class SignupOut(serializers.Serializer):
    user = UserOut()
    organization = OrganizationOut()
    role = serializers.ChoiceField(choices=Role.choices)
    tokens = TokenOut()


class SignupAcceptedOut(serializers.Serializer):
    email = serializers.EmailField(help_text="The address, as the account will know it (lowercase).")
    detail = serializers.CharField()


class MemberOut(serializers.Serializer):
    id = serializers.IntegerField(help_text="Membership id (use it in /members/{id})")
    user_id = serializers.IntegerField()
    email = serializers.EmailField(source="user.email")
    full_name = serializers.CharField(source="user.full_name")
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField()


class InvitationOut(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)
    status = serializers.CharField(help_text="pending, accepted or expired (withdrawn invitations are gone)")
    invited_by = serializers.EmailField(source="invited_by.email", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()


class ApiKeyOut(serializers.Serializer):
    key_id = serializers.CharField()
    prefix = serializers.CharField(help_text="Public part of the key, e.g. cs_live_4fJx0cQ2mZpA")
    name = serializers.CharField()
    environment = serializers.ChoiceField(choices=KeyEnvironment.choices)
    type = KindField(source="kind", help_text="secret (servers) or browser (web pages on allowed_origins)")
    status = serializers.CharField(help_text="active, expired or revoked")
    scopes = serializers.ListField(child=serializers.CharField())
    allowed_ips = serializers.ListField(child=serializers.CharField())
    allowed_origins = serializers.ListField(
        child=serializers.CharField(),
        help_text="Browser keys: the origins allowed to use it; [] for secret keys.",
    )
    expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    created_by = serializers.EmailField(source="created_by.email", allow_null=True, default=None)
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    rotated_from = serializers.CharField(source="rotated_from.key_id", allow_null=True, default=None)


class ApiKeyCreatedOut(ApiKeyOut):
    key = serializers.CharField(help_text="The full API key. Shown only in this response: store it now.")


class ApiKeyRotatedOut(serializers.Serializer):
    new_key = ApiKeyCreatedOut()
    old_key = ApiKeyOut()


class WithdrawnInvitationOut(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)


class OffboardQuery(serializers.Serializer):
    transfer_keys_to = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Owners only: the membership id of another member (who may manage keys) to hand the "
        "leaving member's active API keys to, instead of revoking them.",
    )


class OffboardedOut(serializers.Serializer):
    member = MemberOut(source="membership", help_text="The membership that no longer exists.")
    revoked_keys = ApiKeyOut(many=True, help_text="Keys the member created here: revoked now.")
    transferred_keys = ApiKeyOut(many=True, help_text="Keys handed to `transfer_keys_to` (still active).")
    withdrawn_invitations = WithdrawnInvitationOut(
        many=True, help_text="Pending invitations the member sent: withdrawn now."
    )


class AuditEventOut(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor_label")
    action = serializers.CharField()
    target_type = serializers.CharField()
    target_id = serializers.CharField()
    # DRF's metaclass moves declared fields into _declared_fields, so this does not shadow the
    # Serializer.data property at runtime; the stubs only see a class attribute overriding it.
    data = serializers.JSONField()  # type: ignore[assignment]  # a field named "data", not the property
    ip_address = serializers.CharField(allow_null=True)


class AuditPageOut(serializers.Serializer):
    results = AuditEventOut(many=True)
    next_cursor = serializers.CharField(
        allow_null=True,
        help_text='Pass as ?cursor= for the next page (also in `Link: rel="next"`); null: last page.',
    )
    next_before = serializers.IntegerField(
        allow_null=True, help_text="Deprecated (use `next_cursor`): pass as ?before= for the next page."
    )


# --- sessions and passwords (accounts/session_views.py) ----------
def _password(help_text: str) -> StrictCharField:
    return StrictCharField(
        write_only=True,
        max_length=128,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text=help_text,
    )


class NewPasswordIn(serializers.Serializer):
    """A body with a new password (its schema states the password rules: accounts.schema)."""

    new_password = _password("The new password.")


class PasswordChangeIn(NewPasswordIn):
    current_password = _password("Your password now.")


class PasswordResetIn(serializers.Serializer):
    email = serializers.EmailField(max_length=254)


class PasswordResetOut(serializers.Serializer):
    detail = serializers.CharField()


class PasswordResetConfirmIn(NewPasswordIn):
    token = StrictCharField(max_length=200, help_text="The token from the password-reset email.")


class SessionsEndedOut(serializers.Serializer):
    sessions_ended = serializers.IntegerField(help_text="How many sessions were ended")
