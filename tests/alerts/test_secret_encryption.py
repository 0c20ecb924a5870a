"""Webhook signing secrets are encrypted at rest (docs/alerts.md, "Security"): the column never holds
the plain secret, key rotation keeps every delivery verifiable, a removed key is a clear error, the
migration encrypts existing rows, and production refuses to start without a strong key."""

from __future__ import annotations

import secrets

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apiplatform.ops import doctor
from marketdata.alerts import encryption, services, signing
from marketdata.alerts.models import WebhookEndpoint
from tests.conftest import run_python

from .conftest import owner_of

KEY_OLD = secrets.token_urlsafe(64)
KEY_NEW = secrets.token_urlsafe(64)


@pytest.fixture
def org(make_org):
    return make_org()


def make_endpoint(org, name: str) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        organization=org, url=f"https://hooks.example.com/{name}", secret=f"whsec_{name}"
    )


def stored(endpoint_id: int) -> str:
    """The column as the database holds it (no model, no decryption)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_encrypted FROM alerts_webhookendpoint WHERE id = %s", [endpoint_id])
        return cursor.fetchone()[0]


# --- what is stored ------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.usefixtures("loopback_allowed")
def test_the_column_never_holds_the_plain_secret(org, receiver, jwt_client):
    client = jwt_client(owner_of(org))
    created = client.post("/v1/account/webhook-endpoints", {"url": receiver.url}, format="json")
    assert created.status_code == 201, created.content
    endpoint_id, secret = created.json()["id"], created.json()["secret"]
    assert secret.startswith(signing.SECRET_PREFIX)  # shown once, plain, as before
    token = stored(endpoint_id)
    assert secret not in token and signing.SECRET_PREFIX not in token and token.startswith("gAAAAA")
    assert WebhookEndpoint.objects.get(pk=endpoint_id).secret == secret

    rotated = client.post(f"/v1/account/webhook-endpoints/{endpoint_id}/rotate-secret").json()["secret"]
    assert rotated != secret and rotated not in stored(endpoint_id) and secret not in stored(endpoint_id)
    with connection.cursor() as cursor:  # nowhere in the row either
        cursor.execute("SELECT * FROM alerts_webhookendpoint WHERE id = %s", [endpoint_id])
        assert not any(rotated in str(value) for value in cursor.fetchone())


def test_each_encryption_is_different_and_decrypts(settings):
    settings.ALERTS_SECRET_KEYS = [KEY_NEW]
    a, b = encryption.encrypt("whsec_same"), encryption.encrypt("whsec_same")
    assert a != b  # a random IV each time: equal secrets do not show as equal tokens
    assert encryption.decrypt(a) == encryption.decrypt(b) == "whsec_same"


def test_development_key_is_derived_from_secret_key(settings):
    settings.ALERTS_SECRET_KEYS = []
    token = encryption.encrypt("whsec_dev")
    settings.ALERTS_SECRET_KEYS = [settings.SECRET_KEY]  # the same HKDF derivation of SECRET_KEY
    assert encryption.decrypt(token) == "whsec_dev"
    settings.SECRET_KEY = secrets.token_urlsafe(64)
    settings.ALERTS_SECRET_KEYS = []
    with pytest.raises(encryption.SecretNotDecryptable):
        encryption.decrypt(token)


# --- key rotation --------------------------------------------------------------------------------------
def test_old_key_decrypts_while_listed_and_its_removal_is_a_clear_error(settings):
    settings.ALERTS_SECRET_KEYS = [KEY_OLD]
    token = encryption.encrypt("whsec_old")
    settings.ALERTS_SECRET_KEYS = [KEY_NEW, KEY_OLD]
    assert encryption.decrypt(token) == "whsec_old"
    assert not encryption.is_current(token)
    assert encryption.is_current(encryption.encrypt("whsec_new"))  # new secrets: under the newest key
    settings.ALERTS_SECRET_KEYS = [KEY_NEW]
    with pytest.raises(encryption.SecretNotDecryptable) as error:
        encryption.decrypt(token)
    assert "ALERTS_SECRET_KEYS" in str(error.value) and "alerts_rotate_secret_key" in str(error.value)
    assert "whsec_old" not in str(error.value)


@pytest.mark.django_db
@pytest.mark.usefixtures("loopback_allowed")
def test_deliveries_verify_across_a_key_rotation(settings, org, receiver):
    settings.ALERTS_SECRET_KEYS = [KEY_OLD]
    endpoint = services.endpoint_create(organization_id=org.pk, url=receiver.url)
    secret = endpoint.secret  # what the customer was shown
    before = stored(endpoint.pk)

    def delivered_and_verified() -> bool:
        services.delivery_send_test(endpoint=WebhookEndpoint.objects.get(pk=endpoint.pk))
        request = receiver.received[-1]
        return signing.verify(secret=secret, header=request.headers[signing.HEADER], body=request.body)

    settings.ALERTS_SECRET_KEYS = [KEY_NEW, KEY_OLD]  # step 1: the new key first, the old one kept
    assert delivered_and_verified()
    call_command("alerts_rotate_secret_key")  # step 2: re-encrypt under the new key
    assert stored(endpoint.pk) != before
    settings.ALERTS_SECRET_KEYS = [KEY_NEW]  # step 3: the old key removed
    assert delivered_and_verified()
    assert len(receiver.received) == 2


@pytest.mark.django_db
def test_rotate_command_reports_progress_and_is_idempotent(settings, org, capsys):
    settings.ALERTS_SECRET_KEYS = [KEY_OLD]
    endpoints = [make_endpoint(org, str(i)) for i in range(5)]
    settings.ALERTS_SECRET_KEYS = [KEY_NEW, KEY_OLD]
    make_endpoint(org, "new")
    call_command("alerts_rotate_secret_key", "--batch-size", "2")
    out = capsys.readouterr().out
    assert "2/6 endpoints" in out and "4/6 endpoints" in out and "6/6 endpoints" in out
    assert "done: 5 re-encrypted, 1 already under the newest key (of 6)" in out
    settings.ALERTS_SECRET_KEYS = [KEY_NEW]
    secrets_now = [WebhookEndpoint.objects.get(pk=e.pk).secret for e in endpoints]
    assert secrets_now == [f"whsec_{i}" for i in range(5)]
    call_command("alerts_rotate_secret_key")
    assert "done: 0 re-encrypted, 6 already under the newest key" in capsys.readouterr().out


@pytest.mark.django_db
def test_rotate_command_names_the_secrets_it_cannot_decrypt(settings, org):
    settings.ALERTS_SECRET_KEYS = [KEY_OLD]
    lost = make_endpoint(org, "a")
    settings.ALERTS_SECRET_KEYS = [KEY_NEW]  # the old key removed too early
    with pytest.raises(CommandError, match=rf"1 secret\(s\) not decryptable .*ALERTS_SECRET_KEYS.*{lost.pk}"):
        call_command("alerts_rotate_secret_key")
    settings.ALERTS_SECRET_KEYS = [KEY_NEW, KEY_OLD]  # put back: the secret was never lost
    call_command("alerts_rotate_secret_key")
    settings.ALERTS_SECRET_KEYS = [KEY_NEW]
    assert WebhookEndpoint.objects.get(pk=lost.pk).secret == "whsec_a"


@pytest.mark.django_db
def test_a_secret_rotated_meanwhile_is_not_overwritten(settings, org, monkeypatch):
    settings.ALERTS_SECRET_KEYS = [KEY_OLD]
    endpoint = make_endpoint(org, "a")
    settings.ALERTS_SECRET_KEYS = [KEY_NEW, KEY_OLD]
    reencrypt = encryption.reencrypt

    def owner_rotates_meanwhile(token: str) -> str:
        new_token = reencrypt(token)
        services.endpoint_rotate_secret(endpoint=WebhookEndpoint.objects.get(pk=endpoint.pk))
        return new_token

    monkeypatch.setattr(encryption, "reencrypt", owner_rotates_meanwhile)
    state = services.endpoint_secrets_reencrypt()
    assert (state.reencrypted, state.current) == (0, 1)
    now = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert now.secret != "whsec_a" and now.secret_rotated_at is not None  # the owner's new secret kept


# --- the migration -------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_migration_encrypts_existing_rows_and_reverses(settings, org):
    settings.ALERTS_SECRET_KEYS = [KEY_NEW]
    executor = MigrationExecutor(connection)
    before, after = [("alerts", "0001_alerts_webhooks")], [("alerts", "0002_webhook_secret_encrypted")]
    try:
        executor.migrate(before)
        old_apps = executor.loader.project_state(before).apps
        old_model = old_apps.get_model("alerts", "WebhookEndpoint")
        plain = [f"whsec_{secrets.token_urlsafe(32)}" for _ in range(3)]
        ids = [
            old_model.objects.create(organization_id=org.pk, url=f"https://h.example.com/{i}", secret=s).pk
            for i, s in enumerate(plain)
        ]
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        tokens = [stored(pk) for pk in ids]
        assert all(s not in t and t.startswith("gAAAAA") for s, t in zip(plain, tokens, strict=True))
        assert [WebhookEndpoint.objects.get(pk=pk).secret for pk in ids] == plain

        executor = MigrationExecutor(connection)
        executor.migrate(before)  # the reverse decrypts
        with connection.cursor() as cursor:
            cursor.execute("SELECT secret FROM alerts_webhookendpoint WHERE id = ANY(%s) ORDER BY id", [ids])
            assert [row[0] for row in cursor.fetchall()] == plain
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


# --- production settings ---------------------------------------------------------------------------------
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(64),
    "ALLOWED_HOSTS": "api.example.com",
    "DJANGO_SETTINGS_MODULE": "apiplatform.settings",
    "ALERTS_SECRET_KEYS": f"{KEY_NEW},{KEY_OLD}",
}
SETUP = (
    "import django; django.setup(); from django.conf import settings; print(len(settings.ALERTS_SECRET_KEYS))"
)


def test_production_requires_strong_alerts_secret_keys():
    assert run_python(SETUP, PRODUCTION).stdout.strip() == "2"
    missing = run_python(SETUP, {**PRODUCTION, "ALERTS_SECRET_KEYS": None})
    assert missing.returncode != 0 and "ALERTS_SECRET_KEYS must be set when DEBUG=0" in missing.stderr
    for weak in ["x", "short-but-not-50", "b" * 64, f"{KEY_NEW},short"]:
        result = run_python(SETUP, {**PRODUCTION, "ALERTS_SECRET_KEYS": weak})
        assert result.returncode != 0, weak
        assert "ALERTS_SECRET_KEYS is too weak" in result.stderr
    development = run_python(SETUP, {"DEBUG": "1", "ALERTS_SECRET_KEYS": None})
    assert development.returncode == 0 and development.stdout.strip() == "0", development.stderr


@pytest.mark.django_db
def test_doctor_names_a_weak_alerts_secret_key_in_production(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = "k" * 10 + "abcdefghij" * 5
    settings.SIMPLE_JWT = {**settings.SIMPLE_JWT, "SIGNING_KEY": "j" * 10 + "abcdefghij" * 5}
    settings.ACCOUNTS = {**settings.ACCOUNTS, "API_KEY_PEPPER": "p" * 10 + "abcdefghij" * 5}
    settings.ALERTS_SECRET_KEYS = [KEY_NEW, "short", "x"]
    (result,) = doctor.run_checks(only=["configuration"])
    assert result.status == doctor.FAIL
    assert result.detail == "ALERTS_SECRET_KEYS is too weak for production"
    settings.ALERTS_SECRET_KEYS = [KEY_NEW, KEY_OLD]
    (result,) = doctor.run_checks(only=["configuration"])
    assert "ALERTS_SECRET_KEYS" not in result.detail
