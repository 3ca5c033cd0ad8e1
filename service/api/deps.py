"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from audit.records import Actor, AuditEvent
from service.auth.principal import Principal
from service.auth.tokens import AuthenticationError
from service.authz import AdminAction
from service.commands import Caller, CommandContext
from service.container import ServiceContainer
from service.denials import DenialRecorder, log_tenant, principal_key
from service.errors import Forbidden, Unauthenticated
from service.request_context import current_request

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
) -> Any:
    """Ask the authorizer; a denial is recorded in the caller's own log (bounded per
    principal, see `service.denials`) and answered 403 naming the action only.
    Returns the allowing decision."""
    decision = services.authorizer.authorize_admin(principal, action, tenant_id=tenant_id)
    if not decision.allowed:
        _record_denial(services, principal, action, tenant_id, decision, request_id)
        raise Forbidden({"message": f"not allowed to {action.value}", "action": action.value})
    return decision


def _record_denial(
    services: ServiceContainer, principal: Principal, action: AdminAction, tenant_id: str | None, decision: Any,
    request_id: str | None,
) -> None:
    recorder: DenialRecorder | None = getattr(services, "denials", None)
    if recorder is None:
        return
    try:  # the request is refused whether or not the record lands
        info = current_request()
        # What the policy engine decided on (request + entity snapshot), if it did.
        inputs = getattr(decision, "inputs", None)
        recorded, attachments = inputs.record() if inputs is not None else (None, None)
        own_log = log_tenant(principal.tenant, principal.is_platform_admin)
        details: dict[str, Any] = {"decision": recorded} if recorded is not None else {}
        if tenant_id != own_log:
            details["target_tenant"] = tenant_id if tenant_id is not None else "platform"
        event = AuditEvent(
            action=f"admin.{action.value}", outcome="deny", tenant_id=own_log,
            actor=Actor.from_principal(principal, auth="jwt", ip=info.client_ip),
            resource=f"tenant:{tenant_id}" if tenant_id is not None else "platform",
            policy_ids=tuple(decision.policy_ids), policy_revision=decision.revision,
            request_id=request_id or info.request_id, details=details, attachments=dict(attachments or {}),
        )
        recorder.record(principal_key(principal.subject, principal.tenant), event,
                        target=tenant_id if tenant_id is not None else "platform")
    except Exception as exc:  # noqa: BLE001 - never turn a 403 into a 500
        log.warning("could not record a denial: %s", type(exc).__name__)


@dataclass
class AdminContext:
    """An admin request: authorize it, then run the command that changes state (the change
    and its audit record commit together, see `service.commands`)."""

    services: ServiceContainer
    principal: Principal
    request_id: str | None
    client_ip: str | None = None
    decision: Any = None  # the last allowing decision (its policy ids go into the record)

    def require(self, action: AdminAction, tenant_id: str | None) -> None:
        self.decision = require(self.services, self.principal, action, tenant_id, request_id=self.request_id)

    @property
    def commands(self) -> CommandContext:
        return CommandContext(self.services)

    @property
    def caller(self) -> Caller:
        """The token's user, with the client's address, as the records' actor."""
        return Caller(
            Actor.from_principal(self.principal, auth="jwt", ip=self.client_ip),
            request_id=self.request_id,
            policy_ids=tuple(getattr(self.decision, "policy_ids", ()) or ()),
            policy_revision=getattr(self.decision, "revision", None) or getattr(self.services.policy, "revision", None),
        )


def client_ip(request: Request) -> str | None:
    """The client's address as uvicorn resolved it (X-Forwarded-For only from trusted proxies)."""
    return request.client.host if request.client else None


def get_admin_context(request: Request, services: Services, principal: CurrentPrincipal) -> AdminContext:
    return AdminContext(services, principal, getattr(request.state, "request_id", None), client_ip(request))


Admin = Annotated[AdminContext, Depends(get_admin_context)]
