"""What the service writes to the audit log: admin changes and denials, policy events.

Gateway decisions and debug sessions build their own records next to their code; this
module holds the shared helper that appends durably and maps a failing log to 503.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from audit.log import AuditLog
from audit.records import Actor, AuditEvent
from service.auth.principal import Principal
from service.errors import ServiceUnavailable

log = logging.getLogger("extgate.audit")


def append_or_503(audit: AuditLog | None, event: AuditEvent) -> int:
    """Append and wait until durable; an unavailable log is a 503, never a silent skip."""
    if audit is None:
        raise ServiceUnavailable("the audit log is not configured", code="audit_unavailable")
    try:
        return audit.append(event, timeout=10.0)
    except Exception as exc:
        log.error("audit append failed for %s: %s", event.action, type(exc).__name__)
        raise ServiceUnavailable("the audit log is unavailable; retry", code="audit_unavailable") from exc


def admin_event(
    principal: Principal,
    action: str,
    outcome: str,
    *,
    tenant_id: str | None,
    resource: str | None,
    request_id: str | None,
    policy_ids: tuple[str, ...] = (),
    policy_revision: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    return AuditEvent(
        action=f"admin.{action}",
        outcome=outcome,
        tenant_id=tenant_id,
        actor=Actor.from_principal(principal, auth="jwt"),
        resource=resource,
        policy_ids=policy_ids,
        policy_revision=policy_revision,
        request_id=request_id,
        details=dict(details or {}),
    )


def policy_event_hook(audit: AuditLog) -> Callable[[str, str | None, dict[str, Any]], None]:
    """Record policy reloads, rejections, rollbacks and adoptions (`PolicyService.on_event`)."""

    def hook(kind: str, revision: str | None, detail: dict[str, Any]) -> None:
        actor = detail.get("actor")
        audit.append(
            AuditEvent(
                action=kind,
                outcome="rejected" if kind.endswith("rejected") else "success",
                actor=Actor(id=str(actor), type="operator") if actor else Actor.system("policy"),
                resource=f"policy-bundle:{revision}" if revision else "policy-bundle",
                policy_revision=revision,
                details={k: v for k, v in detail.items() if k in ("previous", "origin", "problems")},
            ),
            timeout=10.0,
        )

    return hook
