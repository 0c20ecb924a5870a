"""The gateway's copy of each organization's plan limits in Redis (``gw:plan:<org>``).

The gate script (``billing.gate``) reads an organization's limits from this copy, so the request
path needs no database, and a change is seen by the very next request in every process.
``billing.services`` writes it whenever a plan or an assignment changes (after the transaction
commits) and when the gateway meets an organization whose copy is missing (its cold path).
"""

from __future__ import annotations

import redis
from django.conf import settings

from apiplatform import redis_access
from billing.limits import PlanLimits
from billing.redis_layout import plan_key

_PUBLISH_LUA = """
-- KEYS[1] plan hash; ARGV[1] version, ARGV[2] TTL (s), then field/value pairs. Older versions
-- never overwrite newer. The TTL bounds how long a copy could stay stale if a republish was lost
-- (Redis down at the time): the next request after it expires reloads from the database.
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""


def publish_plan(
    organization_id: int, limits: PlanLimits, *, pipeline: redis.client.Pipeline | None = None
) -> bool:
    """Write an organization's plan limits into Redis (ignored if a newer version is there).
    With ``pipeline`` the command is only queued (the result comes with ``pipeline.execute()``)."""
    r = redis_access.client("gateway")
    args: list[int | str] = [limits.version, int(settings.GATEWAY_PLAN_TTL), *limits.as_redis_fields()]
    result = redis_access.script(_PUBLISH_LUA, r)(
        keys=[plan_key(organization_id)], args=args, client=pipeline or r
    )
    return bool(result) if pipeline is None else True


def drop_plan(organization_id: int) -> None:
    """Delete the copy: the organization's next request reloads it from the database."""
    redis_access.client("gateway").delete(plan_key(organization_id))
