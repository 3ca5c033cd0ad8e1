"""Policy API: status, explanations, reload and rollback.

Reading (status, explain) needs `policy.read`; reload and rollback need
`policy.manage` (both decided by the policies themselves, via the authorizer).
Errors are `{"error": code, "detail": ...}`: 503 `policy_unavailable` when the service
has no policy engine, 422 `policy_rejected` when a candidate fails validation or its
tests (the active bundle is unchanged), 404 `revision_not_found` for rollback.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import CurrentPrincipal, Services, require
from service.api.schemas import error_responses  # noqa: E402
from service.authz import AdminAction
from service.errors import DomainError, InvalidInput, NotFound, ServiceUnavailable
from service.policy.engine import EntitiesError, PolicyEngine
from service.policy.explain import explain_request
from service.policy.service import CandidateRejected, PolicyService
from service.policy.store import RevisionNotFound

router = APIRouter(prefix="/api/policy", tags=["policy"])


class PolicyRejected(DomainError):
    status = 422
    code = "policy_rejected"


class ExplainRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"principal": "acme-viewer", "action": "write", "resource": "acme-crm",
         "context": {"method": "PUT", "path": "/kv/notes/first", "endpointDeclared": True,
                     "endpointTemplate": "/kv/:ns/:key"}}]})

    principal: str | dict[str, str] = Field(description='e.g. "acme-viewer" or {"type": "User", "id": "..."}')
    action: str = Field(description="read, write, debug.view or an admin action such as audit.read")
    resource: str | dict[str, str] = Field(description='e.g. "acme-crm" or "ExtGate::Tenant::\\"acme\\""')
    context: dict[str, Any] | None = Field(default=None, description="missing keys get defaults")
    entities: list[dict[str, Any]] | None = Field(
        default=None, description="Cedar entities JSON; default: the bundle's test entities"
    )


class RollbackRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"revision": "sha256:3f2a9c"}]})

    revision: str = Field(min_length=4, max_length=80, description="a kept revision or a unique prefix of one")


def _policy(services: Services) -> PolicyService:
    policy = services.policy
    if not isinstance(policy, PolicyService):
        raise ServiceUnavailable("the policy engine is not configured", code="policy_unavailable")
    return policy


@router.get(
    "/status",
    responses=error_responses(401, 403, 503),
    summary="Active revision, load time, last error and kept revisions",
)
def policy_status(services: Services, principal: CurrentPrincipal) -> dict[str, Any]:
    require(services, principal, AdminAction.POLICY_READ, None)
    return _policy(services).status().to_dict()


@router.post(
    "/explain",
    responses=error_responses(401, 403, 422, 503),
    summary="Decide a request and explain it (determining policies, why-not)",
)
def policy_explain(body: ExplainRequest, services: Services, principal: CurrentPrincipal) -> dict[str, Any]:
    require(services, principal, AdminAction.POLICY_READ, None)
    engine = _policy(services).engine
    if not isinstance(engine, PolicyEngine):
        raise ServiceUnavailable("no valid policy bundle is active", code="policy_unavailable")
    try:
        explanation = explain_request(engine, body.principal, body.action, body.resource, body.context, body.entities)
    except (ValueError, EntitiesError) as exc:
        raise InvalidInput(str(exc)) from None
    return explanation.to_dict()


@router.post(
    "/reload", responses=error_responses(401, 403, 422, 503), summary="Validate the policy directory and activate it"
)
def policy_reload(services: Services, principal: CurrentPrincipal) -> dict[str, Any]:
    require(services, principal, AdminAction.POLICY_MANAGE, None)
    try:
        status = _policy(services).reload(actor=principal.subject)
    except CandidateRejected as exc:
        raise PolicyRejected(exc.to_dict()) from None
    return status.to_dict()


@router.post("/rollback", responses=error_responses(401, 403, 404, 422, 503), summary="Re-activate a kept revision")
def policy_rollback(body: RollbackRequest, services: Services, principal: CurrentPrincipal) -> dict[str, Any]:
    require(services, principal, AdminAction.POLICY_MANAGE, None)
    try:
        status = _policy(services).rollback(body.revision, actor=principal.subject)
    except RevisionNotFound as exc:
        raise NotFound(str(exc).strip("'\""), code="revision_not_found") from None
    except CandidateRejected as exc:
        raise PolicyRejected(exc.to_dict()) from None
    return status.to_dict()
