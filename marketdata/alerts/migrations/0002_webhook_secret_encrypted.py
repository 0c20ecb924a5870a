"""Webhook signing secrets encrypted at rest (docs/alerts.md, "Security").

The column is renamed ``secret`` -> ``secret_encrypted`` and widened for a Fernet token (164
characters for a ``whsec_`` secret), then every plain secret is encrypted under the first key of
ALERTS_SECRET_KEYS (in development: the key derived from SECRET_KEY). Reversing decrypts them back
(with any configured key) before the column is narrowed again.

Plain secrets are told from tokens by their ``whsec_`` prefix (a token starts with ``gAAAAA``), so
either direction can be re-run over a half-done table.
"""

from django.db import migrations, models

from marketdata.alerts import encryption

PLAIN_PREFIX = "whsec_"  # signing.SECRET_PREFIX, frozen here as the migration's fact
BATCH = 500


def _convert(apps, convert, wanted) -> None:
    WebhookEndpoint = apps.get_model("alerts", "WebhookEndpoint")  # noqa: N806  # a model class
    rows = WebhookEndpoint.objects.only("pk", "secret_encrypted").order_by("pk")
    batch = []
    for endpoint in rows.iterator(chunk_size=BATCH):
        if wanted(endpoint.secret_encrypted):
            endpoint.secret_encrypted = convert(endpoint.secret_encrypted)
            batch.append(endpoint)
        if len(batch) >= BATCH:
            WebhookEndpoint.objects.bulk_update(batch, ["secret_encrypted"])
            batch = []
    if batch:
        WebhookEndpoint.objects.bulk_update(batch, ["secret_encrypted"])


def encrypt_secrets(apps, schema_editor) -> None:
    _convert(apps, encryption.encrypt, lambda value: value.startswith(PLAIN_PREFIX))


def decrypt_secrets(apps, schema_editor) -> None:
    _convert(apps, encryption.decrypt, lambda value: not value.startswith(PLAIN_PREFIX))


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0001_alerts_webhooks"),
    ]

    operations = [
        migrations.RenameField(model_name="webhookendpoint", old_name="secret", new_name="secret_encrypted"),
        migrations.AlterField(
            model_name="webhookendpoint",
            name="secret_encrypted",
            field=models.CharField(max_length=500),
        ),
        migrations.RunPython(encrypt_secrets, decrypt_secrets),
    ]
