"""Offboarding: removing a member (or a member leaving) takes their access with them.

In the same transaction the keys the member created in the organization are revoked (unless an
owner transfers them in the same request) and every pending invitation the member sent is
withdrawn; an invitation is accepted only by its address, once, before expiry, and only while its
sender may still invite.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts import keyformat, keys
from accounts.models import ApiKey, AuditEvent, Invitation, Membership
from accounts.services.invitations import invitation_create

from .conftest import owner_of


def slug_of(response) -> str:
    return response.json()["type"].rsplit("/", 1)[-1]


def _state(full_key: str) -> str:
    return keys.verify(keyformat.parse_key(full_key), None)[0]


@pytest.fixture
def team(make_org, make_member, jwt_client):
    org = make_org(name="Team")
    owner = owner_of(org)
    dev = make_member(org, "developer")
    admin = make_member(org, "admin")
    return {
        "org": org,
        "owner": owner,
        "dev": dev,
        "admin": admin,
        "owner_client": jwt_client(owner),
        "dev_client": jwt_client(dev),
        "admin_client": jwt_client(admin),
    }


def test_removing_a_developer_revokes_the_keys_they_created(team, django_capture_on_commit_callbacks):
    created = team["dev_client"].post("/v1/account/keys", {"name": "dev laptop"}, format="json")
    assert created.status_code == 201, created.content
    full = created.json()["key"]
    owners_key = team["owner_client"].post("/v1/account/keys", {"name": "prod"}, format="json").json()
    assert _state(full) == "ok"
    member = Membership.objects.get(user=team["dev"], organization=team["org"])
    with django_capture_on_commit_callbacks(execute=True):
        removed = team["owner_client"].delete(f"/v1/account/members/{member.pk}")
    assert removed.status_code == 200, removed.content
    body = removed.json()
    assert [k["key_id"] for k in body["revoked_keys"]] == [created.json()["key_id"]]
    assert body["revoked_keys"][0]["status"] == "revoked"
    assert body["transferred_keys"] == [] and body["member"]["id"] == member.pk
    assert _state(full) == "revoked"  # published to Redis after commit: the gateway refuses it
    assert _state(owners_key["key"]) == "ok"  # only the removed member's keys
    event = AuditEvent.objects.get(action="key.revoked", target_id=created.json()["key_id"])
    assert event.data["reason"] == "member.removed" and event.actor == team["owner"]
    assert not Membership.objects.filter(pk=member.pk).exists()


def test_removal_withdraws_every_pending_invitation_the_member_sent(team, make_user, jwt_client):
    org, admin = team["org"], team["admin"]
    # The admin invites another address of hers, as admin, then is removed.
    _inv, token = invitation_create(
        organization=org, email="her-other@example.test", role="admin", actor=admin, actor_role="admin"
    )
    other_org_inv, _ = invitation_create(
        organization=org,
        email="someone@example.test",
        role="developer",
        actor=team["owner"],
        actor_role="owner",
    )
    member = Membership.objects.get(user=admin, organization=org)
    removed = team["owner_client"].delete(f"/v1/account/members/{member.pk}")
    assert removed.status_code == 200, removed.content
    assert [i["email"] for i in removed.json()["withdrawn_invitations"]] == ["her-other@example.test"]
    her_other = make_user("her-other@example.test")
    comeback = jwt_client(her_other).post("/v1/account/invitations/accept", {"token": token}, format="json")
    assert comeback.status_code == 400 and slug_of(comeback) == "invitation-invalid"
    assert not Membership.objects.filter(organization=org, user=her_other).exists()
    assert Invitation.objects.get(pk=other_org_inv.pk).status == "pending"  # the owner's stays


def test_an_owner_transfers_the_keys_instead_of_revoking_them(team, django_capture_on_commit_callbacks):
    created = team["dev_client"].post("/v1/account/keys", {"name": "shared prod"}, format="json").json()
    member = Membership.objects.get(user=team["dev"], organization=team["org"])
    heir = Membership.objects.get(user=team["admin"], organization=team["org"])
    # Only an owner may transfer: an admin removing the developer cannot keep the keys alive.
    refused = team["admin_client"].delete(f"/v1/account/members/{member.pk}?transfer_keys_to={heir.pk}")
    assert refused.status_code == 403 and slug_of(refused) == "role-forbidden"
    assert Membership.objects.filter(pk=member.pk).exists()  # nothing happened
    with django_capture_on_commit_callbacks(execute=True):
        removed = team["owner_client"].delete(f"/v1/account/members/{member.pk}?transfer_keys_to={heir.pk}")
    assert removed.status_code == 200, removed.content
    assert [k["key_id"] for k in removed.json()["transferred_keys"]] == [created["key_id"]]
    assert removed.json()["revoked_keys"] == []
    assert removed.json()["transferred_keys"][0]["created_by"] == team["admin"].email
    assert _state(created["key"]) == "ok"
    event = AuditEvent.objects.get(action="key.transferred", target_id=created["key_id"])
    assert event.data == {"prefix": created["prefix"], "from": team["dev"].email, "to": team["admin"].email}


def test_transfer_target_must_be_another_member_who_manages_keys(team, make_member):
    member = Membership.objects.get(user=team["dev"], organization=team["org"])
    billing = Membership.objects.get(user=make_member(team["org"], "billing"), organization=team["org"])
    for target in (member.pk, billing.pk, 999999):
        response = team["owner_client"].delete(f"/v1/account/members/{member.pk}?transfer_keys_to={target}")
        assert response.status_code == 400, response.content
    assert Membership.objects.filter(pk=member.pk).exists()


def test_a_member_leaving_loses_keys_and_invitations_too(team, django_capture_on_commit_callbacks):
    created = team["admin_client"].post("/v1/account/keys", {"name": "mine"}, format="json").json()
    invitation, _token = invitation_create(
        organization=team["org"],
        email="pal@example.test",
        role="developer",
        actor=team["admin"],
        actor_role="admin",
    )
    with django_capture_on_commit_callbacks(execute=True):
        left = team["admin_client"].post("/v1/account/organization/leave")
    assert left.status_code == 200, left.content
    assert [k["key_id"] for k in left.json()["revoked_keys"]] == [created["key_id"]]
    assert [i["id"] for i in left.json()["withdrawn_invitations"]] == [invitation.pk]
    assert _state(created["key"]) == "revoked"
    assert AuditEvent.objects.filter(action="member.left", organization=team["org"]).exists()


def test_the_last_owner_cannot_leave(team):
    response = team["owner_client"].post("/v1/account/organization/leave")
    assert response.status_code == 409 and slug_of(response) == "last-owner"


def test_an_invitation_dies_with_its_senders_right_to_invite(team, make_user, jwt_client):
    """Demoted after sending: the invitation no longer brings anyone in (not even as developer)."""
    _inv, token = invitation_create(
        organization=team["org"],
        email="fresh@example.test",
        role="admin",
        actor=team["admin"],
        actor_role="admin",
    )
    member = Membership.objects.get(user=team["admin"], organization=team["org"])
    demoted = team["owner_client"].patch(
        f"/v1/account/members/{member.pk}", {"role": "developer"}, format="json"
    )
    assert demoted.status_code == 200
    fresh = make_user("fresh@example.test")
    response = jwt_client(fresh).post("/v1/account/invitations/accept", {"token": token}, format="json")
    assert response.status_code == 400 and slug_of(response) == "invitation-invalid"


def test_an_invitation_is_accepted_by_its_address_once_before_expiry(team, make_user, jwt_client):
    org, owner = team["org"], team["owner"]
    _inv, token = invitation_create(
        organization=org, email="one@example.test", role="developer", actor=owner, actor_role="owner"
    )
    other = make_user("two@example.test")
    assert (
        jwt_client(other).post("/v1/account/invitations/accept", {"token": token}, format="json").status_code
        == 400
    )
    one = make_user("one@example.test")
    assert (
        jwt_client(one).post("/v1/account/invitations/accept", {"token": token}, format="json").status_code
        == 201
    )
    assert Membership.objects.filter(organization=org, user=one).exists()
    Membership.objects.filter(organization=org, user=one).delete()
    assert (
        jwt_client(one).post("/v1/account/invitations/accept", {"token": token}, format="json").status_code
        == 400
    )
    expired, expired_token = invitation_create(
        organization=org, email="late@example.test", role="developer", actor=owner, actor_role="owner"
    )
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    late = make_user("late@example.test")
    response = jwt_client(late).post(
        "/v1/account/invitations/accept", {"token": expired_token}, format="json"
    )
    assert response.status_code == 400


def test_removal_is_one_transaction(team, monkeypatch):
    """A failure after the keys were revoked leaves everything as it was: keys, invitations, member."""
    from accounts.services import memberships

    created = team["dev_client"].post("/v1/account/keys", {"name": "k"}, format="json").json()
    member = Membership.objects.get(user=team["dev"], organization=team["org"])

    def boom(**_kwargs):
        raise RuntimeError("mail server exploded")

    monkeypatch.setattr(memberships, "_withdraw_invitations_sent_by", boom)
    with pytest.raises(RuntimeError):
        memberships.membership_remove(membership=member, actor=team["owner"], actor_role="owner")
    assert ApiKey.objects.get(key_id=created["key_id"]).revoked_at is None
    assert Membership.objects.filter(pk=member.pk).exists()


def test_invitation_email_names_a_verified_inviter(team, django_capture_on_commit_callbacks):
    mail.outbox.clear()
    team["owner_client"].post("/v1/account/invitations", {"email": "x@example.test"}, format="json")
    assert re.search(r"verified Candlestack user", mail.outbox[-1].body)
