import json
import socket
import time

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
    assert body["checks"]["redis"] == {"status": "down"}
    # names only: no host, port or driver message reaches the (unauthenticated) caller
    assert str(closed_port) not in response.content.decode()
    assert "127.0.0.1" not in response.content.decode()


def test_readyz_names_a_stopped_broker(client, closed_port, monkeypatch):
    for key in ("broker_url", "broker_write_url"):
        monkeypatch.setattr(celery_app.conf, key, f"redis://127.0.0.1:{closed_port}/0")
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["down"] == ["broker"]
    assert body["checks"]["database"]["status"] == "ok"
    assert str(closed_port) not in response.content.decode()
    assert "error" not in body["checks"]["broker"]


def test_readyz_names_a_stopped_database(closed_port):
    # A fresh process whose DATABASE_URL points at a port where no PostgreSQL listens.
    code = (
        "import django, json, time; django.setup();"
        "from django.test import Client;"
        "t = time.monotonic(); r = Client().get('/readyz'); took = time.monotonic() - t;"
        "print(r.status_code, round(took, 2), r.content.decode())"
    )
    result = run_python(
        code,
        {
            "DJANGO_SETTINGS_MODULE": "apiplatform.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{closed_port}/candlestack",
            "DB_POOL_TIMEOUT": "10",  # the pool would wait this long for a connection
        },
    )
    assert result.returncode == 0, result.stderr
    status, took, body = result.stdout.strip().splitlines()[-1].split(" ", 2)
    assert status == "503"
    assert json.loads(body)["down"] == ["database"]
    assert str(closed_port) not in body  # names only
    # The check gives up after READYZ_CHECK_TIMEOUT (1 s), not after the pool's 10 s: a probe
    # holds a worker about a second while the database is down (generous bound, no exact timing).
    assert float(took) < 5, took


def test_readyz_does_not_wait_for_a_dependency_that_never_answers(client, monkeypatch):
    # A "Redis" that accepts the connection and never says anything (a stalled host).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        caches = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{port}/0",
                "OPTIONS": {"socket_connect_timeout": 30, "socket_timeout": 30},
            }
        }
        with override_settings(CACHES=caches, READYZ_CHECK_TIMEOUT=0.5):
            started = time.monotonic()
            response = client.get("/readyz")
            took = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["down"] == ["redis"]
    assert took < 10, took  # the cache client alone would wait 30 s
