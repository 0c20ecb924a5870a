"""Schemathesis, with ALL its checks, over every public and management operation of the served schema.

The OpenAPI document is the one the app serves at /v1/schema/. Every operation gets positive and
negative cases (hypothesis, derandomized: the same cases on every run, so CI is deterministic), sent
in-process to the Django WSGI app against the real PostgreSQL and Redis, authenticated as a customer
would be (an API key on the public API, an owner's access token on the management API). Every
registered check runs on every answer, positive and negative data acceptance included. Failures are
collected, not stopped at: the message lists, per operation and check, how often it failed and the
smallest example (a curl command and the answer)."""

from __future__ import annotations

import contextlib
import io
import itertools
import re
from datetime import UTC, timedelta
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks as st_checks
from schemathesis.core.failures import FailureGroup

from accounts.models import Membership, Session, User
from accounts.services.invitations import invitation_create
from accounts.services.organizations import organization_create
from accounts.services.passwords import password_reset_token
from accounts.services.users import email_verification_token, user_verify_email
from marketdata.api.views import INDICATOR_VIEWS
from tests.contract.conftest import MANAGEMENT, PUBLIC, Platform, api_group, served_schema

# --- values no generator can produce ------------------------------------------------------------------
# A schema can say what a value looks like, not which values exist right now or what time it is. In
# POSITIVE cases only (negative cases keep what was generated, and must still be refused), these
# parameters are replaced with a real value before the request is sent; every check then runs as
# usual. This table is the only place where generated data is changed: (operation, parameter) -> why.
_CURSOR = "an opaque paging cursor: only one issued by this API (for the same query) is valid"
CURSOR_OPERATIONS = [
    "GET /v1/coins",
    "GET /v1/markets",
    "GET /v1/rankings",
    "GET /v1/screener",
    "GET /v1/coins/{coin_id}/candles",
    "GET /v1/coins/{coin_id}/candles.csv",
    "GET /v1/candles",
    "GET /v1/candles.csv",
    "GET /v1/account/audit-events",
    *(f"GET /v1/coins/{{coin_id}}/indicators/{name}" for name in INDICATOR_VIEWS),
]
SUPPLIED: dict[tuple[str, str], str] = {
    **{(operation, "query.cursor"): _CURSOR for operation in CURSOR_OPERATIONS},
    ("GET /v1/account/verify-email", "query.token"): "an email-verification token: signed by the server",
    ("POST /v1/account/verify-email", "body.token"): "an email-verification token: signed by the server",
    ("POST /v1/account/invitations/accept", "body.token"): (
        "an invitation token: only one emailed for a pending invitation to the caller's address is valid"
    ),
    ("POST /v1/account/signup", "body.email"): (
        "an address without an account: one already signed up (e.g. the schema's example, sent again) "
        "answers the same 202 but creates nothing, so it becomes a new address"
    ),
    ("POST /v1/account/signup", "body.invitation_token"): (
        "an invitation token: only one emailed for a pending invitation to the signing-up address is valid"
    ),
    ("POST /v1/account/billing/checkout", "body.plan"): (
        "a paid plan on sale (developer, pro): any other name is refused (400)"
    ),
    ("GET /v1/account/billing/invoices", "query.starting_after"): (
        "an invoice id of the organization's: an opaque cursor (the organization has none)"
    ),
    ("POST /v1/account/keys", "body.allowed_ips"): (
        "IP addresses or CIDR ranges: JSON Schema has no format for a CIDR range, so random strings "
        "are refused (400); a documented range is sent instead"
    ),
    ("POST /v1/account/keys", "body.expires_at"): "must be in the future: a past time becomes now + 30 days",
    ("POST /v1/account/webhook-endpoints", "body.url"): (
        "a webhook URL this platform may call: https to a host that resolves to a public address (SSRF "
        "rules, docs/alerts.md); generated strings and hosts resolve to nothing here, so a loopback URL "
        "(allowed by ALERTS_WEBHOOK_ALLOW_LOOPBACK in this test) is sent instead"
    ),
    ("PATCH /v1/account/webhook-endpoints/{endpoint_id}", "body.url"): (
        "as body.url of POST /v1/account/webhook-endpoints"
    ),
    ("POST /v1/account/alerts", "body.webhook_url"): "as body.url of POST /v1/account/webhook-endpoints",
    ("POST /v1/account/alerts", "body.coin"): (
        "a coin that exists (an unknown id is a 400 naming coin), and exactly one of endpoint_id (an "
        "endpoint of the organization's) and webhook_url (a webhook URL, as above): the condition needs "
        "nothing here, its schema is a oneOf by type with each kind's members"
    ),
    ("POST /v1/account/password", "body.current_password"): "the caller's password: only that one is right",
    ("POST /v1/account/password/reset/confirm", "body.token"): (
        "a password-reset token: emailed, signed by the server for the account's current password"
    ),
    ("POST /v1/account/keys/{key_id}/rotate", "body.old_key_expires_at"): (
        "must be between now and now + ROTATION_MAX_OVERLAP_SECONDS: any other time becomes now + 1 day"
    ),
}

st_checks.load_all_checks()
ALL_CHECKS = st_checks.CHECKS.get_all()
MAX_EXAMPLES = 12  # per operation and generation mode: 35 operations x 2 modes in about a minute
POSITIVE = schemathesis.GenerationMode.POSITIVE
MODES = (POSITIVE, schemathesis.GenerationMode.NEGATIVE)
METHODS = {"get", "put", "post", "patch", "delete"}


class Supplier:
    """Makes the values of :data:`SUPPLIED` (real cursors, fresh tokens, future times)."""

    def __init__(self, platform: Platform, headers: dict[str, str]):
        self.platform = platform
        self.headers = headers
        self.inviter: User | None = None
        self._seq = itertools.count(1)

    def for_operation(self, label: str):
        """``prepare(case)`` for the positive cases of ``label``: supplies the values, and undoes what the
        previous case left behind that would change the next answers."""

        def prepare(case) -> None:
            self.restore()
            self.supply(label, case)

        return prepare

    def restore(self) -> None:
        """An accepted invitation made the owner a member of an inviting organization: with several
        organizations every organization-scoped request needs ``X-Organization`` (400 otherwise). The
        owner leaves them again (the test's own clean-up, not an operation under test)."""
        if self.inviter is not None:
            Membership.objects.filter(
                user=self.platform.owner, organization__memberships__user=self.inviter
            ).delete()
        # A password change or reset, a logout (everywhere) ended the owner's sessions, the one whose
        # access token the requests carry included, and changed the password: undo both.
        Session.objects.filter(user=self.platform.owner).update(revoked_at=None, revoke_reason="")
        owner = User.objects.get(pk=self.platform.owner.pk)
        if not owner.check_password(self.platform.password):
            owner.set_password(self.platform.password)
            owner.save(update_fields=["password"])

    def supply(self, label: str, case) -> None:
        for (operation, where), _why in SUPPLIED.items():
            if operation != label:
                continue
            location, name = where.split(".")
            container = case.query if location == "query" else case.body
            if isinstance(container, dict) and name in container:
                getattr(self, f"_{name}")(case, container)

    def _cursor(self, case, query: dict) -> None:
        """The cursor of the next page of the same query (the first page, fetched now); no cursor if
        that query has a single page."""
        first_query = {k: v for k, v in query.items() if k != "cursor"}
        first = case.derive(query=first_query, keep_auth=True).call(headers=self.headers)
        cursor = None
        if first.status_code == 200:
            link = first.headers.get("link") or first.headers.get("Link")
            link = link[0] if isinstance(link, list) else link
            if link and (match := re.search(r"[?&]cursor=([^&>]+)", link)):
                cursor = match.group(1)
        if cursor:
            query["cursor"] = cursor
        else:
            del query["cursor"]

    def _token(self, case, body_or_query: dict) -> None:
        if "invitations/accept" in case.path:  # an invitation to the caller (the platform's owner)
            body_or_query["token"] = self._invitation(self.platform.owner.email)
        elif "password/reset" in case.path:
            owner = User.objects.get(pk=self.platform.owner.pk)
            body_or_query["token"] = password_reset_token(user=owner)
        else:
            body_or_query["token"] = email_verification_token(user=self.platform.owner)

    def _url(self, case, body: dict) -> None:
        body["url"] = "http://127.0.0.1:9/hook"

    def _webhook_url(self, case, body: dict) -> None:
        body["webhook_url"] = "http://127.0.0.1:9/hook"

    def _coin(self, case, body: dict) -> None:
        body["coin"] = "bitcoin"
        body.pop("endpoint_id", None)
        body["webhook_url"] = "http://127.0.0.1:9/hook"

    def _current_password(self, case, body: dict) -> None:
        body["current_password"] = self.platform.password

    def _email(self, case, body: dict) -> None:
        email = body["email"]
        if isinstance(email, str) and User.objects.filter(email__iexact=email.strip()).exists():
            body["email"] = f"new-{next(self._seq)}@example.test"

    def _invitation_token(self, case, body: dict) -> None:
        email = body.get("email")
        if isinstance(email, str) and email.strip():
            body["invitation_token"] = self._invitation(email)

    def _invitation(self, email: str) -> str:
        """The token of a fresh invitation to ``email``, from a new organization (one that ``email``
        cannot already belong to)."""
        if self.inviter is None:
            inviter = User.objects.create_user(email="inviter@example.test", password="x" * 20)
            # inviting needs a verified address: verified the way the emailed link does it
            self.inviter = user_verify_email(token=email_verification_token(user=inviter))
        organization = organization_create(name=f"Inviting Org {next(self._seq)}", owner=self.inviter)
        _invitation, token = invitation_create(
            organization=organization, email=email, role="developer", actor=self.inviter, actor_role="owner"
        )
        return token

    def _future(self, value: Any) -> Any:
        parsed = parse_datetime(value.upper()) if isinstance(value, str) else None
        if parsed is None:
            return value
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, UTC)
        if parsed > timezone.now() + timedelta(minutes=1):
            return value
        return (timezone.now() + timedelta(days=30)).isoformat()

    def _allowed_ips(self, case, body: dict) -> None:
        body["allowed_ips"] = ["203.0.113.0/24"]

    def _plan(self, case, body: dict) -> None:
        body["plan"] = "developer"

    def _starting_after(self, case, query: dict) -> None:
        del query["starting_after"]

    def _expires_at(self, case, body: dict) -> None:
        body["expires_at"] = self._future(body["expires_at"])

    def _old_key_expires_at(self, case, body: dict) -> None:
        value = body["old_key_expires_at"]
        parsed = parse_datetime(value.upper()) if isinstance(value, str) else None
        if parsed is None:
            return
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, UTC)
        now = timezone.now()
        if not now + timedelta(minutes=1) < parsed < now + timedelta(days=29):
            body["old_key_expires_at"] = (now + timedelta(days=1)).isoformat()


@contextlib.contextmanager
def keep_db_connection():
    """Like Django's test client: a WSGI request must not close the test transaction's connection.
    (Django's test client reconnects these handlers after each of its requests: enter this after.)"""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fast_accounts(settings, monkeypatch):
    """Sign-ups hash passwords (PBKDF2 at full strength costs ~0.3 s each) and queue verification
    emails: a cheap hasher, and the tasks run in the test's process (no message left in the broker)."""
    from apiplatform.celery import app

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    # The supplier's one inviter creates an organization per invitation token (test set-up, not an
    # operation under test): lift the per-user cap of organizations for it.
    settings.ACCOUNTS = {**settings.ACCOUNTS, "MAX_FREE_ORGANIZATIONS_PER_USER": 10_000}


def run_schemathesis(
    group: str, headers: dict[str, str], platform: Platform
) -> tuple[dict[tuple[str, str], list[str]], dict]:
    """Run every operation of ``group``; returns {(operation, check title): examples} and the statuses
    seen per operation."""
    served = served_schema()
    labels = {f"{m.upper()} {path}" for path, ops in served["paths"].items() for m in ops if m in METHODS}
    stale = sorted({operation for operation, _ in SUPPLIED} - labels)
    assert not stale, f"SUPPLIED names operations the schema does not have: {stale}"
    supplier = Supplier(platform, headers)
    schema = schemathesis.openapi.from_dict(served)
    schema.app = get_wsgi_application()
    failures: dict[tuple[str, str], list[str]] = {}
    statuses: dict[str, set[int]] = {}
    operations = [r.ok() for r in schema.get_all_operations() if api_group(r.ok().path) == group]
    assert operations, f"the schema has no {group} operation"
    with keep_db_connection():
        for operation in operations:
            label = f"{operation.method.upper()} {operation.path}"
            seen = statuses.setdefault(label, set())
            for mode in MODES:
                prepare = supplier.for_operation(label) if mode is POSITIVE else authenticated(headers)

                def on_failure(case, response, exc, label=label):
                    record(failures, label, case, response, exc, headers)

                exercise(operation, mode, headers, seen, prepare, on_failure)
            supplier.restore()
    return failures, statuses


def authenticated(headers: dict[str, str]):
    """``prepare(case)`` for negative cases: the case carries the credentials every request is sent
    with. A negative case that drops ``Authorization`` is sent with it anyway (the run authenticates
    every call), so without this its checks would judge a request that was never sent (e.g. "schema-
    violating request accepted" for one whose only other fault was not on the wire)."""

    def prepare(case) -> None:
        if case.headers is None:
            case.headers = {}
        present = {name.lower() for name in case.headers}
        for name, value in headers.items():
            if name.lower() not in present:
                case.headers[name] = value

    return prepare


def exercise(operation, mode, headers: dict[str, str], seen: set[int], prepare, on_failure) -> None:
    """``MAX_EXAMPLES`` derandomized cases of ``mode`` for ``operation``, every check on every answer;
    ``prepare(case)`` (positive cases) supplies the values of :data:`SUPPLIED` first."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # failures are collected, not raised: nothing to shrink
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        if prepare is not None:
            prepare(case)
        response = case.call(headers=headers)
        seen.add(response.status_code)
        try:
            case.validate_response(
                response, headers=headers, checks=ALL_CHECKS, transport_kwargs={"headers": headers}
            )
        except (AssertionError, FailureGroup) as exc:  # a failed check, or several (a BaseExceptionGroup)
            on_failure(case, response, exc)

    run()


def record(failures: dict, label: str, case, response, exc: Exception, headers: dict[str, str]) -> None:
    for failure in getattr(exc, "exceptions", None) or [exc]:
        title = getattr(failure, "title", type(failure).__name__)
        message = getattr(failure, "message", str(failure))
        body = response.text[:300].replace("\n", " ")
        example = (
            f"{case.as_curl_command(headers)}\n"
            f"      -> {response.status_code} {response.headers.get('content-type')}: {body}\n"
            f"      {message.strip()[:400]}"
        )
        failures.setdefault((label, title), []).append(example)


def report(failures: dict[tuple[str, str], list[str]]) -> str:
    lines = []
    for (label, title), examples in sorted(failures.items()):
        smallest = min(examples, key=len)
        lines.append(f"{label} :: {title} ({len(examples)}x)\n    {smallest}")
    return "\n".join(lines)


def test_public_api_passes_every_schemathesis_check(platform_in_test_transaction: Platform, fast_accounts):
    failures, statuses = run_schemathesis(
        PUBLIC,
        # identity: schemathesis' transport hands the raw body to its checks, and a list as long as
        # /v1/markets' (with the snapshot details) is gzip-compressed when the client accepts it
        {"Authorization": f"Bearer {platform_in_test_transaction.api_key}", "Accept-Encoding": "identity"},
        platform_in_test_transaction,
    )
    if failures:
        pytest.fail(f"schemathesis, public API ({len(failures)} failing operation x check):\n"
                    + report(failures), pytrace=False)  # fmt: skip
    assert any(200 in seen for seen in statuses.values()), statuses  # the run really reached the data


def test_management_api_passes_every_schemathesis_check(
    platform_in_test_transaction: Platform, fast_accounts, stripe_env, settings
):
    settings.ALERTS_WEBHOOK_ALLOW_LOOPBACK = True  # the supplied webhook URL (SUPPLIED) is on loopback
    call_command("stripe_sync", stdout=io.StringIO())  # billing endpoints against the Stripe stand-in
    failures, statuses = run_schemathesis(
        MANAGEMENT,
        {
            "Authorization": f"Bearer {platform_in_test_transaction.access_token}",
            "Accept-Encoding": "identity",
        },
        platform_in_test_transaction,
    )
    if failures:
        pytest.fail(f"schemathesis, management API ({len(failures)} failing operation x check):\n"
                    + report(failures), pytrace=False)  # fmt: skip
    assert any(200 in seen for seen in statuses.values()), statuses
