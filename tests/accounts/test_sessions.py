"""Sessions that can end (issue 14, OWASP API2): logout, logout everywhere, refresh rotation with reuse
detection and an atomic redeem, the absolute session lifetime, and access tokens of ended sessions."""

from __future__ import annotations

import threading
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Session, User
from accounts.services.sessions import session_refresh
from apiplatform.problems import ProblemError

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"


def slug_of(response) -> str:
    return response.json()["type"].rsplit("/", 1)[-1]


def log_in(email: str) -> dict:
    response = APIClient().post("/v1/account/token", {"email": email, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def refresh(token: str):
    return APIClient().post("/v1/account/token/refresh", {"refresh": token}, format="json")


def me(access: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get("/v1/account/me")


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_logout_ends_the_session_its_refresh_token_and_its_access_tokens(make_user):
    make_user("out@example.test")
    pair = log_in("out@example.test")
    other = log_in("out@example.test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
    assert client.post("/v1/account/logout").status_code == 204
    assert me(pair["access"]).status_code == 401  # the access token died with its session
    ended = refresh(pair["refresh"])
    assert ended.status_code == 401 and slug_of(ended) == "session-ended"
    assert ended["Content-Type"].startswith("application/problem+json")
    # Another session of the same user is untouched.
    assert me(other["access"]).status_code == 200
    assert refresh(other["refresh"]).status_code == 200


def test_logout_everywhere_ends_every_session_of_the_user_only(make_user):
    make_user("all@example.test")
    make_user("bystander@example.test")
    sessions = [log_in("all@example.test") for _ in range(3)]
    bystander = log_in("bystander@example.test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {sessions[0]['access']}")
    answer = client.post("/v1/account/logout/all")
    assert answer.status_code == 200 and answer.json() == {"sessions_ended": 3}
    for pair in sessions:
        assert me(pair["access"]).status_code == 401
        assert refresh(pair["refresh"]).status_code == 401
    assert me(bystander["access"]).status_code == 200


def test_reusing_a_refresh_token_ends_the_whole_family(make_user):
    make_user("reuse@example.test")
    first = log_in("reuse@example.test")
    second = refresh(first["refresh"]).json()
    third = refresh(second["refresh"]).json()
    assert me(third["access"]).status_code == 200
    # An attacker replays the first refresh token: the family ends, the legitimate holder's newest
    # refresh token and its access token stop working too.
    replay = refresh(first["refresh"])
    assert replay.status_code == 401 and slug_of(replay) == "session-ended"
    assert refresh(third["refresh"]).status_code == 401
    assert me(third["access"]).status_code == 401
    session = Session.objects.get()
    assert session.revoke_reason == Session.EndReason.REUSE


@pytest.mark.django_db(transaction=True)
def test_concurrent_redemptions_of_one_refresh_token_have_exactly_one_winner(make_user):
    make_user("race@example.test")
    token = log_in("race@example.test")["refresh"]
    contenders = 6
    barrier = threading.Barrier(contenders)
    outcomes: list[str] = []
    lock = threading.Lock()

    def redeem() -> None:
        try:
            barrier.wait(timeout=10)
            try:
                session_refresh(refresh=token)
                result = "won"
            except ProblemError as exc:
                result = exc.problem.slug
        finally:
            connection.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=redeem) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["session-ended"] * (contenders - 1) + ["won"]
    # The losers presented an already-redeemed token: reuse, so the family ended (no live token left).
    assert Session.objects.filter(revoked_at__isnull=True).count() == 0


def test_a_session_ends_after_its_absolute_lifetime_however_often_it_is_refreshed(make_user):
    make_user("long@example.test")
    pair = log_in("long@example.test")
    session = Session.objects.get()
    started = session.created_at
    assert session.expires_at == started + timedelta(days=settings.ACCOUNTS["SESSION_MAX_DAYS"])
    # Simulated time: the login was 30 days minus one hour ago, so one hour of the session is left.
    end = timezone.now() + timedelta(hours=1)
    Session.objects.filter(pk=session.pk).update(created_at=end - timedelta(days=30), expires_at=end)
    renewed = refresh(pair["refresh"])
    assert renewed.status_code == 200
    body = renewed.json()
    # Neither new token outlives the session: a refresh cannot extend it.
    assert claims(body["refresh"])["exp"] <= int(end.timestamp())
    assert claims(body["access"])["exp"] <= int(end.timestamp())
    assert body["access_expires_in"] <= 3600
    assert Session.objects.get().expires_at == end
    # The end passes: the refresh token is still within its own 7 days, the session is over.
    Session.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    over = refresh(body["refresh"])
    assert over.status_code == 401 and slug_of(over) == "session-ended"
    assert me(body["access"]).status_code == 401


def test_token_pair_says_when_the_session_ends(make_user):
    make_user("when@example.test")
    pair = log_in("when@example.test")
    session = Session.objects.get()
    assert pair["session_expires_at"].startswith(session.expires_at.strftime("%Y-%m-%dT%H:%M"))
    assert claims(pair["refresh"])["sid"] == claims(pair["access"])["sid"] == str(session.pk)


def test_refresh_token_of_a_deleted_user_is_a_401_problem(make_user):
    user = make_user("gone@example.test")
    pair = log_in("gone@example.test")
    User.objects.filter(pk=user.pk).delete()
    response = refresh(pair["refresh"])
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/problem+json")
    assert slug_of(response) == "session-ended"
    assert me(pair["access"]).status_code == 401


def test_refresh_token_of_a_deactivated_user_is_refused(make_user):
    user = make_user("inactive@example.test")
    pair = log_in("inactive@example.test")
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert refresh(pair["refresh"]).status_code == 401
    assert me(pair["access"]).status_code == 401


def test_tokens_without_a_session_are_refused(make_user):
    """Tokens minted the old way (simplejwt's RefreshToken, no ``sid``) cannot dodge revocation."""
    from rest_framework_simplejwt.tokens import RefreshToken

    user = make_user("legacy@example.test")
    legacy = RefreshToken.for_user(user)
    assert me(str(legacy.access_token)).status_code == 401
    response = refresh(str(legacy))
    assert response.status_code == 401 and slug_of(response) == "session-ended"


def test_garbage_and_access_tokens_are_not_refresh_tokens(make_user):
    make_user("garbage@example.test")
    pair = log_in("garbage@example.test")
    for token in ["not-a-jwt", pair["access"]]:
        response = refresh(token)
        assert response.status_code == 401 and slug_of(response) == "not-authenticated"
    assert refresh(pair["refresh"]).status_code == 200  # nothing above ended the session


def test_sessions_that_ended_long_ago_are_purged_daily(make_user):
    from accounts.tasks import purge_sessions

    make_user("purge@example.test")
    pairs = [log_in("purge@example.test") for _ in range(4)]
    ids = list(Session.objects.order_by("created_at").values_list("pk", flat=True))
    now = timezone.now()
    Session.objects.filter(pk=ids[0]).update(revoked_at=now - timedelta(days=31))  # ended long ago
    Session.objects.filter(pk=ids[1]).update(expires_at=now - timedelta(days=31))  # ran out long ago
    Session.objects.filter(pk=ids[2]).update(revoked_at=now - timedelta(days=1))  # ended recently: kept
    assert purge_sessions.apply().get() == {"deleted": 2}
    assert set(Session.objects.values_list("pk", flat=True)) == {ids[2], ids[3]}
    assert me(pairs[3]["access"]).status_code == 200


def test_an_operator_ends_sessions_from_the_admin(make_user):
    from django.test import Client

    make_user("stolen@example.test")
    stolen = log_in("stolen@example.test")
    operator = User.objects.create_superuser(email="ops@example.test", password="operator-password-1")
    client = Client()
    client.force_login(operator)
    listing = client.get("/admin/accounts/session/")
    assert listing.status_code == 200 and b"stolen@example.test" in listing.content
    assert stolen["refresh"].encode() not in listing.content
    session = Session.objects.get(user__email="stolen@example.test")
    detail = client.get(f"/admin/accounts/session/{session.pk}/change/")
    assert detail.status_code == 200 and session.refresh_jti.encode() not in detail.content
    client.post("/admin/accounts/session/", {"action": "end_sessions", "_selected_action": [str(session.pk)]})
    assert me(stolen["access"]).status_code == 401
    assert slug_of(refresh(stolen["refresh"])) == "session-ended"
    assert Session.objects.get(pk=session.pk).revoke_reason == Session.EndReason.OPERATOR
