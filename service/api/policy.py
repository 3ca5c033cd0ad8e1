"""Policy API: status, explanations, reload and rollback.

Reading (status, explain) needs `policy.read`; reload and rollback need
`policy.manage` (both decided by the policies themselves, via the authorizer).
Reload and rollback are the only ways a policy change goes live; each writes one audit
record (with the caller's address) before the swap.
Errors are `{"error": code, "detail": ...}`: 503 `policy_unavailable` when the service
has no policy engine, 503 `audit_unavailable` when the activation could not be recorded,
422 `policy_rejected` when a candidate fails validation, its tests or the coverage gate,
409 `policy_activation_in_progress` when another reload or rollback is running (the active
bundle is unchanged in each case), 404 `revision_not_found` for rollback.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import CurrentPrincipal, Services, require
from service.api.schemas import error_responses  # noqa: E402
from service.authz import AdminAction
from service.errors import DomainError, InvalidInput, NotFound, ServiceUnavailable
from service.policy.engine import EntitiesError, PolicyEngine
from service.policy.explain import explain_request
from service.policy.service import ActivationInProgress, CandidateRejected, PolicyService
from service.policy.store import RevisionNotFound

router = APIRouter(prefix="/api/policy", tags=["policy"])


class PolicyRejected(DomainError):
    status = 422
    code = "policy_rejected"


class ActivationBusy(DomainError):
    status = 409
    code = "policy_activation_in_progress"


def _rejected(exc: CandidateRejected) -> DomainError:
    if isinstance(exc, ActivationInProgress):
        return ActivationBusy(exc.to_dict())
    return PolicyRejected(exc.to_dict())


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


_ALLOW_UNTESTED = Field(
    default=False,
    description="activate although test coverage is below the configured minimum (recorded in the audit record)",
)


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"allow_untested": False}]})

    allow_untested: bool = _ALLOW_UNTESTED


_NO_OVERRIDE = ReloadRequest()


class RollbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"revision": "sha256:3f2a9c", "allow_untested": False}]}
    )

    revision: str = Field(min_length=4, max_length=80, description="a kept revision or a unique prefix of one")
    allow_untested: bool = _ALLOW_UNTESTED


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


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post(
    "/reload",
    responses=error_responses(401, 403, 409, 422, 503),
    summary="Validate the policy directory (tests, coverage) and activate it; audited",
)
def policy_reload(
    request: Request,
    services: Services,
    principal: CurrentPrincipal,
    body: Annotated[ReloadRequest, Body(description="optional; the default activates only a fully tested folder")]
    = _NO_OVERRIDE,
) -> dict[str, Any]:
    require(services, principal, AdminAction.POLICY_MANAGE, None)
    try:
        status = _policy(services).reload(
            actor=principal.subject, actor_ip=_client_ip(request), allow_untested=body.allow_untested
        )
    except CandidateRejected as exc:
        raise _rejected(exc) from None
    return status.to_dict()


@router.post(
    "/rollback", responses=error_responses(401, 403, 404, 409, 422, 503), summary="Re-activate a kept revision; audited"
)
def policy_rollback(
    request: Request, body: RollbackRequest, services: Services, principal: CurrentPrincipal
) -> dict[str, Any]:
    require(services, principal, AdminAction.POLICY_MANAGE, None)
    try:
        status = _policy(services).rollback(
            body.revision, actor=principal.subject, actor_ip=_client_ip(request), allow_untested=body.allow_untested
        )
    except RevisionNotFound as exc:
        raise NotFound(str(exc).strip("'\""), code="revision_not_found") from None
    except CandidateRejected as exc:
        raise _rejected(exc) from None
    return status.to_dict()


_ALL_TENANTS = "*"


@router.get(
    "/decisions/explanation",
    responses=error_responses(401, 403, 404, 409, 422, 503),
    summary="Explain a recorded decision exactly as it was made (its revision, its entity snapshot)",
)
def recorded_decision_explanation(
    services: Services,
    principal: CurrentPrincipal,
    request_id: Annotated[
        str | None, Query(pattern=r"^[A-Za-z0-9._:-]{1,128}$", description="the request whose decision to explain")
    ] = None,
    seq: Annotated[int | None, Query(ge=0, le=2**53 - 1, description="or: the audit record's seq")] = None,
) -> dict[str, Any]:
    """The decision the audit log recorded for `request_id` (or at `seq`), re-evaluated with
    the policy revision and the entity snapshot the record names — the determining policies
    and their reasons as they were — plus `today`: what the active revision would decide on
    the same facts. `matches_record` is false (and `mismatch` says why) if re-evaluating
    does not reproduce the recorded outcome and policy ids. Needs `policy.read` and
    `audit.read` on the record's tenant. 404 `decision_not_found`, `not_a_decision`,
    `snapshot_not_found` (recorded before snapshots existed), `revision_not_found`; 409
    `snapshot_mismatch` (the stored snapshot does not hash to the recorded digest)."""
    from service.policy.recorded import RecordedDecisionError, explain_recorded, find_decision

    require(services, principal, AdminAction.POLICY_READ, None)
    # The caller's own tenant first, so a 404 tells an outsider nothing about other tenants.
    require(services, principal, AdminAction.AUDIT_READ, principal.tenant)
    if (request_id is None) == (seq is None):
        raise InvalidInput("give exactly one of request_id and seq", code="invalid_request")
    policy = _policy(services)
    log = services.audit
    if log is None or not hasattr(log, "get_blob"):
        raise ServiceUnavailable("the audit log is not configured", code="audit_unavailable")
    engine = policy.engine
    current = engine if isinstance(engine, PolicyEngine) else None
    try:
        rec = find_decision(log, request_id=request_id, seq=seq)
        tenant = rec.get("tenant")
        require(services, principal, AdminAction.AUDIT_READ, tenant if tenant is not None else _ALL_TENANTS)
        result = explain_recorded(log, policy.store, rec, current=current)
    except RecordedDecisionError as exc:
        raise DomainError({"message": exc.message}, code=exc.code, status=exc.status) from None
    return result.to_dict()
