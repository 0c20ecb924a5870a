"""Fixtures for the portal's tests: plans, users with organizations and roles, logged-in clients."""

from __future__ import annotations

import itertools

import pytest
from django.test import Client

from accounts.models import Organization, User
from accounts.services.memberships import membership_add
from accounts.services.organizations import organization_create
from accounts.services.users import email_verification_token, user_verify_email
from billing.models import Plan
from billing.plans import DEFAULT_PLANS

_seq = itertools.count(1)
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _celery_eager(monkeypatch):
    """The verification email's task runs in the test's process (mail.outbox)."""
    from apiplatform.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)


@pytest.fixture
def plans(db) -> dict[str, Plan]:
    for name, fields in DEFAULT_PLANS.items():
        Plan.objects.get_or_create(name=name, defaults=fields)
    return {p.name: p for p in Plan.objects.all()}


@pytest.fixture
def make_user(db):
    """A user whose address is verified through the verification service (inviting and live keys
    need it) unless ``verified=False``."""

    def make(email: str | None = None, *, verified: bool = True) -> User:
        user = User.objects.create_user(email=email or f"portal{next(_seq)}@example.test", password=PASSWORD)
        if verified:
            user = user_verify_email(token=email_verification_token(user=user))
        return user

    return make


@pytest.fixture
def make_org(db, make_user, plans):
    def make(name: str | None = None, owner: User | None = None) -> Organization:
        return organization_create(name=name or f"Portal Org {next(_seq)}", owner=owner or make_user())

    return make


@pytest.fixture
def member(make_user):
    def make(organization: Organization, role: str, user: User | None = None) -> User:
        user = user or make_user()
        membership_add(organization=organization, user=user, role=role, actor=None)
        return user

    return make


@pytest.fixture
def login():
    """A test client logged in (session) as ``user``; ``csrf=True`` enforces CSRF like a browser."""

    def make(user: User, *, csrf: bool = False) -> Client:
        client = Client(enforce_csrf_checks=csrf)
        client.force_login(user)
        return client

    return make
