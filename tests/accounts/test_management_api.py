"""Management API: sign-up, login, refresh rotation, verification, invitations, keys, roles, audit."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from rest_framework.test import APIClient

from accounts import keyformat, keys, roles
from accounts.models import ApiKey, AuditEvent, Membership, Organization, User
from accounts.services.api_keys import api_key_rotate
from accounts.services.invitations import invitation_create

from .conftest import owner_of

PASSWORD = "correct horse battery staple"


def slug_of(response) -> str:
    return response.json()["type"].rsplit("/", 1)[-1]


# --- sign-up, login, refresh, verification ---
def test_signup_creates_user_org_owner_and_sends_verification(db, django_capture_on_commit_callbacks):
    client = APIClient()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/v1/account/signup",
            {"email": "Ada@Example.test", "password": PASSWORD, "organization_name": "Acme Markets"},
            format="json",
        )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["email"] == "ada@example.test" and "tokens" not in body
    user = User.objects.get(email="ada@example.test")
    org = Organization.objects.get(created_by=user)
    assert org.slug == "acme-markets"
    assert Membership.objects.get(user=user, organization=org).role == "owner"
    assert user.check_password(PASSWORD)
    assert not user.password.startswith(PASSWORD)
    # Logging in works before verification; the access token works on the management API.
    tokens = client.post(
        "/v1/account/token", {"email": "ada@example.test", "password": PASSWORD}, format="json"
    )
    me = APIClient(HTTP_AUTHORIZATION=f"Bearer {tokens.json()['access']}").get("/v1/account/me")
    assert me.json()["memberships"][0]["organization"]["slug"] == "acme-markets"
    assert me.json()["email_verified"] is False
    # Verification email, then the link verifies.
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ada@example.test"]
    token = re.search(r'"token": "([^"]+)"', mail.outbox[0].body).group(1)
    assert client.get("/v1/account/verify-email", {"token": token}).json()["email_verified"] is True
    assert client.post("/v1/account/verify-email", {"token": token + "x"}, format="json").status_code == 400


def test_second_org_with_same_name_gets_a_unique_slug(db):
    for email in ("a@x.test", "b@x.test"):
        response = APIClient().post(
            "/v1/account/signup",
            {"email": email, "password": PASSWORD, "organization_name": "Acme"},
            format="json",
        )
        assert response.status_code == 202
    slugs = set(Organization.objects.filter(name="Acme").values_list("slug", flat=True))
    assert len(slugs) == 2
    weak = APIClient().post(
        "/v1/account/signup",
        {"email": "c@x.test", "password": "123", "organization_name": "X"},
        format="json",
    )
    assert weak.status_code == 400 and "password" in weak.content.decode()


def test_token_login_and_refresh_rotation_reuse_ends_the_session(make_user):
    make_user("dev@example.test")
    client = APIClient()
    bad = client.post(
        "/v1/account/token", {"email": "dev@example.test", "password": "nope-nope-nope"}, format="json"
    )
    assert bad.status_code == 401 and slug_of(bad) == "invalid-credentials"
    pair = client.post(
        "/v1/account/token", {"email": "DEV@example.test", "password": PASSWORD}, format="json"
    ).json()
    refreshed = client.post("/v1/account/token/refresh", {"refresh": pair["refresh"]}, format="json")
    assert refreshed.status_code == 200
    assert refreshed.json()["refresh"] != pair["refresh"]
    reused = client.post("/v1/account/token/refresh", {"refresh": pair["refresh"]}, format="json")
    assert reused.status_code == 401 and slug_of(reused) == "session-ended"
    # Reuse detection: the newer refresh token of the same session no longer works either.
    again = client.post("/v1/account/token/refresh", {"refresh": refreshed.json()["refresh"]}, format="json")
    assert again.status_code == 401 and slug_of(again) == "session-ended"


def test_login_is_rate_limited_per_account_and_per_ip(make_user, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "RATE_LOGIN_ACCOUNT": "3/m", "RATE_LOGIN_IP": "5/m"}
    make_user("victim@example.test")
    statuses = []
    for i in range(4):
        r = APIClient().post(
            "/v1/account/token", {"email": "victim@example.test", "password": f"guess-{i}"}, format="json"
        )
        statuses.append(r.status_code)
    assert statuses == [401, 401, 401, 429]
    assert int(r["Retry-After"]) >= 1 and slug_of(r) == "rate-limited"
    # Credential stuffing from one IP across accounts: the per-IP limit (5/min) trips on the 6th try.
    statuses = [
        APIClient()
        .post("/v1/account/token", {"email": f"other{i}@example.test", "password": "x"}, format="json")
        .status_code
        for i in range(2)
    ]
    assert statuses == [401, 429]
    # Another IP is not affected by this IP's limit.
    other_ip = APIClient(REMOTE_ADDR="192.0.2.9").post(
        "/v1/account/token", {"email": "someone@example.test", "password": "x"}, format="json"
    )
    assert other_ip.status_code == 401


def test_login_limits_count_the_client_behind_a_trusted_proxy(make_user, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "TRUSTED_PROXY_DEPTH": 1, "RATE_LOGIN_IP": "2/m"}

    def attempt(client_ip: str) -> int:
        client = APIClient(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=client_ip)  # the same proxy
        body = {"email": "nobody@example.test", "password": "x"}
        return client.post("/v1/account/token", body, format="json").status_code

    assert [attempt("203.0.113.7") for _ in range(3)] == [401, 401, 429]
    assert attempt("198.51.100.9") == 401  # another client behind the same proxy has its own budget


def test_login_and_signup_work_while_the_cache_is_down(make_user, settings, closed_port):
    make_user("up@example.test", password=PASSWORD)
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{closed_port}/0"}
    }
    token = APIClient().post(
        "/v1/account/token", {"email": "up@example.test", "password": PASSWORD}, format="json"
    )
    assert token.status_code == 200, token.content  # fail open: not counted, not refused
    wrong = APIClient().post(
        "/v1/account/token", {"email": "up@example.test", "password": "nope"}, format="json"
    )
    assert wrong.status_code == 401
    signup = APIClient().post(
        "/v1/account/signup",
        {"email": "new@example.test", "password": PASSWORD, "organization_name": "Cacheless"},
        format="json",
    )
    assert signup.status_code == 202, signup.content


def test_signup_is_rate_limited_per_ip(db, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "RATE_SIGNUP_IP": "2/h"}
    codes = [
        APIClient()
        .post(
            "/v1/account/signup",
            {"email": f"s{i}@example.test", "password": PASSWORD, "organization_name": f"S{i}"},
            format="json",
        )
        .status_code
        for i in range(3)
    ]
    assert codes == [202, 202, 429]


# --- roles ---
def test_role_matrix_as_documented():
    expected = {  # the table in docs/accounts.md
        "owner": set(roles.ALL_PERMISSIONS),
        "admin": set(roles.ALL_PERMISSIONS) - {"billing.manage"},
        "developer": {
            "org.read",
            "members.read",
            "keys.read",
            "keys.manage",
            "usage.read",
            "alerts.read",
            "alerts.manage",
        },
        "billing": {"org.read", "members.read", "usage.read", "billing.read", "billing.manage"},
    }
    for role, perms in expected.items():
        assert set(roles.permissions_of(role)) == perms, role
    assert not roles.has_permission(None, "org.read")


ACTIONS = [
    # (name, method, path, body, permission)
    ("org-read", "GET", "/v1/account/organization", None, "org.read"),
    ("org-update", "PATCH", "/v1/account/organization", {"name": "Renamed"}, "org.update"),
    ("members-read", "GET", "/v1/account/members", None, "members.read"),
    ("member-role", "PATCH", "/v1/account/members/{target}", {"role": "billing"}, "members.manage"),
    ("invitations-read", "GET", "/v1/account/invitations", None, "invitations.read"),
    (
        "invite",
        "POST",
        "/v1/account/invitations",
        {"email": "n@example.test", "role": "developer"},
        "invitations.manage",
    ),
    ("keys-read", "GET", "/v1/account/keys", None, "keys.read"),
    ("key-create", "POST", "/v1/account/keys", {"name": "k"}, "keys.manage"),
    ("key-revoke", "POST", "/v1/account/keys/{key}/revoke", None, "keys.manage"),
    ("key-rotate", "POST", "/v1/account/keys/{key}/rotate", {}, "keys.manage"),
    ("audit", "GET", "/v1/account/audit-events", None, "audit.read"),
    ("member-remove", "DELETE", "/v1/account/members/{target}", None, "members.manage"),
]


@pytest.mark.parametrize("role", ["owner", "admin", "developer", "billing"])
@pytest.mark.parametrize(
    ("name", "method", "path", "body", "permission"), ACTIONS, ids=[a[0] for a in ACTIONS]
)
def test_role_checks_on_every_action(
    make_org, make_member, make_key, jwt_client, role, name, method, path, body, permission
):
    org = make_org()
    actor = owner_of(org) if role == "owner" else make_member(org, role)
    target_user = make_member(org, "developer")
    target = Membership.objects.get(organization=org, user=target_user).pk
    api_key, _ = make_key(org)
    client = jwt_client(actor)
    response = getattr(client, method.lower())(
        path.format(target=target, key=api_key.key_id), data=body, format="json"
    )
    allowed = roles.has_permission(role, permission)
    if allowed:
        assert response.status_code in (200, 201, 204), (role, name, response.content)
    else:
        assert response.status_code == 403, (role, name, response.content)
        assert slug_of(response) == "role-forbidden"
        assert response.json()["required_permission"] == permission


def test_only_owners_touch_the_owner_role_and_last_owner_stays(make_org, make_member, jwt_client):
    org = make_org()
    owner = owner_of(org)
    admin = make_member(org, "admin")
    dev = make_member(org, "developer")
    owner_m = Membership.objects.get(user=owner, organization=org)
    dev_m = Membership.objects.get(user=dev, organization=org)
    as_admin, as_owner = jwt_client(admin), jwt_client(owner)
    assert (
        as_admin.patch(f"/v1/account/members/{dev_m.pk}", {"role": "owner"}, format="json").status_code == 403
    )
    assert as_admin.delete(f"/v1/account/members/{owner_m.pk}").status_code == 403
    assert (
        as_admin.post(
            "/v1/account/invitations", {"email": "boss@example.test", "role": "owner"}, format="json"
        ).status_code
        == 403
    )
    last = as_owner.patch(f"/v1/account/members/{owner_m.pk}", {"role": "admin"}, format="json")
    assert last.status_code == 409 and slug_of(last) == "last-owner"
    assert as_owner.delete(f"/v1/account/members/{owner_m.pk}").status_code == 409
    assert (
        as_owner.patch(f"/v1/account/members/{dev_m.pk}", {"role": "owner"}, format="json").status_code == 200
    )
    assert (
        as_owner.patch(f"/v1/account/members/{owner_m.pk}", {"role": "admin"}, format="json").status_code
        == 200
    )
    assert list(
        AuditEvent.objects.filter(organization=org, action="member.role_changed").values_list(
            "data", flat=True
        )
    )


# --- invitations ---
def test_invitation_create_email_accept_and_revoke(
    make_org, make_user, jwt_client, django_capture_on_commit_callbacks
):
    org = make_org()
    owner_client = jwt_client(owner_of(org))
    with django_capture_on_commit_callbacks(execute=True):
        created = owner_client.post(
            "/v1/account/invitations", {"email": "New@Example.test", "role": "admin"}, format="json"
        )
    assert created.status_code == 201, created.content
    assert "token" not in created.json()
    token = re.search(r'"token": "([^"]+)"', mail.outbox[-1].body).group(1)
    assert mail.outbox[-1].to == ["new@example.test"]
    stranger = make_user("stranger@example.test")
    wrong = jwt_client(stranger).post("/v1/account/invitations/accept", {"token": token}, format="json")
    assert wrong.status_code == 400 and slug_of(wrong) == "invitation-invalid"
    invitee = make_user("new@example.test")
    accepted = jwt_client(invitee).post("/v1/account/invitations/accept", {"token": token}, format="json")
    assert accepted.status_code == 201, accepted.content
    assert Membership.objects.get(user=invitee, organization=org).role == "admin"
    again = jwt_client(invitee).post("/v1/account/invitations/accept", {"token": token}, format="json")
    assert again.status_code == 400
    # Revoke a second invitation: it can no longer be accepted.
    second, second_token = invitation_create(
        organization=org, email="late@example.test", role="developer", actor=owner_of(org), actor_role="owner"
    )
    assert owner_client.delete(f"/v1/account/invitations/{second.pk}").status_code == 204
    late = make_user("late@example.test")
    assert (
        jwt_client(late)
        .post("/v1/account/invitations/accept", {"token": second_token}, format="json")
        .status_code
        == 400
    )
    # Withdrawn: gone for the API (the accepted one stays listed with its status).
    statuses = {i["email"]: i["status"] for i in owner_client.get("/v1/account/invitations").json()}
    assert statuses == {"new@example.test": "accepted"}


# --- keys through the API ---
def test_key_create_shows_secret_once_and_list_never(make_org, jwt_client):
    org = make_org()
    client = jwt_client(owner_of(org))
    created = client.post(
        "/v1/account/keys",
        {"name": "server", "allowed_ips": ["203.0.113.7"], "environment": "test"},
        format="json",
    )
    assert created.status_code == 201, created.content
    full = created.json()["key"]
    assert full.startswith("cs_test_") and created.json()["prefix"] == full[: len(created.json()["prefix"])]
    row = ApiKey.objects.get(key_id=created.json()["key_id"])
    assert row.secret_hash == keyformat.hash_key(full) and full not in row.secret_hash
    assert row.allowed_ips == ["203.0.113.7/32"] and row.created_by == owner_of(org)
    listed = client.get("/v1/account/keys")
    detail = client.get(f"/v1/account/keys/{row.key_id}")
    for response in (listed, detail):
        text = response.content.decode()
        assert full not in text and full[len(row.prefix) :] not in text and row.secret_hash not in text
        assert row.prefix in text
    bad_scope = client.post("/v1/account/keys", {"name": "x", "scopes": ["keys.manage"]}, format="json")
    assert bad_scope.status_code == 400


def test_rotation_overlap_and_audit(make_org, jwt_client, monkeypatch, django_capture_on_commit_callbacks):
    org = make_org()
    client = jwt_client(owner_of(org))
    old_full = client.post("/v1/account/keys", {"name": "prod"}, format="json").json()
    with django_capture_on_commit_callbacks(execute=True):
        rotated = client.post(
            f"/v1/account/keys/{old_full['key_id']}/rotate", {"old_key_expires_in": 3600}, format="json"
        )
    assert rotated.status_code == 201, rotated.content
    new_full = rotated.json()["new_key"]["key"]
    assert rotated.json()["new_key"]["rotated_from"] == old_full["key_id"]
    assert rotated.json()["old_key"]["expires_at"] is not None

    def check(full):
        parsed = keyformat.parse_key(full)
        return keys.verify(parsed, "127.0.0.1")[0]

    assert check(old_full["key"]) == check(new_full) == "ok"  # overlap: both work
    later = keys.time.time() + 3601
    monkeypatch.setattr(keys.time, "time", lambda: later)
    assert check(old_full["key"]) == "expired"
    assert check(new_full) == "ok"
    actions = list(AuditEvent.objects.filter(organization=org).values_list("action", flat=True))
    assert "key.created" in actions and "key.rotated" in actions
    audit = client.get("/v1/account/audit-events").json()["results"]
    assert audit[0]["action"] == "key.rotated"


def test_default_rotation_overlap_is_24_hours(make_org, make_key, django_capture_on_commit_callbacks):
    from django.utils import timezone

    api_key, _ = make_key(make_org())
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        _new, _full, old = api_key_rotate(api_key=api_key)
    overlap = (old.expires_at - before).total_seconds()
    assert 24 * 3600 - 5 <= overlap <= 24 * 3600 + 5


def test_revoke_through_api_is_seen_by_this_process_at_once(
    make_org, jwt_client, django_capture_on_commit_callbacks
):
    org = make_org()
    client = jwt_client(owner_of(org))
    created = client.post("/v1/account/keys", {"name": "prod"}, format="json").json()
    parsed = keyformat.parse_key(created["key"])
    assert keys.verify(parsed, None)[0] == "ok"
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"/v1/account/keys/{created['key_id']}/revoke").status_code == 200
    assert keys.verify(parsed, None)[0] == "revoked"
    again = client.post(f"/v1/account/keys/{created['key_id']}/revoke")
    assert again.status_code == 409


def test_signup_with_invitation_joins_the_inviting_org_instead_of_creating_one(make_org, db):
    org = make_org()
    _invitation, token = invitation_create(
        organization=org,
        email="joiner@example.test",
        role="developer",
        actor=owner_of(org),
        actor_role="owner",
    )
    orgs_before = Organization.objects.count()
    wrong_email = APIClient().post(
        "/v1/account/signup",
        {"email": "other@example.test", "password": PASSWORD, "invitation_token": token},
        format="json",
    )
    assert wrong_email.status_code == 400 and slug_of(wrong_email) == "invitation-invalid"
    assert not User.objects.filter(email="other@example.test").exists()  # rolled back
    response = APIClient().post(
        "/v1/account/signup",
        {"email": "joiner@example.test", "password": PASSWORD, "invitation_token": token},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["organization"]["slug"] == org.slug and response.json()["role"] == "developer"
    assert Organization.objects.count() == orgs_before
    assert response.json()["user"]["email_verified"] is True


def test_signup_is_rate_limited_per_email(db, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "RATE_SIGNUP_ACCOUNT": "2/h"}
    codes = [
        APIClient(REMOTE_ADDR=f"192.0.2.{i}")
        .post(
            "/v1/account/signup",
            {"email": "same@example.test", "password": "x", "organization_name": "S"},
            format="json",
        )
        .status_code
        for i in range(3)
    ]
    assert codes == [400, 400, 429]


@pytest.mark.parametrize("path", ["/v1/account/keys", "/v1/account/members", "/v1/account/invitations"])
def test_list_query_count_does_not_grow_with_rows(make_org, make_key, make_member, jwt_client, path):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    org = make_org()
    owner = owner_of(org)
    client = jwt_client(owner)

    def add_rows(n):
        for i in range(n):
            key, _ = make_key(org, created_by=owner)
            api_key_rotate(api_key=key, actor=owner)
            make_member(org, "developer")
            invitation_create(
                organization=org,
                email=f"inv{i}-{key.key_id}@example.test",
                role="developer",
                actor=owner,
                actor_role="owner",
            )

    add_rows(1)
    with CaptureQueriesContext(connection) as few:
        assert client.get(path).status_code == 200
    add_rows(4)
    with CaptureQueriesContext(connection) as many:
        assert client.get(path).status_code == 200
    assert len(many.captured_queries) == len(few.captured_queries)
