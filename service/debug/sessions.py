"""Debug sessions: authorize (Cedar `debug.view`), ticket, redeem, revalidate, audit.

The tenant is the caller's own unless the request names another one explicitly in the
body; then only a policy that allows cross-tenant viewing (platform administrators with a
justification) lets it through, and the justification is audited. Nothing in a query
string ever selects a tenant.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from audit.actions import DEBUG_SESSION_DENY, DEBUG_SESSION_END, DEBUG_SESSION_START
from audit.records import Actor, AuditEvent
from runner.debug.wire import key_part, stream_key
from service.auth.principal import Principal
from service.debug.config import DebugSessionSettings
from service.debug.justification import visible_text
from service.debug.tickets import SessionGrant, SessionStore
from service.denials import DenialRecorder, log_tenant, principal_key
from service.errors import Forbidden, NotFound, ServiceUnavailable
from service.policy import DebugCounts, Decision, InstallFacts
from service.registry.installs import resolve_active_install
from service.request_context import current_request

log = logging.getLogger("extgate.debug")

LEVELS = ("debug", "info", "warn", "error")
DEBUG_CAPABILITY = "cap:debug.logs"


@dataclass(frozen=True)
class OpenRequest:
    extension: str
    install: str | None = None
    tenant: str | None = None
    request_id: str | None = None
    min_level: str | None = None
    justification: str | None = None


@dataclass(frozen=True)
class Ticket:
    ticket: str
    expires_in_s: int
    grant: SessionGrant


@dataclass
class SessionStats:
    started: float
    delivered: int = 0
    dropped: int = 0


def principal_of(grant: SessionGrant) -> Principal:
    return Principal(subject=grant.subject, tenant=grant.principal_tenant, roles=frozenset(grant.roles),
                     user_type=grant.user_type)


class DebugSessions:
    def __init__(self, settings: DebugSessionSettings, store: SessionStore, *, db: Any, policy: Any,
                 audit: Any, denials: DenialRecorder | None = None) -> None:
        self.settings = settings
        self.store = store
        self.db = db
        self.policy = policy
        self.audit = audit
        self.denials = denials

    def tenant_key(self, tenant: str) -> str:
        return f"{self.settings.key_prefix}:{{{key_part(tenant)}}}:viewers"

    def _facts(self, tenant: str, ref: str) -> tuple[InstallFacts, str]:
        with self.db.session() as session:
            active = resolve_active_install(session, tenant, ref)
            if active is None:
                raise NotFound("no such active install for this tenant", code="install_not_found")
            install, ext = active.install, active.extension
            facts = InstallFacts(tenant=tenant, install_id=install.id, extension_id=ext.id, slug=ext.slug,
                                 capabilities=frozenset(install.granted_capabilities), enabled=install.enabled)
            return facts, active.version.id

    def _decide(self, principal: Principal, facts: InstallFacts, counts: DebugCounts, justification: str) -> Decision:
        if self.policy is None:
            raise ServiceUnavailable("the policy engine is not configured", code="policy_unavailable")
        return self.policy.decide_debug_view(principal, facts, counts, justification)

    def open(self, principal: Principal, req: OpenRequest, request_id: str | None = None) -> Ticket:
        s = self.settings
        tenant = req.tenant or principal.tenant
        justification = visible_text(req.justification)  # ten zero-width spaces are not ten characters
        if tenant != principal.tenant and not principal.is_platform_admin:
            # Refused before any lookup: whether another tenant's install exists is not ours to say.
            self._audit_denial(principal, tenant, None, req, ("tenancy.debug-same-tenant",), "", request_id)
            raise Forbidden({"message": "not allowed to debug.view", "action": "debug.view"})
        ref = req.install or req.extension
        facts, _version = self._facts(tenant, ref)
        if req.install and req.extension not in (facts.extension_id, facts.slug):
            raise NotFound("the install is not an install of this extension", code="install_not_found")
        key = stream_key(s.key_prefix, tenant, facts.extension_id, facts.install_id)
        tenant_key = self.tenant_key(tenant)
        try:
            tenant_n, stream_n = self.store.counts(tenant_key, key)
        except Exception as exc:  # noqa: BLE001 - fail closed: no count, no session
            log.warning("debug session store unavailable: %s", type(exc).__name__)
            raise ServiceUnavailable("the debug session store is unavailable", code="debug_unavailable") from None
        counts = DebugCounts(tenant_n, s.max_sessions_per_tenant, stream_n, s.max_viewers_per_stream)
        decision = self._decide(principal, facts, counts, justification)
        inputs = getattr(decision, "inputs", None)
        recorded, attachments = inputs.record() if inputs is not None else (None, {})
        if not decision.allowed:
            self._audit_denial(principal, tenant, facts, req, decision.policy_ids, decision.revision, request_id,
                               recorded, attachments)
            raise Forbidden({"message": "not allowed to debug.view", "action": "debug.view",
                             "reasons": list(decision.reasons)})
        grant = SessionGrant(
            session_id=uuid.uuid4().hex, tenant_id=tenant, extension_id=facts.extension_id,
            install_id=facts.install_id, stream_key=key, subject=principal.subject,
            principal_tenant=principal.tenant, roles=tuple(sorted(principal.roles)), user_type=principal.user_type,
            justification=justification, request_id_filter=req.request_id, min_level=req.min_level,
            policy_ids=decision.policy_ids, policy_revision=decision.revision, max_duration_s=s.max_session_s,
            decision=recorded, attachments={k: v.decode("utf-8") for k, v in attachments.items()} or None,
        )
        ticket = secrets.token_urlsafe(32)
        try:
            ok = self.store.reserve(grant, ticket, s.ticket_ttl_s, tenant_key,
                                    s.max_sessions_per_tenant, s.max_viewers_per_stream)
        except Exception as exc:  # noqa: BLE001
            log.warning("debug session store unavailable: %s", type(exc).__name__)
            raise ServiceUnavailable("the debug session store is unavailable", code="debug_unavailable") from None
        if not ok:  # lost a race for the last slot
            raise Forbidden({"message": "the debug session cap is reached", "action": "debug.view"})
        return Ticket(ticket, s.ticket_ttl_s, grant)

    def redeem(self, ticket: str) -> SessionGrant | None:
        if not ticket or len(ticket) > 128:
            return None
        try:
            return self.store.redeem(ticket)
        except Exception as exc:  # noqa: BLE001
            log.warning("debug session store unavailable: %s", type(exc).__name__)
            raise ServiceUnavailable("the debug session store is unavailable", code="debug_unavailable") from None

    def still_allowed(self, grant: SessionGrant) -> bool:
        """Re-ask the policy with today's install facts; caps do not end running sessions."""
        try:
            facts, _ = self._facts(grant.tenant_id, grant.install_id)
        except NotFound:
            return False
        s = self.settings
        counts = DebugCounts(0, s.max_sessions_per_tenant, 0, s.max_viewers_per_stream)
        return bool(self._decide(principal_of(grant), facts, counts, grant.justification).allowed)

    def renew(self, grant: SessionGrant) -> None:
        try:
            self.store.renew(grant, self.tenant_key(grant.tenant_id), self.settings.lease_s)
        except Exception as exc:  # noqa: BLE001 - a Redis outage must not end live sessions
            log.warning("could not renew a debug session lease: %s", type(exc).__name__)

    def release(self, grant: SessionGrant) -> None:
        try:
            self.store.release(grant, self.tenant_key(grant.tenant_id))
        except Exception as exc:  # noqa: BLE001 - the lease expires by itself
            log.warning("could not release a debug session lease: %s", type(exc).__name__)

    # --- audit -------------------------------------------------------------------------

    def _event(self, action: str, outcome: str, grant: SessionGrant, details: dict[str, Any]) -> AuditEvent:
        return AuditEvent(
            action=action, outcome=outcome, tenant_id=grant.tenant_id,
            actor=Actor(id=grant.subject, type=grant.user_type, tenant=grant.principal_tenant, roles=grant.roles,
                        auth="ticket", ip=current_request().client_ip),
            resource=f"install:{grant.install_id}/debug", policy_ids=grant.policy_ids,
            policy_revision=grant.policy_revision,
            details={"session_id": grant.session_id, "extension_id": grant.extension_id,
                     "install_id": grant.install_id, "viewer_tenant": grant.principal_tenant,
                     "cross_tenant": grant.principal_tenant != grant.tenant_id,
                     "justification": grant.justification or None, **details},
        )

    def audit_start(self, grant: SessionGrant) -> None:
        """Durable before the first line is sent; an unavailable audit log refuses the session."""
        if self.audit is None:
            raise ServiceUnavailable("the audit log is not configured", code="audit_unavailable")
        event = self._event(DEBUG_SESSION_START, "success", grant, {
            "request_id_filter": grant.request_id_filter, "min_level": grant.min_level,
            "max_duration_ms": int(grant.max_duration_s * 1000)})
        if grant.decision is not None:  # what debug.view was decided on, snapshot attached
            event = replace(event, details={**event.details, "decision": grant.decision},
                            attachments={k: v.encode("utf-8") for k, v in (grant.attachments or {}).items()})
        try:
            self.audit.append(event, timeout=10.0)
        except Exception as exc:
            log.error("audit append failed for %s: %s", DEBUG_SESSION_START, type(exc).__name__)
            raise ServiceUnavailable("the audit log is unavailable; retry", code="audit_unavailable") from exc

    def audit_end(self, grant: SessionGrant, reason: str, stats: SessionStats) -> None:
        event = self._event(DEBUG_SESSION_END, reason, grant, {
            "end_reason": reason, "duration_ms": int((time.monotonic() - stats.started) * 1000),
            "events_delivered": stats.delivered, "dropped": stats.dropped})
        try:
            self.audit.append(event, timeout=10.0)
        except Exception as exc:  # noqa: BLE001 - the session is over either way; say so loudly
            log.error("audit append failed for %s: %s", DEBUG_SESSION_END, type(exc).__name__)

    def _audit_denial(self, principal: Principal, tenant: str, facts: InstallFacts | None, req: OpenRequest,
                      policy_ids: tuple[str, ...], revision: str, request_id: str | None = None,
                      recorded: dict[str, Any] | None = None, attachments: dict[str, bytes] | None = None) -> None:
        """In the caller's own log (naming the targeted tenant), bounded per principal."""
        if self.denials is None:
            return
        info = current_request()
        own_log = log_tenant(principal.tenant, principal.is_platform_admin)
        details: dict[str, Any] = {"extension": req.extension[:200],
                                   "justification": visible_text(req.justification) or None,
                                   **({"decision": recorded} if recorded is not None else {})}
        if tenant != own_log:
            details["target_tenant"] = tenant
        event = AuditEvent(
            action=DEBUG_SESSION_DENY, outcome="deny", tenant_id=own_log,
            actor=Actor.from_principal(principal, auth="jwt", ip=info.client_ip),
            resource=f"install:{facts.install_id}/debug" if facts else None,
            policy_ids=tuple(policy_ids), policy_revision=revision or None, request_id=request_id or info.request_id,
            details=details, attachments=attachments or {},
        )
        try:
            self.denials.record(principal_key(principal.subject, principal.tenant), event, target=tenant)
        except Exception as exc:  # noqa: BLE001 - the request is refused either way
            log.warning("could not record a debug denial: %s", type(exc).__name__)
