"""Sign-up tells nobody whether an address is registered (the owner of the address gets an email
instead), and an address nobody verified is not held for ever: unverified sign-ups expire."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, Membership, Organization, User
from accounts.tasks import purge_unverified_signups

PASSWORD = "correct horse battery staple"
OTHER_PASSWORD = "another long passphrase"


def _signup(email: str, password: str = OTHER_PASSWORD, name: str = "Squat Co", ip: str = "192.0.2.10"):
    return APIClient(REMOTE_ADDR=ip).post(
        "/v1/account/signup",
        {"email": email, "password": password, "organization_name": name},
        format="json",
    )


def test_signup_answers_the_same_for_a_registered_address(make_user, django_capture_on_commit_callbacks):
    owner = make_user("taken@example.test", password=PASSWORD)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        taken = _signup("Taken@Example.test", ip="192.0.2.11")
        fresh = _signup("fresh@example.test", ip="192.0.2.12")
    assert taken.status_code == fresh.status_code == 202
    assert taken.json() == {**fresh.json(), "email": "taken@example.test"}
    assert set(taken.headers) == set(fresh.headers)
    # nothing changed for the registered address; its owner was told
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD) and not owner.check_password(OTHER_PASSWORD)
    assert User.objects.filter(email__iexact="taken@example.test").count() == 1
    assert not Organization.objects.filter(name="Squat Co", created_by=owner).exists()
    to_owner = [m for m in mail.outbox if m.to == ["taken@example.test"]]
    assert len(to_owner) == 1 and "tried to sign up" in to_owner[0].subject
    assert "Confirm your email address" not in to_owner[0].body  # no verification token for the squatter


def test_a_weak_password_is_refused_the_same_for_both(make_user):
    make_user("taken2@example.test")
    taken, fresh = _signup("taken2@example.test", "123", ip="192.0.2.13"), _signup("new2@example.test", "123")
    assert taken.status_code == fresh.status_code == 400
    assert taken.json()["errors"] == fresh.json()["errors"]


def test_a_squatted_unverified_address_is_freed_after_the_ttl(
    make_user, settings, django_capture_on_commit_callbacks
):
    squatter = make_user("victim@example.test", password=OTHER_PASSWORD, verified=False)
    squat_org = Organization.objects.create(name="Squat", slug="squat", created_by=squatter)
    Membership.objects.create(user=squatter, organization=squat_org, role="owner")
    # within the TTL the address stays with the squatter (and the answer is the same)
    assert _signup("victim@example.test", PASSWORD, "Mine", ip="192.0.2.14").status_code == 202
    assert User.objects.get(email="victim@example.test").pk == squatter.pk
    # past the TTL the unverified sign-up no longer holds the address
    ttl = settings.ACCOUNTS["UNVERIFIED_SIGNUP_TTL"]
    User.objects.filter(pk=squatter.pk).update(date_joined=timezone.now() - timedelta(seconds=ttl + 1))
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert _signup("victim@example.test", PASSWORD, "Mine", ip="192.0.2.15").status_code == 202
    owner = User.objects.get(email="victim@example.test")
    assert owner.pk != squatter.pk and owner.check_password(PASSWORD)
    assert not Organization.objects.filter(pk=squat_org.pk).exists()
    assert Organization.objects.filter(name="Mine", created_by=owner).exists()
    assert "Confirm your email address" in mail.outbox[-1].body  # the real owner gets the verification
    assert mail.outbox[-1].to == ["victim@example.test"]


def test_unverified_signups_expire(make_user, make_org, make_key, settings):
    ttl = settings.ACCOUNTS["UNVERIFIED_SIGNUP_TTL"]
    old = timezone.now() - timedelta(seconds=ttl + 60)
    stale = make_user(verified=False)
    stale_org = make_org(owner=stale)
    stale_key, _full = make_key(stale_org, environment="test", created_by=stale)
    fresh = make_user(verified=False)
    verified = make_user()
    User.objects.filter(pk__in=[stale.pk, verified.pk]).update(date_joined=old)
    assert purge_unverified_signups.delay().get() == 1
    assert not User.objects.filter(pk=stale.pk).exists()
    assert not Organization.objects.filter(pk=stale_org.pk).exists()
    assert not ApiKey.objects.filter(pk=stale_key.pk).exists()
    assert User.objects.filter(pk__in=[fresh.pk, verified.pk]).count() == 2


def test_the_purge_is_scheduled():
    from accounts.schedules import SCHEDULES

    assert "accounts.purge_unverified_signups" in {s.task for s in SCHEDULES}


@pytest.mark.django_db
def test_an_invitation_signup_still_answers_with_tokens(make_org, django_capture_on_commit_callbacks):
    from accounts.services.invitations import invitation_create

    from .conftest import owner_of

    org = make_org()
    _inv, token = invitation_create(
        organization=org,
        email="joiner@example.test",
        role="developer",
        actor=owner_of(org),
        actor_role="owner",
    )
    response = APIClient().post(
        "/v1/account/signup",
        {"email": "joiner@example.test", "password": PASSWORD, "invitation_token": token},
        format="json",
    )
    assert response.status_code == 201 and response.json()["tokens"]["access"]


def test_keys_of_a_purged_signup_stop_working_at_once(
    make_user, make_org, make_key, settings, django_capture_on_commit_callbacks
):
    """The organization's keys are deleted with it: the key cache learns it (no 5-minute tail)."""
    from accounts import keycache, keyformat, keys

    stale = make_user(verified=False)
    api_key, full = make_key(make_org(owner=stale), environment="test", created_by=stale)
    assert keys.verify(keyformat.parse_key(full), None)[0] == "ok"  # cached in Redis and locally
    ttl = settings.ACCOUNTS["UNVERIFIED_SIGNUP_TTL"]
    User.objects.filter(pk=stale.pk).update(date_joined=timezone.now() - timedelta(seconds=ttl + 1))
    with django_capture_on_commit_callbacks(execute=True):
        assert purge_unverified_signups.delay().get() == 1
    keycache.clear_local_cache()  # another process: its local entry has expired
    assert keys.verify(keyformat.parse_key(full), None)[0] != "ok"
    assert not ApiKey.objects.filter(pk=api_key.pk).exists()
