"""Brute force where it was still open (issue 14, API2): the per-account login limit counts per
(account, client) so a stranger cannot lock the owner out, a per-account ceiling is the backstop, and
the admin's login form is limited with the same budgets."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"


@pytest.fixture
def limits(settings):
    def set_limits(**rates: str) -> None:
        settings.ACCOUNTS = {**settings.ACCOUNTS, **rates}

    return set_limits


def api_login(email: str, password: str, ip: str) -> int:
    client = APIClient(REMOTE_ADDR=ip)
    return client.post("/v1/account/token", {"email": email, "password": password}, format="json").status_code


def admin_login(email: str, password: str, ip: str):
    return Client(REMOTE_ADDR=ip).post(
        "/admin/login/?next=/admin/", {"username": email, "password": password}
    )


def test_a_stranger_using_up_the_limit_does_not_lock_the_owner_out(make_user, limits):
    limits(RATE_LOGIN_ACCOUNT="3/m", RATE_LOGIN_ACCOUNT_CEILING="20/m")
    make_user("owner@example.test")
    stranger = [api_login("owner@example.test", f"guess {i}", "203.0.113.7") for i in range(5)]
    assert stranger == [401, 401, 401, 429, 429]
    assert api_login("owner@example.test", PASSWORD, "198.51.100.20") == 200


def test_one_client_alone_never_reaches_the_per_account_ceiling(make_user, limits):
    limits(RATE_LOGIN_ACCOUNT="2/m", RATE_LOGIN_ACCOUNT_CEILING="3/m")
    make_user("target@example.test")
    for i in range(10):  # refused by its own limit from the 3rd on: those do not count at the ceiling
        api_login("target@example.test", f"guess {i}", "203.0.113.8")
    assert api_login("target@example.test", PASSWORD, "198.51.100.21") == 200


def test_guessing_one_account_from_many_clients_hits_the_ceiling(make_user, limits):
    limits(RATE_LOGIN_ACCOUNT="2/m", RATE_LOGIN_ACCOUNT_CEILING="5/m")
    make_user("popular@example.test")
    statuses = [
        api_login("popular@example.test", f"guess {ip}-{i}", f"203.0.113.{ip}")
        for ip in range(1, 4)
        for i in range(2)
    ]
    assert statuses == [401, 401, 401, 401, 401, 429]  # the 6th guess, from a 3rd client: ceiling
    assert api_login("popular@example.test", PASSWORD, "198.51.100.22") == 429  # the backstop's price
    assert api_login("someone-else@example.test", "x", "198.51.100.22") == 401  # per account only


def test_admin_login_is_rate_limited(make_user, limits):
    limits(RATE_LOGIN_ACCOUNT="3/m", RATE_LOGIN_IP="30/m")
    make_user("staff@example.test")
    answers = [admin_login("staff@example.test", f"guess {i}", "203.0.113.9") for i in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]  # 200: the form again, with an error
    assert int(answers[-1]["Retry-After"]) >= 1
    # A page load (GET) is not an attempt.
    assert Client(REMOTE_ADDR="203.0.113.9").get("/admin/login/").status_code == 200


def test_admin_login_is_limited_per_client_too(make_user, limits):
    limits(RATE_LOGIN_IP="4/m")
    statuses = [admin_login(f"user{i}@example.test", "x", "203.0.113.10").status_code for i in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]


def test_admin_login_still_logs_staff_in(make_user):
    user = make_user("boss@example.test")
    user.is_staff = True
    user.is_superuser = True
    user.save()
    response = admin_login("boss@example.test", PASSWORD, "198.51.100.23")
    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_admin_and_api_logins_share_the_budget_of_an_account(make_user, limits):
    limits(RATE_LOGIN_ACCOUNT="3/m")
    make_user("both@example.test")
    assert admin_login("both@example.test", "guess 1", "203.0.113.11").status_code == 200
    assert admin_login("both@example.test", "guess 2", "203.0.113.11").status_code == 200
    assert api_login("both@example.test", "guess 3", "203.0.113.11") == 401
    assert api_login("both@example.test", PASSWORD, "203.0.113.11") == 429
