"""Fixtures for the accounts tests: organizations, members with roles, JWT clients, API keys."""

from __future__ import annotations

import itertools

import pytest
from rest_framework.test import APIClient

from accounts.models import Membership, Organization, User
from accounts.services.api_keys import api_key_create
from accounts.services.memberships import membership_add
from accounts.services.organizations import organization_create
from accounts.services.sessions import session_start
from accounts.services.users import email_verification_token, user_verify_email

_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2 at production strength costs ~0.3 s per user on this machine; tests need many users."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _celery_eager(monkeypatch):
    """Tasks queued by the accounts code (the verification email) run in the test's process, so a
    test sees their effect and no message is left in the broker."""
    from apiplatform.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)


def verify_email(user: User) -> User:
    """Verify ``user``'s address the way the emailed link does (the verification service)."""
    return user_verify_email(token=email_verification_token(user=user))


@pytest.fixture
def make_user(db):
    """A user; verified (through the verification service) unless ``verified=False``: inviting and
    live keys need a verified address."""

    def make(
        email: str | None = None,
        password: str = "correct horse battery staple",  # noqa: S107
        *,
        verified: bool = True,
    ) -> User:
        user = User.objects.create_user(email=email or f"user{next(_seq)}@example.test", password=password)
        return verify_email(user) if verified else user

    return make


@pytest.fixture
def make_org(db, make_user):
    def make(name: str | None = None, owner: User | None = None) -> Organization:
        owner = owner or make_user()
        return organization_create(name=name or f"Org {next(_seq)}", owner=owner)

    return make


@pytest.fixture
def make_member(db, make_user):
    def make(organization: Organization, role: str, user: User | None = None) -> User:
        user = user or make_user()
        membership_add(organization=organization, user=user, role=role, actor=None)
        return user

    return make


def owner_of(organization: Organization) -> User:
    return (
        Membership.objects.filter(organization=organization, role="owner").select_related("user").first().user
    )


@pytest.fixture
def jwt_client():
    def make(user: User, organization: Organization | None = None) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {session_start(user=user).access}")
        if organization is not None:
            client.credentials(
                HTTP_AUTHORIZATION=f"Bearer {session_start(user=user).access}",
                HTTP_X_ORGANIZATION=organization.slug,
            )
        return client

    return make


@pytest.fixture
def make_key(db):
    def make(organization: Organization, **kwargs):
        kwargs.setdefault("name", "test key")
        return api_key_create(organization=organization, **kwargs)

    return make
