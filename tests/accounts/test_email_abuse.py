"""The platform's own emails cannot be used against its users: a verified address before inviting
or creating a live key, invitation rate limits, organization names that are plain text."""

from __future__ import annotations

import pytest
from django.core import mail
from rest_framework.test import APIClient

from accounts.models import Invitation, Organization
from accounts.names import inert_name
from accounts.services.invitations import invitation_create
from accounts.services.organizations import organization_create

from .conftest import owner_of, verify_email

PASSWORD = "correct horse battery staple"


def slug_of(response) -> str:
    return response.json()["type"].rsplit("/", 1)[-1]


@pytest.fixture
def unverified_owner(make_user, make_org, jwt_client):
    user = make_user(verified=False)
    org = make_org(owner=user)
    return user, org, jwt_client(user)


def test_inviting_needs_a_verified_email(unverified_owner):
    user, org, client = unverified_owner
    refused = client.post("/v1/account/invitations", {"email": "victim@example.test"}, format="json")
    assert refused.status_code == 403 and slug_of(refused) == "email-unverified"
    assert not Invitation.objects.filter(organization=org).exists() and mail.outbox == []
    verify_email(user)
    allowed = client.post("/v1/account/invitations", {"email": "victim@example.test"}, format="json")
    assert allowed.status_code == 201, allowed.content


def test_live_keys_need_a_verified_email_test_keys_do_not(unverified_owner):
    user, _org, client = unverified_owner
    live = client.post("/v1/account/keys", {"name": "prod"}, format="json")
    assert live.status_code == 403 and slug_of(live) == "email-unverified"
    test = client.post("/v1/account/keys", {"name": "try", "environment": "test"}, format="json")
    assert test.status_code == 201 and test.json()["key"].startswith("cs_test_")
    verify_email(user)
    assert client.post("/v1/account/keys", {"name": "prod"}, format="json").status_code == 201


def test_invitations_are_limited_per_organization(make_org, make_member, jwt_client, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "RATE_INVITE_ORGANIZATION": "3/h", "RATE_INVITE_USER": "100/h"}
    org = make_org()
    admins = [jwt_client(make_member(org, "admin")) for _ in range(2)]
    codes = [
        admins[i % 2]
        .post("/v1/account/invitations", {"email": f"p{i}@example.test"}, format="json")
        .status_code
        for i in range(5)
    ]
    assert codes == [201, 201, 201, 429, 429]
    limited = admins[0].post("/v1/account/invitations", {"email": "late@example.test"}, format="json")
    assert slug_of(limited) == "rate-limited" and int(limited["Retry-After"]) >= 1
    assert Invitation.objects.filter(organization=org).count() == 3


def test_invitations_are_limited_per_inviting_user(make_org, jwt_client, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "RATE_INVITE_ORGANIZATION": "100/h", "RATE_INVITE_USER": "2/h"}
    org = make_org()
    owner = owner_of(org)
    second_org = organization_create(name="Second", owner=owner)
    client = jwt_client(owner)
    codes = [
        client.post(
            "/v1/account/invitations",
            {"email": f"q{i}@example.test"},
            format="json",
            HTTP_X_ORGANIZATION=(org if i % 2 else second_org).slug,
        ).status_code
        for i in range(4)
    ]
    assert codes == [201, 201, 429, 429]  # the user's budget spans their organizations


@pytest.mark.parametrize(
    "name",
    [
        "Acme\r\nBcc: everyone@example.test",
        "Acme\nClick https://evil.example/login",
        "Acme\u202eevil",  # right-to-left override
        "Acme\x00",
        "Visit evil.example now",
        "www.evil",
        "Support https://login.evil.example",
        "mailto:help@evil.example",
    ],
)
def test_organization_names_are_plain_text(make_org, jwt_client, name):
    org = make_org(name="Acme")
    client = jwt_client(owner_of(org))
    renamed = client.patch("/v1/account/organization", {"name": name}, format="json")
    assert renamed.status_code == 400, renamed.content
    assert renamed["Content-Type"].startswith("application/problem+json")
    assert Organization.objects.get(pk=org.pk).name == "Acme"
    signup = APIClient().post(
        "/v1/account/signup",
        {"email": "new@example.test", "password": PASSWORD, "organization_name": name},
        format="json",
    )
    assert signup.status_code == 400, signup.content


@pytest.mark.parametrize("name", ["Acme Inc.", "J. P. Morgan & Co", "Café Zürich", "Data-Team #2 (EU)"])
def test_ordinary_organization_names_are_accepted(make_org, jwt_client, name):
    client = jwt_client(owner_of(make_org(name="Before")))
    response = client.patch("/v1/account/organization", {"name": name}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["organization"]["name"] == name


def test_a_stored_name_with_a_url_and_line_break_is_inert_in_the_email(make_org, jwt_client):
    """A name stored before the rule (or by an operator) is shown as inert text, and the email is sent."""
    org = make_org()
    Organization.objects.filter(pk=org.pk).update(name="Acme\r\nUrgent: verify at https://evil.example/x")
    mail.outbox.clear()
    response = jwt_client(owner_of(org)).post(
        "/v1/account/invitations", {"email": "victim@example.test"}, format="json"
    )
    assert response.status_code == 201, response.content
    message = mail.outbox[-1]
    assert "\n" not in message.subject and "\r" not in message.subject
    for text in (message.subject, message.body):
        assert "https://evil.example" not in text and "evil.example" not in text
    assert "evil[.]example" in message.body
    assert "Acme Urgent" in message.subject


def test_inert_name_defangs_links_and_breaks():
    assert inert_name("Acme\nhttps://a.example/x") == "Acme https[:]//a[.]example/x"
    assert inert_name("Plain Name") == "Plain Name"


def test_free_organizations_per_user_are_capped(make_user, settings):
    from rest_framework.exceptions import ValidationError

    settings.ACCOUNTS = {**settings.ACCOUNTS, "MAX_FREE_ORGANIZATIONS_PER_USER": 2}
    user = make_user()
    organization_create(name="One", owner=user)
    organization_create(name="Two", owner=user)
    with pytest.raises(ValidationError):
        organization_create(name="Three", owner=user)
    assert Organization.objects.filter(created_by=user).count() == 2


def test_invitation_service_refuses_unverified_inviters(unverified_owner):
    from apiplatform.problems import ProblemError

    user, org, _client = unverified_owner
    with pytest.raises(ProblemError) as exc:
        invitation_create(
            organization=org, email="x@example.test", role="developer", actor=user, actor_role="owner"
        )
    assert exc.value.problem.slug == "email-unverified"
