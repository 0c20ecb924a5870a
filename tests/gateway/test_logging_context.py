"""Operators' logs: every line of a request names the organization it acts for (never a key), and
the gateway's decisions are loggable at debug."""

from __future__ import annotations

import logging

from apiplatform.context import organization_id_var
from apiplatform.logging import ContextFilter
from tests.gateway.conftest import key_client


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.addFilter(ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_a_requests_log_lines_carry_its_organization_and_the_gateway_decision(tenant):
    org, key = tenant()
    handler = _Collect()
    gateway_logger = logging.getLogger("apiplatform.gateway")
    gateway_logger.addHandler(handler)
    level = gateway_logger.level
    gateway_logger.setLevel(logging.DEBUG)
    try:
        assert key_client(key).get("/v1/limits").status_code == 200
    finally:
        gateway_logger.removeHandler(handler)
        gateway_logger.setLevel(level)
    decisions = [r for r in handler.records if r.getMessage().startswith("gateway decision")]
    assert len(decisions) == 1
    assert decisions[0].organization_id == org.pk
    assert "endpoint=limits" in decisions[0].getMessage() and key not in decisions[0].getMessage()
    assert organization_id_var.get() is None  # reset with the request


def test_log_lines_outside_a_request_say_so():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    ContextFilter().filter(record)
    assert record.organization_id == "-" and record.request_id == "-"
