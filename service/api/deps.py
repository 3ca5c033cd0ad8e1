"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.audit_trail import admin_event, append_or_503
from service.auth.principal import Principal
from service.auth.tokens import AuthenticationError
from service.authz import AdminAction
from service.container import ServiceContainer
from service.errors import Forbidden, Unauthenticated

log = logging.getLogger("extgate.api")
_bearer = HTTPBearer(auto_error=False, description="JWT with sub, tenant, roles")


def get_services(request: Request) -> ServiceContainer:
    services: ServiceContainer = request.app.state.services
    return services


Services = Annotated[ServiceContainer, Depends(get_services)]


def get_principal(
    request: Request,
    services: Services,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("a bearer token is required")
    try:
        principal = services.verifier.verify(credentials.credentials)
    except AuthenticationError as exc:
        request.state.auth_failure = exc.reason  # for logs only
        raise Unauthenticated("the bearer token is not valid") from None
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require(
    services: ServiceContainer,
    principal: Principal,
    action: AdminAction,
    tenant_id: str | None,
    *,
    request_id: str | None = None,
) -> None:
    """Ask the authorizer; a denial is audited and answered 403 naming the action only."""
    decision = services.authorizer.authorize_admin(principal, action, tenant_id=tenant_id)
    if not decision.allowed:
        audit = getattr(services, "audit", None)
        if audit is not None:
            # Best effort: the request is refused whether or not the record lands.
            try:
                audit.submit(
                    admin_event(
                        principal,
                        action.value,
                        "deny",
                        tenant_id=tenant_id,
                        resource=None,
                        request_id=request_id,
                        policy_ids=decision.policy_ids,
                        policy_revision=decision.revision,
                    ),
                    defer=True,
                )
            except Exception as exc:  # noqa: BLE001 - never turn a 403 into a 500
                log.warning("could not queue audit record for a denial: %s", type(exc).__name__)
        raise Forbidden({"message": f"not allowed to {action.value}", "action": action.value})


@dataclass
class AdminContext:
    """An admin request: authorize it, then record what it changed (durably, before answering)."""

    services: ServiceContainer
    principal: Principal
    request_id: str | None

    def require(self, action: AdminAction, tenant_id: str | None) -> None:
        require(self.services, self.principal, action, tenant_id, request_id=self.request_id)

    def record(
        self, action: AdminAction | str, tenant_id: str | None, resource: str, details: Mapping[str, Any] | None = None
    ) -> None:
        name = action.value if isinstance(action, AdminAction) else action
        append_or_503(
            self.services.audit,
            admin_event(
                self.principal,
                name,
                "success",
                tenant_id=tenant_id,
                resource=resource,
                request_id=self.request_id,
                policy_revision=getattr(self.services.policy, "revision", None),
                details=details,
            ),
        )


def get_admin_context(request: Request, services: Services, principal: CurrentPrincipal) -> AdminContext:
    return AdminContext(services, principal, getattr(request.state, "request_id", None))


Admin = Annotated[AdminContext, Depends(get_admin_context)]
