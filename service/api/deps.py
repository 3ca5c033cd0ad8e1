"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth.principal import Principal
from service.auth.tokens import AuthenticationError
from service.authz import AdminAction
from service.container import ServiceContainer
from service.errors import Forbidden, Unauthenticated

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


def require(services: ServiceContainer, principal: Principal, action: AdminAction, tenant_id: str | None) -> None:
    """Ask the authorizer; a denial is a 403 that names the action, never the policy internals."""
    decision = services.authorizer.authorize_admin(principal, action, tenant_id=tenant_id)
    if not decision.allowed:
        raise Forbidden({"message": f"not allowed to {action.value}", "action": action.value})
