"""POST /v1/keys/revoke-leaked: anyone may report a published key; an active secret key is revoked,
audited and its owners emailed, and the answer is the same whatever was sent."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from rest_framework.test import APIClient

from accounts import keyformat, keys
from accounts.models import ApiKey, AuditEvent

from .conftest import owner_of

URL = "/v1/keys/revoke-leaked"


def _report(key: str, ip: str = "198.51.100.7", **extra):
    return APIClient(REMOTE_ADDR=ip).post(URL, {"key": key, **extra}, format="json")


def test_a_reported_live_key_is_revoked_audited_and_its_owners_emailed(
    make_org, make_member, make_key, django_capture_on_commit_callbacks
):
    org = make_org(name="Leaky")
    second_owner = make_member(org, "owner")
    developer = make_member(org, "developer")
    api_key, full = make_key(org, name="ci server")
    assert keys.verify(keyformat.parse_key(full), None)[0] == "ok"
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = _report(full, url="https://github.com/acme/app/blob/main/.env")
    assert response.status_code == 202, response.content
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
    assert keys.verify(keyformat.parse_key(full), None)[0] == "revoked"
    event = AuditEvent.objects.get(organization=org, action="key.revoked", target_id=api_key.key_id)
    assert event.actor is None and event.actor_label == "system" and event.ip_address == "198.51.100.7"
    assert event.data["reason"] == "leaked" and event.data["source"].startswith("https://github.com/acme")
    [message] = mail.outbox
    assert sorted(message.to) == sorted([owner_of(org).email, second_owner.email])
    assert developer.email not in message.to
    assert api_key.prefix in message.subject and full not in message.body
    assert "github.com" not in message.body  # the reporter's text never reaches the owners' email


@pytest.mark.parametrize(
    "key",
    [
        "not a key",
        "cs_live_000000000000_" + "0" * 38,  # well-formed, bad checksum
        keyformat.generate_key("live")[1],  # valid shape and checksum, no such key
    ],
)
def test_the_answer_is_the_same_for_anything(make_org, make_key, key, django_capture_on_commit_callbacks):
    _row, real = make_key(make_org())
    with django_capture_on_commit_callbacks(execute=True):
        genuine = _report(real, ip="198.51.100.8")
    other = _report(key, ip="198.51.100.9")
    assert other.status_code == genuine.status_code == 202
    assert other.json() == genuine.json()
    assert set(other.headers) == set(genuine.headers)


def test_a_key_id_with_a_wrong_secret_revokes_nothing(make_org, make_key):
    api_key, _full = make_key(make_org())
    forged = keyformat.compose_key("live", api_key.key_id, "A" * 32)
    assert _report(forged).status_code == 202
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is None


def test_browser_keys_are_public_by_design_and_left_alone(make_org, make_key):
    api_key, full = make_key(make_org(), kind="browser", allowed_origins=["https://app.example.com"])
    assert _report(full).status_code == 202
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is None


def test_reporting_twice_changes_nothing_more(make_org, make_key, django_capture_on_commit_callbacks):
    api_key, full = make_key(make_org())
    with django_capture_on_commit_callbacks(execute=True):
        _report(full)
    mail.outbox.clear()
    revoked_at = ApiKey.objects.get(pk=api_key.pk).revoked_at
    with django_capture_on_commit_callbacks(execute=True):
        assert _report(full).status_code == 202
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at == revoked_at and mail.outbox == []


def test_reports_are_limited_per_client_ip(db, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "RATE_REVOKE_LEAKED_IP": "3/m"}
    codes = [_report(f"guess-{i}", ip="203.0.113.50").status_code for i in range(5)]
    assert codes == [202, 202, 202, 429, 429]
    assert _report("guess", ip="203.0.113.51").status_code == 202  # another client
    limited = _report("guess", ip="203.0.113.50")
    assert limited["Content-Type"].startswith("application/problem+json") and "Retry-After" in limited


def test_no_credentials_needed_and_a_body_is_required(db):
    assert APIClient().post(URL, {}, format="json").status_code == 400
    assert APIClient().get(URL).status_code == 405


def test_the_scanner_regex_matches_secret_keys_only():
    _id, secret = keyformat.generate_key("live")
    _id, test = keyformat.generate_key("test")
    _id, browser = keyformat.generate_key("live", kind="browser")
    pattern = re.compile(keyformat.SCANNER_REGEX)
    assert pattern.search(f"API_KEY={secret}\n") and pattern.search(f"'{test}'")
    assert not pattern.search(browser)
