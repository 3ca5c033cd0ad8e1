"""`service.authz.Authorizer` backed by the Cedar policies (policies/admin.cedar, tenancy.cedar)."""

from __future__ import annotations

from typing import Protocol

from service.auth.principal import Principal
from service.authz import AdminAction, AuthzDecision
from service.policy.model import Decision


class AdminDecider(Protocol):
    def decide_admin(self, principal: Principal, action: str, *, tenant_id: str | None) -> Decision: ...


class CedarAuthorizer:
    """Admin decisions from the active policy bundle. Deny on any error or missing bundle."""

    def __init__(self, policy: AdminDecider) -> None:
        self.policy = policy

    def authorize_admin(self, principal: Principal, action: AdminAction, *, tenant_id: str | None) -> AuthzDecision:
        decision = self.policy.decide_admin(principal, AdminAction(action).value, tenant_id=tenant_id)
        return AuthzDecision(
            allowed=decision.allowed,
            policy_ids=decision.policy_ids,
            reasons=decision.reasons,
            revision=decision.revision,
            errors=decision.errors,
            inputs=decision.inputs,
        )
