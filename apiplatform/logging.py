"""Logging filters: every record gets the current request id, Celery task id and the organization
the request acts for (``ContextFilter``),
and secrets that slip into a message are masked (``RedactSecretsFilter``)."""

from __future__ import annotations

import logging
import re

from apiplatform.context import organization_id_var, request_id_var


def _current_task_id() -> str | None:
    try:
        from celery._state import get_current_task
    except ImportError:  # pragma: no cover - celery is a hard dependency
        return None
    task = get_current_task()
    if task is None or task.request is None:
        return None
    return getattr(task.request, "id", None)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get() or "-"
        if not hasattr(record, "task_id"):
            record.task_id = _current_task_id() or "-"
        if not hasattr(record, "organization_id"):
            organization_id = organization_id_var.get()
            record.organization_id = organization_id if organization_id is not None else "-"
        return True


# What a secret looks like in a message: a JWT (three base64url parts, the first two JSON objects),
# the secret part of an API key (the format of accounts/keyformat.py; its public prefix is kept), and
# the value of a token/password/key parameter in a URL or form.
_SECRETS = re.compile(
    r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}"
    r"|(?P<key>\bcs_(?:pub_)?(?:live|test)_[0-9A-Za-z]{12}_)[0-9A-Za-z]{38}\b"
    r"|(?P<param>[?&;](?:token|password|refresh|access|key)=)[^&\s\"'<>]+",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def _redact(match: re.Match[str]) -> str:
    return (match.group("key") or match.group("param") or "") + REDACTED


class RedactSecretsFilter(logging.Filter):
    """Defense in depth (the code logs no secret on purpose; tests/accounts/test_secret_hygiene.py
    checks a full journey): a message that contains a JWT, an API key's secret or a ``token=``-like
    URL parameter is logged with that part replaced by ``[redacted]``. Costs one regex search per
    record; the message is formatted only if it has arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format string: leave it to the handler
            return True
        redacted = _SECRETS.sub(_redact, message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
