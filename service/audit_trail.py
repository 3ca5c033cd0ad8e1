"""Policy activations and rejections, written to the audit log.

The other records are written next to their code: state changes by `service.commands`
(in the change's own transaction), denials by `service.denials` (bounded, in the caller's
log), gateway decisions by the pipeline, debug sessions by `service.debug.sessions`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from audit.log import AuditLog
from audit.records import Actor, AuditEvent

_POLICY_DETAIL_KEYS = (
    "previous", "via", "origin", "changes", "coverage", "min_coverage", "untested", "allow_untested",
    "problems", "problem_count", "code",
)


def policy_event_hook(audit: AuditLog) -> Callable[[str, str | None, dict[str, Any]], None]:
    """Record policy activations and rejections (`PolicyService.on_event`), durably: an
    activation whose record cannot be written is not made (the hook's exception aborts it)."""

    def hook(kind: str, revision: str | None, detail: dict[str, Any]) -> None:
        actor = detail.get("actor")
        ip = detail.get("actor_ip")
        if actor == "bootstrap":
            who = Actor(id="bootstrap", type="system")
        elif actor:
            who = Actor(id=str(actor), type="operator", ip=str(ip) if ip else None)
        else:
            who = Actor.system("policy")
        audit.append(
            AuditEvent(
                action=kind,
                outcome="rejected" if kind.endswith("rejected") else "success",
                actor=who,
                resource=f"policy-bundle:{revision}" if revision else "policy-bundle",
                policy_revision=revision,
                details={k: detail[k] for k in _POLICY_DETAIL_KEYS if k in detail},
            ),
            timeout=10.0,
        )

    return hook
