"""Billing's Redis layout, described once: every key billing writes and the usage-field format.

All keys are named through ``apiplatform.redis_access.key("gw", ...)``
(``<REDIS_KEY_PREFIX>:gw:...``) and live on the gateway's connection
(``redis_access.connection("gateway")``):

======================================  ==========================================================
``gw:plan:<org>``                       hash: the organization's plan limits (``PlanLimits``
                                        fields, ``v`` = version), written by ``billing.gate.publish_plan``
``gw:rl:org:<org>``                     the organization's token bucket (GCRA "theoretical arrival
                                        time", µs)
``gw:rl:key:<key id>``                  the API key's token bucket
``gw:credits:<org>:<YYYYMM>``           credits used in that UTC calendar month
``gw:streams:<org>``                    sorted set: the organization's open SSE streams
                                        (connection id -> lease expiry, ms; ``billing.streams``)
``gw:{usage}:live``                     hash: usage counted since the last flush (fields below)
``gw:{usage}:batch:<batch id>``         a live hash renamed by the flush, until applied
``gw:{usage}:pending``                  set: ids of the batches not yet applied
``gw:{usage}:flushed``                  when the last flush finished (Unix seconds; flush lag)
``gw:failures:<org>``                   list: the organization's last FAILURES_KEPT failed calls,
                                        newest first (:func:`failure_entry`), written only on the
                                        failure path, in a call that path makes anyway
======================================  ==========================================================

(``{usage}`` is a hash tag: every usage key in one cluster slot, so the flush can rename them
atomically.)

Usage fields: ``<bucket>|<status class>|n`` (requests) and ``<bucket>|<status class>|c``
(credits), where the bucket is ``<hour>|<org>|<key id>|<endpoint>`` (:func:`usage_bucket`; the
hour is :func:`hour_of`, the organization 0 when unknown) and the status class ``2xx`` ... ``5xx``.
A request the gate refused is counted in ``4xx:<refusal>`` (``4xx:rate-limited``,
``4xx:quota-exceeded``, ``4xx:plan-upgrade-required``): its class and exactly why
(:func:`parse_usage_counter` splits them).
The gate script and billing.metering's scripts append ``|<class>|n`` / ``|<class>|c`` to a bucket.
"""

from __future__ import annotations

from apiplatform.redis_access import key
from billing.limits import US

NAMESPACE = "gw"


def plan_key(organization_id: int) -> str:
    return key(NAMESPACE, "plan", organization_id)


def tenant_bucket_key(organization_id: int) -> str:
    return key(NAMESPACE, "rl", "org", organization_id)


def key_bucket_key(key_id: str) -> str:
    return key(NAMESPACE, "rl", "key", key_id)


def month_key(organization_id: int, month: str) -> str:
    return key(NAMESPACE, "credits", organization_id, month)


def stream_slots_key(organization_id: int) -> str:
    return key(NAMESPACE, "streams", organization_id)


def usage_live_key() -> str:
    return key(NAMESPACE, "{usage}", "live")


def usage_batch_key(batch_id: str) -> str:
    return key(NAMESPACE, "{usage}", "batch", batch_id)


def usage_pending_key() -> str:
    return key(NAMESPACE, "{usage}", "pending")


def usage_flushed_key() -> str:
    return key(NAMESPACE, "{usage}", "flushed")


def failures_key(organization_id: int) -> str:
    return key(NAMESPACE, "failures", organization_id)


#: Failed calls kept per organization (the dashboard's "last 100 failed calls"), and how long a list
#: is kept after its newest failure.
FAILURES_KEPT = 100
FAILURES_TTL_S = 30 * 86_400
#: The stored path (with its query string) is cut to this many characters.
FAILURE_PATH_MAX = 300

#: The gate's refusals as counted in usage (``4xx:<refusal>``), indexed by the gate's status (1, 2, 3).
REFUSALS = ("rate-limited", "quota-exceeded", "plan-upgrade-required")


def failure_context(*, key_id: str, request_id: str, path: str) -> str:
    """``<key id>|<request id>|<path>``: the part of a failed call's entry known before the outcome
    (the gate script prepends time, status and problem)."""
    return f"{key_id}|{request_id}|{path[:FAILURE_PATH_MAX]}"


def failure_entry(*, at_us: int, status: int, problem: str, key_id: str, request_id: str, path: str) -> str:
    """One failed call: ``<time µs>|<status>|<problem>|<key id>|<request id>|<path>`` (the path
    last: it is the only part that may contain ``|``)."""
    context = failure_context(key_id=key_id, request_id=request_id, path=path)
    return f"{at_us}|{status}|{problem}|{context}"


def parse_failure_entry(entry: str) -> tuple[int, int, str, str, str, str]:
    """An entry of :func:`failure_entry` -> (time µs, status, problem, key id, request id, path)."""
    at, status, problem, key_id, request_id, path = entry.split("|", 5)
    return int(at), int(status), problem, key_id, request_id, path


def hour_of(now_us: int) -> int:
    """THE hour rule of metering: the start (Unix seconds, UTC) of the hour containing ``now_us``."""
    return (now_us // US) // 3600 * 3600


def usage_bucket(*, now: int, organization_id: int | None, key_id: str, endpoint: str) -> str:
    """``<hour>|<org>|<key>|<endpoint>``: the bucket part of a usage field (class and kind follow)."""
    return f"{hour_of(now)}|{organization_id or 0}|{key_id}|{endpoint}"


def usage_counter(bucket: str, status_class: str) -> str:
    """``<bucket>|<status class>``: one counter; its fields add ``|n`` (requests) and ``|c`` (credits)."""
    return f"{bucket}|{status_class}"


def split_usage_field(field: str) -> tuple[str, str]:
    """A usage field -> (its counter ``<bucket>|<status class>``, ``"n"`` or ``"c"``)."""
    counter, _, kind = field.rpartition("|")
    return counter, kind


def refusal_class(refusal: str) -> str:
    """The usage class of a request the gate refused: ``4xx:<refusal>``."""
    return f"4xx:{refusal}"


def parse_usage_counter(counter: str) -> tuple[int, int | None, str, str, str, str]:
    """``<hour>|<org>|<key>|<endpoint>|<class>[:<refusal>]`` -> (hour, organization id or None, key
    id, endpoint, status class, refusal or "")."""
    hour, org, key_id, endpoint, status_class = counter.split("|", 4)
    status_class, _, refusal = status_class.partition(":")
    return int(hour), int(org) or None, key_id, endpoint, status_class, refusal
