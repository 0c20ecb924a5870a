"""The audit trail: one ``AuditEvent`` per change, written by the other services."""

from __future__ import annotations

from typing import Any

from accounts.models import AuditEvent, Organization, User


def audit_record(
    *,
    organization: Organization,
    actor: User | None,
    action: str,
    target_type: str = "",
    target_id: str | int = "",
    data: dict[str, Any] | None = None,
    ip_address: str | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        organization=organization,
        actor=actor,
        actor_label=actor.email if actor is not None else "system",
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        data=data or {},
        ip_address=ip_address,
    )
