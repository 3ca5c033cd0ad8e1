"""Well-known audit actions and builders for the events the service records.

Keeping the shapes here keeps records consistent across the gateway, admin API, policy
engine and debug stream. Every builder returns a plain `AuditEvent`; durations are integer
milliseconds, sizes integer bytes, never floats. Details never carry secret values, tokens
or bodies (see `audit.records.sanitize_details`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from audit.records import Actor, AuditEvent

GATEWAY_DECISION = "gateway.decision"  # outcome: allow | deny
EXECUTION = "execution.complete"  # outcome: success | error | timeout | ...
# Changes through the admin API or the CLI: `admin.<operation>`, outcome success. A refused
# admin request is `admin.<AdminAction value>` with outcome deny.
ADMIN_PREFIX = "admin."
EXTENSION_PUBLISH = "admin.extension.publish"
INSTALL_CREATE = "admin.install.create"
INSTALL_UPDATE = "admin.install.update"  # grant / egress changed
INSTALL_UPGRADE = "admin.install.upgrade"
INSTALL_ENABLE = "admin.install.enable"
INSTALL_DISABLE = "admin.install.disable"
INSTALL_REMOVE = "admin.install.remove"
CONFIG_WRITE = "admin.install.config.write"  # details: key names and the new version
SECRETS_WRITE = "admin.install.secrets.write"  # details: key names only
SECRETS_ROTATE = "admin.install.secrets.rotate"
# Policy activations and rejections (service.policy.service emits these; adopting a revision
# another process activated is not a new record).
POLICY_RELOADED = "policy.reloaded"  # also bootstrap; details: previous, via, changes, coverage
POLICY_REJECTED = "policy.rejected"  # outcome rejected; details.problems
POLICY_ROLLED_BACK = "policy.rolled_back"
# A principal's denials beyond the first N in one window (service.denials), with their count.
DENIALS_SUMMARIZED = "audit.denials_summarized"
DEBUG_SESSION_START = "debug_session.start"
DEBUG_SESSION_END = "debug_session.end"  # details.end_reason
DEBUG_SESSION_DENY = "debug_session.deny"

DEBUG_END_REASONS = frozenset(
    {
        "client_closed",
        "max_duration",
        "idle_timeout",
        "revoked",
        "permission_changed",
        "server_shutdown",
        "redis_unavailable",
        "error",
    }
)


def decision_event(
    *,
    allowed: bool,
    tenant_id: str | None,
    actor: Actor | None,
    install_id: str,
    endpoint: str,
    request_id: str | None,
    policy_ids: Sequence[str] = (),
    policy_revision: str | None = None,
    reasons: Sequence[str] = (),
    extension: str | None = None,
    details: Mapping[str, Any] | None = None,
    decision: Mapping[str, Any] | None = None,
    attachments: Mapping[str, bytes] | None = None,
) -> AuditEvent:
    """A gateway authorization decision (allow and deny alike, with the determining policies).

    `decision`: what it was decided on (`details["decision"]`: principal, action, resource,
    context and the digest of the entity snapshot), `attachments` the snapshot bytes by
    digest; see `service.policy.model.DecisionInputs.record`."""
    extra: dict[str, Any] = {"reasons": list(reasons)}
    if extension is not None:
        extra["extension"] = extension
    extra.update(details or {})
    if decision is not None:
        extra["decision"] = decision
    return AuditEvent(
        action=GATEWAY_DECISION,
        outcome="allow" if allowed else "deny",
        tenant_id=tenant_id,
        actor=actor,
        resource=f"install:{install_id}/endpoint:{endpoint}",
        policy_ids=tuple(policy_ids),
        policy_revision=policy_revision,
        request_id=request_id,
        details=extra,
        attachments=dict(attachments or {}),
    )


def execution_event(
    *,
    tenant_id: str,
    actor: Actor | None,
    install_id: str,
    endpoint: str,
    request_id: str | None,
    status: int | None,
    duration_ms: int,
    error_class: str | None = None,
    fuel_used: int | None = None,
    outcome: str | None = None,
) -> AuditEvent:
    """The outcome of running an extension for a request."""
    details: dict[str, Any] = {"status": status, "duration_ms": int(duration_ms)}
    if error_class is not None:
        details["error_class"] = error_class
    if fuel_used is not None:
        details["fuel_used"] = int(fuel_used)
    return AuditEvent(
        action=EXECUTION,
        outcome=outcome or ("error" if error_class else "success"),
        tenant_id=tenant_id,
        actor=actor,
        resource=f"install:{install_id}/endpoint:{endpoint}",
        request_id=request_id,
        details=details,
    )


def admin_event(
    action: str,
    *,
    actor: Actor | None,
    tenant_id: str | None,
    resource: str,
    outcome: str = "success",
    request_id: str | None = None,
    policy_ids: Sequence[str] = (),
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """An admin change: publish, install, upgrade, config write, secrets write (key names only)."""
    return AuditEvent(
        action=action,
        outcome=outcome,
        tenant_id=tenant_id,
        actor=actor,
        resource=resource,
        policy_ids=tuple(policy_ids),
        request_id=request_id,
        details=dict(details or {}),
    )


def policy_event(
    action: str,
    *,
    outcome: str,
    revision: str | None,
    actor: Actor | None = None,
    previous_revision: str | None = None,
    errors: Sequence[str] = (),
) -> AuditEvent:
    """Policy reload / rejection (outcome `rejected`, with errors) / rollback."""
    details: dict[str, Any] = {}
    if previous_revision is not None:
        details["previous_revision"] = previous_revision
    if errors:
        details["errors"] = [e[:500] for e in errors[:20]]
    return AuditEvent(
        action=action,
        outcome=outcome,
        actor=actor or Actor.system("policy"),
        resource="policies",
        policy_revision=revision,
        details=details,
    )


def debug_session_event(
    action: str,
    *,
    session_id: str,
    tenant_id: str,
    actor: Actor | None,
    install_id: str,
    end_reason: str | None = None,
    duration_ms: int | None = None,
    events_delivered: int | None = None,
    dropped: int | None = None,
    justification: str | None = None,
    request_id: str | None = None,
) -> AuditEvent:
    """Debug stream session start and end (with the end reason)."""
    if end_reason is not None and end_reason not in DEBUG_END_REASONS:
        raise ValueError(f"unknown debug session end reason {end_reason!r}")
    details: dict[str, Any] = {"session_id": session_id}
    for key, value in (
        ("end_reason", end_reason),
        ("duration_ms", duration_ms),
        ("events_delivered", events_delivered),
        ("dropped", dropped),
        ("justification", justification),
    ):
        if value is not None:
            details[key] = value
    return AuditEvent(
        action=action,
        outcome="success" if action == DEBUG_SESSION_START else (end_reason or "ended"),
        tenant_id=tenant_id,
        actor=actor,
        resource=f"install:{install_id}/debug",
        request_id=request_id,
        details=details,
    )
