"""Admin: keys are shown without secret or hash, and the revoke action goes through the service."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts import keyformat, keys
from accounts.models import ApiKey, AuditEvent, User


@pytest.fixture
def admin_client(db):
    user = User.objects.create_superuser(email="root@example.test", password="admin-password-123")
    client = Client()
    client.force_login(user)
    return client


def test_key_admin_never_shows_secret_or_hash(admin_client, make_org, make_key):
    org = make_org()
    api_key, full = make_key(org)
    for url in (
        "/admin/accounts/apikey/",
        f"/admin/accounts/apikey/{api_key.pk}/change/",
        f"/admin/accounts/organization/{org.pk}/change/",
    ):
        html = admin_client.get(url).content.decode()
        assert api_key.prefix in html
        assert api_key.secret_hash not in html and full not in html and full[-38:] not in html


def test_admin_revoke_action(admin_client, make_org, make_key, django_capture_on_commit_callbacks):
    api_key, full = make_key(make_org())
    assert keys.verify(keyformat.parse_key(full), None)[0] == "ok"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/accounts/apikey/", {"action": "revoke_keys", "_selected_action": [api_key.pk]}
        )
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
    assert AuditEvent.objects.filter(action="key.revoked", target_id=api_key.key_id).exists()
    assert keys.verify(keyformat.parse_key(full), None)[0] == "revoked"


def test_audit_and_org_admin_pages_render(admin_client, make_org):
    make_org()
    for url in (
        "/admin/accounts/auditevent/",
        "/admin/accounts/organization/",
        "/admin/accounts/invitation/",
    ):
        assert admin_client.get(url).status_code == 200


def test_api_keys_do_not_work_on_the_management_api(make_org, make_key):
    from rest_framework.test import APIClient

    _api_key, full = make_key(make_org())
    for headers in ({"HTTP_AUTHORIZATION": f"Bearer {full}"}, {"HTTP_X_API_KEY": full}):
        response = APIClient().get("/v1/account/keys", **headers)
        assert response.status_code == 401


def test_deleting_a_membership_in_the_admin_offboards_the_member(
    admin_client, make_org, make_member, make_key, django_capture_on_commit_callbacks
):
    from accounts.models import Membership

    org = make_org()
    developer = make_member(org, "developer")
    _api_key, full = make_key(org, created_by=developer)
    membership = Membership.objects.get(organization=org, user=developer)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/accounts/membership/{membership.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert keys.verify(keyformat.parse_key(full), None)[0] == "revoked"
    assert AuditEvent.objects.filter(action="member.removed", target_id=str(membership.pk)).exists()
