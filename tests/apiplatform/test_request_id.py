import json
import logging
import re

import pytest
from pythonjsonlogger.json import JsonFormatter

from apiplatform.celery import app as celery_app
from apiplatform.context import request_id_var
from apiplatform.logging import ContextFilter


def test_request_id_is_generated_and_echoed(client):
    response = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])
    assert response["X-Request-ID"] != client.get("/healthz")["X-Request-ID"]


def test_request_id_from_the_client_is_kept(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="trace-abc.123")
    assert response["X-Request-ID"] == "trace-abc.123"


@pytest.mark.parametrize("bad", ["x" * 200, "has space", "<script>", "new\nline"])
def test_malformed_request_id_is_replaced(client, bad):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=bad)
    assert response["X-Request-ID"] != bad
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


@pytest.mark.django_db
def test_error_body_carries_the_same_request_id(client):
    response = client.get("/v1/no-such-endpoint", HTTP_X_REQUEST_ID="req-42")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["request_id"] == "req-42"
    assert body["status"] == 404
    assert body["instance"] == "/v1/no-such-endpoint"
    assert body["type"].endswith("/problems/not-found")


def _json_line(record: logging.LogRecord) -> dict:
    ContextFilter().filter(record)
    formatter = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(task_id)s")
    return json.loads(formatter.format(record))


def test_json_log_lines_carry_the_request_id():
    token = request_id_var.set("req-log-1")
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
        line = _json_line(record)
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello world"
    assert line["request_id"] == "req-log-1"
    assert line["task_id"] == "-"


def test_worker_log_lines_carry_the_task_id():
    seen: dict = {}

    @celery_app.task(name="tests.log_task_id")
    def log_task_id():
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "in task", (), None)
        seen["line"] = _json_line(record)

    result = log_task_id.apply(task_id="task-123")
    assert result.successful()
    assert seen["line"]["task_id"] == "task-123"
