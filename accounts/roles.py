"""Roles and what each may do: the single source of the role -> permissions matrix.

Every management endpoint names the permission it needs (``required_permissions`` per HTTP method
on the view); :func:`has_permission` is the only check (services call it through
:func:`require_permission`). Other apps (billing) use the same names.

| permission            | owner | admin | developer | billing |
|-----------------------|:-----:|:-----:|:---------:|:-------:|
| org.read              |   x   |   x   |     x     |    x    |
| org.update            |   x   |   x   |           |         |
| members.read          |   x   |   x   |     x     |    x    |
| members.manage        |   x   |   x   |           |         |
| invitations.read      |   x   |   x   |           |         |
| invitations.manage    |   x   |   x   |           |         |
| keys.read             |   x   |   x   |     x     |         |
| keys.manage           |   x   |   x   |     x     |         |
| audit.read            |   x   |   x   |           |         |
| usage.read            |   x   |   x   |     x     |    x    |
| billing.read          |   x   |   x   |           |    x    |
| billing.manage        |   x   |       |           |    x    |
| alerts.read           |   x   |   x   |     x     |         |
| alerts.manage         |   x   |   x   |     x     |         |

Extra rules (enforced by the membership and invitation services): only an owner may grant or take
away the owner role or remove an owner (:func:`check_owner_rule`); an organization always keeps at
least one owner.
"""

from __future__ import annotations

from accounts import problems as p
from accounts.models import Role
from apiplatform.problems import ProblemError

ORG_READ = "org.read"
ORG_UPDATE = "org.update"
MEMBERS_READ = "members.read"
MEMBERS_MANAGE = "members.manage"
INVITATIONS_READ = "invitations.read"
INVITATIONS_MANAGE = "invitations.manage"
KEYS_READ = "keys.read"
KEYS_MANAGE = "keys.manage"
AUDIT_READ = "audit.read"
USAGE_READ = "usage.read"
BILLING_READ = "billing.read"
BILLING_MANAGE = "billing.manage"
ALERTS_READ = "alerts.read"  # alerts, webhook endpoints, deliveries (marketdata.alerts)
ALERTS_MANAGE = "alerts.manage"

ALL_PERMISSIONS: tuple[str, ...] = (
    ORG_READ,
    ORG_UPDATE,
    MEMBERS_READ,
    MEMBERS_MANAGE,
    INVITATIONS_READ,
    INVITATIONS_MANAGE,
    KEYS_READ,
    KEYS_MANAGE,
    AUDIT_READ,
    USAGE_READ,
    BILLING_READ,
    BILLING_MANAGE,
    ALERTS_READ,
    ALERTS_MANAGE,
)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(ALL_PERMISSIONS),
    Role.ADMIN: frozenset(ALL_PERMISSIONS) - {BILLING_MANAGE},
    Role.DEVELOPER: frozenset(
        {ORG_READ, MEMBERS_READ, KEYS_READ, KEYS_MANAGE, USAGE_READ, ALERTS_READ, ALERTS_MANAGE}
    ),
    Role.BILLING: frozenset({ORG_READ, MEMBERS_READ, USAGE_READ, BILLING_READ, BILLING_MANAGE}),
}


def has_permission(role: str | None, permission: str) -> bool:
    if permission not in ALL_PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    return role is not None and permission in ROLE_PERMISSIONS.get(role, frozenset())


def permissions_of(role: str) -> list[str]:
    return [perm for perm in ALL_PERMISSIONS if perm in ROLE_PERMISSIONS.get(role, frozenset())]


def require_permission(role: str | None, permission: str) -> None:
    """Raise ``role-forbidden`` unless ``role`` has ``permission``."""
    if not has_permission(role, permission):
        raise ProblemError(p.ROLE_FORBIDDEN, extra={"required_permission": permission})


def check_owner_rule(*, actor_role: str, old_role: str | None, new_role: str | None) -> None:
    """Only owners may create, change or remove owners."""
    touches_owner = Role.OWNER in (old_role, new_role)
    if touches_owner and actor_role != Role.OWNER:
        raise ProblemError(
            p.ROLE_FORBIDDEN,
            "Only an owner may grant, change or remove the owner role.",
            extra={"required_permission": "owner"},
        )
