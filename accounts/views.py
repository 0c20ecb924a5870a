"""The management API under /v1/account/ (JWT). Thin: parse, call a service/selector, shape output."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import failures, login_limits, roles, selectors
from accounts import problems as p
from accounts import serializers as s
from accounts.authentication import client_ip
from accounts.models import ApiKey, Invitation, Membership
from accounts.schema import ManagementSchema, problem
from accounts.services.api_keys import (
    api_key_create,
    api_key_report_leaked,
    api_key_revoke,
    api_key_rotate,
)
from accounts.services.invitations import invitation_accept, invitation_create, invitation_revoke
from accounts.services.memberships import (
    Offboarded,
    membership_leave,
    membership_remove,
    membership_role_change,
)
from accounts.services.organizations import organization_update
from accounts.services.sessions import session_refresh, session_start
from accounts.services.two_factor import two_factor_enabled, two_factor_verify
from accounts.services.users import email_verification_resend, user_signup, user_verify_email
from accounts.tenancy import JWTView, NoStoreMixin, OrganizationScopedView
from apiplatform.problems import (
    NOT_AUTHENTICATED,
    RATE_LIMITED,
    SERVICE_UNAVAILABLE,
    VALIDATION_ERROR,
    ProblemError,
)

# Errors every operation shares (401, 400/415 for bodies, the tenant's 400/403/404) are added by
# accounts.schema.ManagementSchema; the responses below declare only what is particular to each.
TAG = "account"


# --- brute-force protection (django-ratelimit) --------------------------------------------------------------
def _too_many(retry_after: int | None) -> None:
    if retry_after is not None:
        raise ProblemError(
            RATE_LIMITED,
            "Too many attempts. Wait before trying again.",
            headers={"Retry-After": str(retry_after)},
            extra={"retry_after": retry_after},
        )


def _limit(request, *, group: str, rate: str, key: str) -> None:
    """Count one attempt; 429 problem with Retry-After when over ``rate`` for this key. Fails open
    (counts nothing, refuses nothing) while the cache is unreachable (accounts.failures.over_rate)."""
    _too_many(failures.over_rate(request._request, group=group, key=key, rate=rate))


def _limit_ip(request, group: str, rate_setting: str) -> None:
    # The client as accounts sees it everywhere: TRUSTED_PROXY_DEPTH honoured, IPv6 per /64.
    bucket = failures.client_bucket(client_ip(request)) or "unknown"
    _limit(request, group=group, rate=settings.ACCOUNTS[rate_setting], key=bucket)


def _limit_account(request, group: str, rate_setting: str, email: str) -> None:
    normalized = email.strip().lower()
    _limit(request, group=group, rate=settings.ACCOUNTS[rate_setting], key=normalized)


class PublicAccountView(NoStoreMixin, APIView):
    """Sign-up, login, refresh and email verification: no credentials needed."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    schema = ManagementSchema()


# --- sign-up and tokens ---
SIGNUP_ANSWER = (
    "Check your inbox: we sent a link to verify this address (if the address already has an account, "
    "its owner got an email instead). Then log in with POST /v1/account/token."
)


class SignupView(PublicAccountView):
    @extend_schema(
        operation_id="account_signup",
        tags=[TAG],
        summary="Sign up: user + organization + owner membership, then verify the email address",
        description=(
            "Creates the user, an organization with a unique slug and the owner membership, and emails "
            "a verification link: `202` with the address and what to do next. The answer is the same "
            "for an address that already has an account: nothing is created and the address's owner "
            "gets an email instead, so sign-up tells nobody whether an address is registered. Log in "
            "with `POST /v1/account/token`; inviting people and live API keys need the verified address. "
            "A sign-up that is not verified within `UNVERIFIED_SIGNUP_TTL` (3 days) is deleted.\n\n"
            "With `invitation_token` (from an invitation email, for the same address) the user joins "
            "the inviting organization with the invited role instead, no organization is created, the "
            "address counts as verified (the token proves it) and the answer is `201` with a JWT pair."
        ),
        request=s.SignupIn,
        responses={
            202: s.SignupAcceptedOut,
            201: s.SignupOut,
            400: p.INVITATION_INVALID,
            429: RATE_LIMITED,
        },
        examples=[
            OpenApiExample(
                "Sign up",
                value={
                    "email": "ada@example.com",
                    "password": "a long passphrase",
                    "organization_name": "Acme",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request):
        _limit_ip(request, "accounts.signup.ip", "RATE_SIGNUP_IP")
        data = s.SignupIn(data=request.data)
        data.is_valid(raise_exception=True)
        _limit_account(
            request, "accounts.signup.account", "RATE_SIGNUP_ACCOUNT", data.validated_data["email"]
        )
        invitation_token = data.validated_data.get("invitation_token", "")
        result = user_signup(
            email=data.validated_data["email"],
            password=data.validated_data["password"],
            organization_name=data.validated_data.get("organization_name", ""),
            invitation_token=invitation_token,
            full_name=data.validated_data.get("full_name", ""),
            ip_address=client_ip(request),
        )
        if not invitation_token or result.user is None or result.membership is None:
            body = {"email": result.email, "detail": SIGNUP_ANSWER}
            return Response(s.SignupAcceptedOut(body).data, status=status.HTTP_202_ACCEPTED)
        body = {
            "user": s.UserOut(result.user).data,
            "organization": s.OrganizationOut(result.membership.organization).data,
            "role": result.membership.role,
            "tokens": session_start(user=result.user, ip_address=client_ip(request)).as_dict(),
        }
        return Response(body, status=status.HTTP_201_CREATED)


class TokenObtainView(PublicAccountView):
    @extend_schema(
        operation_id="account_token_obtain",
        tags=[TAG],
        summary="Log in with email and password: JWT access + refresh token",
        request=s.TokenIn,
        responses={
            200: s.TokenOut,
            401: [
                p.INVALID_CREDENTIALS,
                problem(
                    p.TWO_FACTOR_REQUIRED,
                    "The password is right and the account has two-factor authentication on: send "
                    "`otp_code` too.",
                ),
            ],
            429: RATE_LIMITED,
        },
    )
    def post(self, request):
        _too_many(login_limits.ip_limit(request._request))
        data = s.TokenIn(data=request.data)
        data.is_valid(raise_exception=True)
        email = data.validated_data["email"].strip().lower()
        _too_many(login_limits.account_limit(request._request, email=email))
        user = authenticate(request._request, email=email, password=data.validated_data["password"])
        if user is None or not user.is_active:
            raise ProblemError(p.INVALID_CREDENTIALS)
        if two_factor_enabled(user=user):  # the portal's second factor guards the API login too
            code = data.validated_data.get("otp_code", "")
            if not code:
                raise ProblemError(p.TWO_FACTOR_REQUIRED)
            if two_factor_verify(user=user, code=code) is None:
                raise ProblemError(p.INVALID_CREDENTIALS)
        return Response(session_start(user=user, ip_address=client_ip(request)).as_dict())


class TokenRefreshView(PublicAccountView):
    @extend_schema(
        operation_id="account_token_refresh",
        tags=[TAG],
        summary="Exchange a refresh token for a new pair (rotation; a used refresh token ends its session)",
        description=(
            "Each refresh token can be redeemed once: of concurrent redemptions exactly one gets a "
            "new pair. Presenting a refresh token that was already redeemed ends its whole session "
            "(reuse detection: its newer refresh token and its access tokens stop working). A "
            "session ends `JWT_SESSION_MAX_DAYS` (default 30) after the login, however often it "
            "is refreshed (`session_expires_at`); token expiries never pass that end."
        ),
        request=s.RefreshIn,
        responses={
            200: s.TokenOut,
            401: [
                problem(NOT_AUTHENTICATED, "Not a valid refresh token (malformed, bad signature, expired)."),
                problem(
                    p.SESSION_ENDED,
                    "The session ended (logout, absolute lifetime, password change or reset), or this "
                    "refresh token was already used (which ends the session now).",
                ),
            ],
            429: RATE_LIMITED,
        },
    )
    def post(self, request):
        _limit_ip(request, "accounts.refresh.ip", "RATE_REFRESH_IP")
        data = s.RefreshIn(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(session_refresh(refresh=data.validated_data["refresh"]).as_dict())


class VerifyEmailView(PublicAccountView):
    @extend_schema(
        operation_id="account_verify_email_link",
        tags=[TAG],
        deprecated=True,
        summary="Verify an email address (links in verification emails sent before; use POST)",
        description=(
            "Deprecated: a token in a URL ends up in access logs and browser history. Verification "
            "emails now carry the token for `POST /v1/account/verify-email`; this keeps working for "
            "links already sent (valid 3 days)."
        ),
        parameters=[OpenApiParameter("token", OpenApiTypes.STR, OpenApiParameter.QUERY, required=True)],
        responses={200: s.UserOut, 400: p.VERIFICATION_INVALID},
    )
    def get(self, request):
        user = user_verify_email(token=request.query_params.get("token", ""))
        return Response(s.UserOut(user).data)

    @extend_schema(
        operation_id="account_verify_email",
        tags=[TAG],
        summary="Verify an email address with the token from the verification email",
        request=s.VerifyEmailIn,
        responses={200: s.UserOut, 400: p.VERIFICATION_INVALID},
    )
    def post(self, request):
        data = s.VerifyEmailIn(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_verify_email(token=data.validated_data["token"])
        return Response(s.UserOut(user).data)


class VerifyEmailResendView(JWTView):
    @extend_schema(
        operation_id="account_verify_email_resend",
        tags=[TAG],
        summary="Send the verification email again (the link is valid for 3 days)",
        description=(
            "Queues a new verification email to the logged-in user's address: `202` with "
            '`{"queued": true}`. An address that is already verified gets `200` with '
            '`{"queued": false}` and no email. Limited per user (`RATE_VERIFY_RESEND_USER`, '
            "default 3 per hour)."
        ),
        request=None,
        responses={
            202: s.VerifyResendOut,
            200: s.VerifyResendOut,
            429: RATE_LIMITED,
            503: problem(SERVICE_UNAVAILABLE, "The email could not be queued; try again later."),
        },
    )
    def post(self, request):
        user_key = str(request.user.pk)
        _limit(
            request,
            group="verify-resend",
            rate=settings.ACCOUNTS["RATE_VERIFY_RESEND_USER"],
            key=user_key,
        )
        queued = email_verification_resend(user=request.user)
        return Response(
            s.VerifyResendOut({"queued": queued, "email_verified": not queued}).data,
            status=status.HTTP_202_ACCEPTED if queued else status.HTTP_200_OK,
        )


# --- published keys (secret scanners) ---
LEAK_REPORT_ANSWER = {
    "received": True,
    "detail": "Thank you. If this is an active Candlestack secret key, it is now revoked and the owners "
    "of its organization have been told.",
}


class RevokeLeakedKeyView(PublicAccountView):
    @extend_schema(
        operation_id="keys_revoke_leaked",
        tags=["keys"],
        summary="Report a published API key: an active secret key is revoked at once and its owners told",
        description=(
            "For secret scanners and for anyone who finds a Candlestack key in public (a repository, "
            "a paste, a web page). No credentials. If the body holds an active secret key (`cs_live_…` "
            "or `cs_test_…`, see `docs/accounts.md` for the regular expression), the key is revoked "
            "(refused by every web process within one second), the revocation is written to the "
            "organization's audit log with `url`, and the organization's owners get an email. The "
            "answer is the same `202` for anything else, so this endpoint tells nobody whether a string "
            "is a key. Limited per client IP (`RATE_REVOKE_LEAKED_IP`, default 30 per minute)."
        ),
        request=s.LeakedKeyIn,
        responses={202: s.LeakedKeyOut, 429: RATE_LIMITED},
        examples=[
            OpenApiExample(
                "Report a key",
                value={
                    "key": "cs_live_4fJx0cQ2mZpA_" + "0" * 38,
                    "url": "https://github.com/example/repo/blob/main/settings.py",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request):
        _limit_ip(request, "accounts.revoke_leaked.ip", "RATE_REVOKE_LEAKED_IP")
        data = s.LeakedKeyIn(data=request.data)
        data.is_valid(raise_exception=True)
        api_key_report_leaked(
            key=data.validated_data["key"], source=data.validated_data["url"], ip_address=client_ip(request)
        )
        return Response(s.LeakedKeyOut(LEAK_REPORT_ANSWER).data, status=status.HTTP_202_ACCEPTED)


# --- the caller ---
class MeView(JWTView):
    @extend_schema(
        operation_id="account_me",
        tags=[TAG],
        summary="The logged-in user and the organizations they belong to (with role and permissions)",
        responses={200: s.MeOut},
    )
    def get(self, request):
        user = request.user
        body = dict(s.UserOut(user).data)
        body["memberships"] = s.MyMembershipOut(
            selectors.memberships_of_user(user_id=user.pk), many=True
        ).data
        return Response(body)


class InvitationAcceptView(JWTView):
    @extend_schema(
        operation_id="account_invitation_accept",
        tags=[TAG],
        summary="Accept an invitation (log in or sign up with the invited email address first)",
        request=s.InvitationAcceptIn,
        responses={201: s.MyMembershipOut, 400: p.INVITATION_INVALID, 409: p.ALREADY_MEMBER},
    )
    def post(self, request):
        data = s.InvitationAcceptIn(data=request.data)
        data.is_valid(raise_exception=True)
        membership = invitation_accept(
            token=data.validated_data["token"], user=request.user, ip_address=client_ip(request)
        )
        return Response(s.MyMembershipOut(membership).data, status=status.HTTP_201_CREATED)


# --- organization-scoped ---
class OrganizationView(OrganizationScopedView):
    required_permissions = {"GET": roles.ORG_READ, "PATCH": roles.ORG_UPDATE}

    @extend_schema(
        operation_id="account_organization",
        tags=[TAG],
        summary="The selected organization and your role in it",
        responses={200: s.MyMembershipOut},
    )
    def get(self, request):
        return Response(s.MyMembershipOut(self.membership).data)

    @extend_schema(
        operation_id="account_organization_update",
        tags=[TAG],
        summary="Rename the organization (owner, admin)",
        request=s.OrganizationUpdateIn,
        responses={200: s.MyMembershipOut},
    )
    def patch(self, request):
        data = s.OrganizationUpdateIn(data=request.data)
        data.is_valid(raise_exception=True)
        organization_update(
            organization=self.organization,
            actor=request.user,
            name=data.validated_data["name"],
            ip_address=client_ip(request),
        )
        return Response(s.MyMembershipOut(self.membership).data)


class MemberListView(OrganizationScopedView):
    required_permissions = {"GET": roles.MEMBERS_READ}

    @extend_schema(
        operation_id="account_members_list",
        tags=[TAG],
        summary="Members of the organization and their roles",
        responses={200: s.MemberOut(many=True)},
    )
    def get(self, request):
        members = self.scoped(selectors.organization_members(organization=self.organization))
        return Response(s.MemberOut(members, many=True).data)


class MemberDetailView(OrganizationScopedView):
    required_permissions = {
        "GET": roles.MEMBERS_READ,
        "PATCH": roles.MEMBERS_MANAGE,
        "DELETE": roles.MEMBERS_MANAGE,
    }

    def _member(self, member_id: int) -> Membership:
        return self.get_scoped_object(Membership.objects.select_related("user", "organization"), pk=member_id)

    @extend_schema(
        operation_id="account_member",
        tags=[TAG],
        summary="One member",
        responses={200: s.MemberOut},
    )
    def get(self, request, member_id: int):
        return Response(s.MemberOut(self._member(member_id)).data)

    @extend_schema(
        operation_id="account_member_role_change",
        tags=[TAG],
        summary="Change a member's role (owner, admin; only owners grant or remove owner)",
        request=s.RoleChangeIn,
        responses={200: s.MemberOut, 409: p.LAST_OWNER},
    )
    def patch(self, request, member_id: int):
        membership = self._member(member_id)
        data = s.RoleChangeIn(data=request.data)
        data.is_valid(raise_exception=True)
        membership = membership_role_change(
            membership=membership,
            role=data.validated_data["role"],
            actor=request.user,
            actor_role=self.role,
            ip_address=client_ip(request),
        )
        return Response(s.MemberOut(membership).data)

    @extend_schema(
        operation_id="account_member_remove",
        tags=[TAG],
        summary="Remove a member (owner, admin): their API keys revoked, pending invitations withdrawn",
        description=(
            "In one transaction: the API keys the member created in this organization are revoked "
            "(refused by every web process within one second) and every pending invitation the member "
            "sent is withdrawn. An owner may hand the member's active keys to another member instead "
            "with `?transfer_keys_to=<membership id>`. The response lists what was revoked, transferred "
            "and withdrawn; the audit log records each."
        ),
        parameters=[s.OffboardQuery],
        responses={200: s.OffboardedOut, 409: p.LAST_OWNER},
    )
    def delete(self, request, member_id: int):
        membership = self._member(member_id)
        query = s.OffboardQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        result = membership_remove(
            membership=membership,
            actor=request.user,
            actor_role=self.role,
            transfer_keys_to=query.validated_data.get("transfer_keys_to"),
            ip_address=client_ip(request),
        )
        return Response(_offboarded_out(result))


def _offboarded_out(result: Offboarded) -> dict:
    return dict(s.OffboardedOut(result).data)


class OrganizationLeaveView(OrganizationScopedView):
    required_permissions = {"POST": roles.ORG_READ}

    @extend_schema(
        operation_id="account_organization_leave",
        tags=[TAG],
        summary="Leave the organization: your API keys in it are revoked, your pending invitations withdrawn",
        description=(
            "The same offboarding as a removal by an admin. An owner may hand their active keys to "
            "another member with `?transfer_keys_to=<membership id>`. The last owner cannot leave."
        ),
        request=None,
        parameters=[s.OffboardQuery],
        responses={200: s.OffboardedOut, 409: p.LAST_OWNER},
    )
    def post(self, request):
        query = s.OffboardQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        assert self.membership is not None
        result = membership_leave(
            membership=self.membership,
            transfer_keys_to=query.validated_data.get("transfer_keys_to"),
            ip_address=client_ip(request),
        )
        return Response(_offboarded_out(result))


class InvitationListView(OrganizationScopedView):
    required_permissions = {"GET": roles.INVITATIONS_READ, "POST": roles.INVITATIONS_MANAGE}

    @extend_schema(
        operation_id="account_invitations_list",
        tags=[TAG],
        summary="Invitations of the organization (pending, accepted, expired; withdrawn ones are gone)",
        responses={200: s.InvitationOut(many=True)},
    )
    def get(self, request):
        invitations = self.scoped(selectors.organization_invitations(organization=self.organization))
        return Response(s.InvitationOut(invitations, many=True).data)

    @extend_schema(
        operation_id="account_invitation_create",
        tags=[TAG],
        summary="Invite someone by email (the token is emailed, never returned)",
        request=s.InvitationIn,
        description=(
            "Needs a verified email address (`403 email-unverified`). Limited per organization "
            "(`RATE_INVITE_ORGANIZATION`, default 20 per hour) and per inviting user "
            "(`RATE_INVITE_USER`, default 10 per hour): `429 rate-limited` with `Retry-After`."
        ),
        responses={
            201: s.InvitationOut,
            403: problem(p.EMAIL_UNVERIFIED, "Your email address is not verified yet."),
            409: p.ALREADY_MEMBER,
            429: RATE_LIMITED,
            503: problem(SERVICE_UNAVAILABLE, "The email could not be sent; nothing was created."),
        },
    )
    def post(self, request):
        data = s.InvitationIn(data=request.data)
        data.is_valid(raise_exception=True)
        org_key, user_key = str(self.organization.pk), str(request.user.pk)
        _limit(
            request,
            group="accounts.invite.organization",
            rate=settings.ACCOUNTS["RATE_INVITE_ORGANIZATION"],
            key=org_key,
        )
        _limit(
            request,
            group="accounts.invite.user",
            rate=settings.ACCOUNTS["RATE_INVITE_USER"],
            key=user_key,
        )
        invitation, _token = invitation_create(
            organization=self.organization,
            email=data.validated_data["email"],
            role=data.validated_data["role"],
            actor=request.user,
            actor_role=self.role,
            ip_address=client_ip(request),
        )
        return Response(s.InvitationOut(invitation).data, status=status.HTTP_201_CREATED)


class InvitationDetailView(OrganizationScopedView):
    required_permissions = {"GET": roles.INVITATIONS_READ, "DELETE": roles.INVITATIONS_MANAGE}

    def _invitation(self, invitation_id: int) -> Invitation:
        # Withdrawn invitations are gone for the API: 404, like one that never existed.
        return self.get_scoped_object(
            selectors.organization_invitations(organization=self.organization), pk=invitation_id
        )

    @extend_schema(
        operation_id="account_invitation",
        tags=[TAG],
        summary="One invitation (a withdrawn one is 404)",
        responses={200: s.InvitationOut},
    )
    def get(self, request, invitation_id: int):
        return Response(s.InvitationOut(self._invitation(invitation_id)).data)

    @extend_schema(
        operation_id="account_invitation_revoke",
        tags=[TAG],
        summary="Withdraw a pending invitation: its token stops working and it is gone (404) afterwards",
        description=(
            "A withdrawn invitation disappears from the API: `GET` answers 404 and the list no "
            "longer shows it (the audit log keeps `invitation.revoked`). Accepted and expired "
            "invitations stay listed with their status and cannot be withdrawn."
        ),
        responses={
            204: None,
            400: problem(p.INVITATION_INVALID, "The invitation was already accepted or has expired."),
        },
    )
    def delete(self, request, invitation_id: int):
        invitation_revoke(
            invitation=self._invitation(invitation_id),
            actor=request.user,
            actor_role=self.role,
            ip_address=client_ip(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


def _key_out(api_key: ApiKey) -> dict:
    return dict(s.ApiKeyOut(selectors.api_keys_with_last_used([api_key])[0]).data)


class ApiKeyListView(OrganizationScopedView):
    required_permissions = {"GET": roles.KEYS_READ, "POST": roles.KEYS_MANAGE}

    @extend_schema(
        operation_id="account_keys_list",
        tags=[TAG],
        summary="API keys of the organization: prefix and metadata, never the secret",
        responses={200: s.ApiKeyOut(many=True)},
    )
    def get(self, request):
        api_keys = list(self.scoped(selectors.organization_api_keys(organization=self.organization)))
        return Response(s.ApiKeyOut(selectors.api_keys_with_last_used(api_keys), many=True).data)

    @extend_schema(
        operation_id="account_key_create",
        tags=[TAG],
        summary="Create an API key. The response holds the full key: it is shown only once",
        description="`type` secret (default): for servers, refused from browsers. `type` browser: "
        "read-only, usable only from web pages on its `allowed_origins` (at least one), which get CORS "
        "answers; see docs/accounts.md, Browser keys.",
        request=PolymorphicProxySerializer(
            component_name="ApiKeyCreate",
            serializers=[s.ApiKeySecretIn, s.ApiKeyBrowserIn],
            resource_type_field_name=None,
        ),
        responses={
            201: s.ApiKeyCreatedOut,
            403: problem(
                p.EMAIL_UNVERIFIED, "A live key was asked for by a user whose email is not verified."
            ),
        },
        examples=[
            OpenApiExample(
                "Create a secret key",
                value={"name": "production server", "allowed_ips": ["203.0.113.0/24"]},
                request_only=True,
            ),
            OpenApiExample(
                "Create a browser key",
                value={
                    "name": "web dashboard",
                    "type": "browser",
                    "allowed_origins": ["https://app.example.com", "http://localhost:3000"],
                },
                request_only=True,
            ),
        ],
    )
    def post(self, request):
        data = s.api_key_in(request.data)
        data.is_valid(raise_exception=True)
        api_key, full_key = api_key_create(
            organization=self.organization,
            created_by=request.user,
            ip_address=client_ip(request),
            **data.validated_data,
        )
        return Response({**_key_out(api_key), "key": full_key}, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(OrganizationScopedView):
    required_permissions = {"GET": roles.KEYS_READ}

    @extend_schema(
        operation_id="account_key",
        tags=[TAG],
        summary="One API key (metadata only)",
        responses={200: s.ApiKeyOut},
    )
    def get(self, request, key_id: str):
        api_key = self.get_scoped_object(
            selectors.organization_api_keys(organization=self.organization), key_id=key_id
        )
        return Response(_key_out(api_key))


class ApiKeyRevokeView(OrganizationScopedView):
    required_permissions = {"POST": roles.KEYS_MANAGE}

    @extend_schema(
        operation_id="account_key_revoke",
        tags=[TAG],
        summary="Revoke an API key: refused by every web process within one second",
        request=None,
        responses={200: s.ApiKeyOut, 409: p.KEY_ALREADY_REVOKED},
    )
    def post(self, request, key_id: str):
        api_key = self.get_scoped_object(ApiKey.objects.all(), key_id=key_id)
        api_key = api_key_revoke(api_key=api_key, actor=request.user, ip_address=client_ip(request))
        return Response(_key_out(api_key))


class ApiKeyRotateView(OrganizationScopedView):
    required_permissions = {"POST": roles.KEYS_MANAGE}

    @extend_schema(
        operation_id="account_key_rotate",
        tags=[TAG],
        summary="Rotate: a new key now, the old one keeps working until old_key_expires_at (default 24 h)",
        request=s.ApiKeyRotateIn,
        responses={
            201: s.ApiKeyRotatedOut,
            409: [p.KEY_ALREADY_REVOKED, p.KEY_ALREADY_ROTATED, p.KEY_ALREADY_EXPIRED],
        },
    )
    def post(self, request, key_id: str):
        api_key = self.get_scoped_object(ApiKey.objects.all(), key_id=key_id)
        data = s.ApiKeyRotateIn(data=request.data)
        data.is_valid(raise_exception=True)
        new, full_key, old = api_key_rotate(
            api_key=api_key,
            actor=request.user,
            old_key_expires_at=data.validated_data["old_key_expires_at"],
            old_key_expires_in=data.validated_data["old_key_expires_in"],
            ip_address=client_ip(request),
        )
        body = {"new_key": {**_key_out(new), "key": full_key}, "old_key": _key_out(old)}
        return Response(body, status=status.HTTP_201_CREATED)


class AuditEventListView(OrganizationScopedView):
    required_permissions = {"GET": roles.AUDIT_READ}

    @extend_schema(
        operation_id="account_audit_events",
        tags=[TAG],
        summary="Audit log of key, invitation and membership events, newest first",
        parameters=[
            s.AuditQuery,
            OpenApiParameter(
                "before",
                {"type": "integer", "minimum": 1},
                deprecated=True,
                description="Deprecated (use `cursor`): events older than this id.",
            ),
        ],
        responses={
            200: s.AuditPageOut,
            400: problem(
                VALIDATION_ERROR, "`cursor` is not one this API issued, or `before`/`limit` is out of range."
            ),
        },
    )
    def get(self, request):
        query = s.AuditQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        limit = query.validated_data["limit"]
        data = query.validated_data
        events = selectors.organization_audit_events(
            organization=self.organization, before_id=data.get("cursor") or data.get("before"), limit=limit
        )
        next_before = events[-1].id if len(events) == limit else None
        next_cursor = s.audit_cursor(next_before) if next_before is not None else None
        response = Response(
            {
                "results": s.AuditEventOut(events, many=True).data,
                "next_cursor": next_cursor,
                "next_before": next_before,
            }
        )
        if next_cursor is not None:
            params = request.query_params.copy()
            params.pop("before", None)
            params["cursor"] = next_cursor
            response["Link"] = (
                f'<{request.build_absolute_uri(request.path)}?{params.urlencode()}>; rel="next"'
            )
        return response
