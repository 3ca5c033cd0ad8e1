"""Authorization seam for the admin, policy and audit APIs.

Routers ask an `Authorizer` whether a principal may perform an admin action on a tenant;
they never check roles themselves. The Cedar-backed implementation lives in
`service.policy`; `RoleAuthorizer` is the built-in fallback used before policies load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from service.auth.principal import Principal


class AdminAction(StrEnum):
    EXTENSION_PUBLISH = "extension.publish"
    EXTENSION_READ = "extension.read"
    INSTALL_READ = "install.read"
    INSTALL_MANAGE = "install.manage"
    CONFIG_WRITE = "install.config.write"
    SECRETS_WRITE = "install.secrets.write"
    AUDIT_READ = "audit.read"
    AUDIT_EXPORT = "audit.export"
    POLICY_READ = "policy.read"
    POLICY_MANAGE = "policy.manage"


@dataclass(frozen=True)
class AuthzDecision:
    allowed: bool
    policy_ids: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    revision: str | None = None
    errors: tuple[str, ...] = field(default=())
    # What the policy engine decided on (`service.policy.model.DecisionInputs`), if it did.
    inputs: Any = field(default=None, compare=False, repr=False)


class Authorizer(Protocol):
    def authorize_admin(self, principal: Principal, action: AdminAction, *, tenant_id: str | None) -> AuthzDecision:
        """`tenant_id` is the tenant the action touches (None for global registry actions)."""
        ...


_GLOBAL_ACTIONS = {AdminAction.EXTENSION_PUBLISH, AdminAction.POLICY_MANAGE}
_READ_ACTIONS = {AdminAction.EXTENSION_READ, AdminAction.INSTALL_READ, AdminAction.POLICY_READ}


class RoleAuthorizer:
    """Role checks without Cedar: tenant `admin` in its own tenant, `platform-admin` anywhere."""

    def authorize_admin(self, principal: Principal, action: AdminAction, *, tenant_id: str | None) -> AuthzDecision:
        if principal.is_platform_admin:
            return AuthzDecision(True, ("builtin.platform-admin",))
        if action in _GLOBAL_ACTIONS:
            return AuthzDecision(False, (), ("global action needs platform-admin",))
        same_tenant = tenant_id is None or tenant_id == principal.tenant
        if same_tenant and (principal.has_role("admin") or (action in _READ_ACTIONS and principal.roles)):
            return AuthzDecision(True, ("builtin.tenant-admin",))
        return AuthzDecision(False, (), ("requires admin of the same tenant",))
