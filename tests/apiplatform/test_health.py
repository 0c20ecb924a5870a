import pytest
from django.test import override_settings

from apiplatform.celery import app as celery_app
from tests.conftest import run_python

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_touching_dependencies(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ok_when_everything_is_reachable(client):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["down"] == []
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "redis": "ok",
        "broker": "ok",
    }


def test_readyz_names_a_stopped_redis(client, closed_port):
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    with override_settings(CACHES=caches):
        response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["down"] == ["redis"]
    assert "Connection" in body["checks"]["redis"]["error"]


def test_readyz_names_a_stopped_broker(client, closed_port, monkeypatch):
    for key in ("broker_url", "broker_write_url"):
        monkeypatch.setattr(celery_app.conf, key, f"redis://127.0.0.1:{closed_port}/0")
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["down"] == ["broker"]
    assert body["checks"]["database"]["status"] == "ok"


def test_readyz_names_a_stopped_database(closed_port):
    # A fresh process whose DATABASE_URL points at a port where no PostgreSQL listens.
    code = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/readyz');"
        "print(r.status_code, json.dumps(r.json()))"
    )
    result = run_python(
        code,
        {
            "DJANGO_SETTINGS_MODULE": "apiplatform.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{closed_port}/candlestack",
            "DB_POOL_TIMEOUT": "1",
        },
    )
    assert result.returncode == 0, result.stderr
    status, _, body = result.stdout.strip().splitlines()[-1].partition(" ")
    assert status == "503"
    assert '"down": ["database"]' in body
