"""Audit API: records (tenant-scoped, filtered, cursor-paginated), proofs, checkpoints, key.

Every route except the public key is authorized through `Services.authorizer` with
`AdminAction.AUDIT_READ` (`AUDIT_EXPORT` for the bulk export); this module never looks at
roles itself. The tenant scope is the caller's own tenant unless `tenant=` names another
one (the authorizer decides; normally platform admins only). `tenant=*` asks for every
tenant plus platform-wide records and is authorized with `tenant_id="*"`.

Errors are the service's uniform JSON `{"error": <code>, "detail": ...}` (raised as
`service.errors` domain errors): 403 `forbidden`, 404 `not_found`, 409 `not_checkpointed`,
422 `invalid_request`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from audit.log import NotCheckpointedError, NotFoundError, RecordFilter
from audit.records import parse_time_us
from service.api.deps import CurrentPrincipal, Services, require
from service.api.schemas import RETRY_AFTER, ErrorBody, error_example, error_responses
from service.audit_verification import VerificationBusy, redact_for_tenant, verify_audit_log
from service.auth.tokens import TENANT_ID_RE
from service.authz import AdminAction
from service.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable

router = APIRouter(prefix="/api/audit", tags=["audit"])

ALL_TENANTS = "*"
# Sequence numbers and tree sizes are stored as signed 64-bit integers on both databases.
MAX_SEQ = 2**63 - 1
MAX_PAGE = 1000


class AuditRecordOut(BaseModel):
    seq: int
    leaf_hash: str
    record: dict[str, Any]


class RecordPage(BaseModel):
    records: list[AuditRecordOut]
    next_cursor: str | None = None


class CheckpointOut(BaseModel):
    origin: str
    size: int
    root: str
    note: str
    key_id: str
    created_at_us: int


class InclusionProofOut(BaseModel):
    format: str
    seq: int
    tree_size: int
    record: str
    leaf_hash: str
    path: list[str]
    checkpoint: str


class ConsistencyProofOut(BaseModel):
    old: int
    new: int
    path: list[str]


class PublicKeyOut(BaseModel):
    name: str
    algorithm: str
    key_id: str
    public_key: str
    vkey: str


class PublicKeysOut(BaseModel):
    origin: str
    keys: list[PublicKeyOut]


class FindingOut(BaseModel):
    kind: str
    seq: int
    seq_end: int | None = None
    detail: str | None = Field(default=None, description="omitted for tenant auditors (it names server files)")


class CountOut(BaseModel):
    valid: int
    total: int


class VerifyOut(BaseModel):
    """What `extgate audit verify --json` prints."""

    status: str = Field(description="ok, or the worst problem found")
    exit_code: int
    first_bad_seq: int | None
    first_bad_kind: str | None
    findings: list[FindingOut]
    warnings: list[str]
    records: int
    head_size: int | None
    checkpoints: CountOut
    exported_checkpoints: CountOut
    signed_size: int
    anchored_size: int
    unanchored_records: int
    tail_oldest_us: int | None
    elapsed_seconds: float
    records_per_second: int | None
    redacted: bool = Field(default=False, description="true when finding details were withheld")


_ERR = error_responses(401, 403, 404, 422)
_TENANT_PATTERN = f"^(\\*|{TENANT_ID_RE.pattern.strip('^$')})$"
TenantScope = Annotated[
    str | None,
    Query(pattern=_TENANT_PATTERN, description="tenant to read (default: your own); '*' = all tenants"),
]


def _log(services: Any) -> Any:
    log = services.audit
    if log is None:
        raise ServiceUnavailable({"message": "the audit log is not configured"})
    return log


def _cursor_encode(seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"seq": seq}).encode()).decode().rstrip("=")


def _cursor_decode(cursor: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        seq = data["seq"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ValueError("invalid cursor") from exc
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise ValueError("invalid cursor")
    return seq


def _filter(
    scope: str,
    action: str | None,
    outcome: str | None,
    actor: str | None,
    resource: str | None,
    request_id: str | None,
    since: str | None,
    until: str | None,
) -> RecordFilter:
    return RecordFilter(
        tenant_id=None if scope == ALL_TENANTS else scope,
        action=action,
        outcome=outcome,
        actor_id=actor,
        resource=resource,
        request_id=request_id,
        since_us=parse_time_us(since) if since else None,
        until_us=parse_time_us(until) if until else None,
    )


def _page_filter(
    scope: str,
    action: str | None = None,
    outcome: str | None = None,
    actor: str | None = None,
    resource: str | None = None,
    request_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> RecordFilter:
    try:
        return _filter(scope, action, outcome, actor, resource, request_id, since, until)
    except ValueError as exc:
        raise InvalidInput({"message": f"since/until: {exc}"}) from None


@router.get("/records", response_model=RecordPage, summary="List audit records", responses=_ERR)
def list_records(
    principal: CurrentPrincipal,
    services: Services,
    tenant: TenantScope = None,
    action: Annotated[str | None, Query(max_length=512, description="action, or a prefix ending in '.'")] = None,
    outcome: Annotated[str | None, Query(max_length=512)] = None,
    actor: Annotated[str | None, Query(max_length=512, description="actor id (principal subject)")] = None,
    resource: Annotated[str | None, Query(max_length=512)] = None,
    request_id: Annotated[str | None, Query(max_length=512)] = None,
    since: Annotated[str | None, Query(max_length=64, description="ISO 8601 time or age (24h, 7d); inclusive")] = None,
    until: Annotated[str | None, Query(max_length=64, description="ISO 8601 time or age; exclusive")] = None,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    order: Literal["asc", "desc"] = "desc",
) -> RecordPage:
    """A tenant's audit records (newest first by default), filtered, with an opaque cursor."""
    scope = tenant or principal.tenant
    require(services, principal, AdminAction.AUDIT_READ, scope)
    flt = _page_filter(scope, action, outcome, actor, resource, request_id, since, until)
    try:
        position = _cursor_decode(cursor) if cursor else None
    except ValueError:
        raise InvalidInput({"message": "invalid cursor"}) from None
    descending = order == "desc"
    page = _log(services).query(
        flt,
        after_seq=None if descending else position,
        before_seq=position if descending else None,
        limit=limit + 1,
        descending=descending,
    )
    more = len(page) > limit
    page = page[:limit]
    return RecordPage(
        records=[AuditRecordOut(seq=r.seq, leaf_hash=r.leaf_hash.hex(), record=r.parsed()) for r in page],
        next_cursor=_cursor_encode(page[-1].seq) if more and page else None,
    )


@router.get(
    "/records/{seq}/proof",
    response_model=InclusionProofOut,
    summary="Inclusion proof of one record",
    responses=error_responses(401, 403, 404, 409, 422),
)
def record_proof(
    seq: Annotated[int, Path(ge=0, le=MAX_SEQ, description="sequence number of the record")],
    principal: CurrentPrincipal,
    services: Services,
    size: Annotated[
        int | None, Query(ge=1, le=MAX_SEQ, description="prove against the checkpoint of this size")
    ] = None,
) -> InclusionProofOut:
    """Proof that a record is in the tree of a signed checkpoint; check offline (`extgate audit verify-proof`)."""
    try:
        record = _log(services).get(seq)
    except NotFoundError:
        # Authorize against the caller's tenant first so a 404 tells an outsider nothing.
        require(services, principal, AdminAction.AUDIT_READ, principal.tenant)
        raise NotFound({"message": f"no audit record {seq}"}) from None
    tenant = record.parsed().get("tenant")
    require(services, principal, AdminAction.AUDIT_READ, tenant if tenant is not None else ALL_TENANTS)
    try:
        bundle = _log(services).inclusion_proof(seq, tree_size=size)
    except NotCheckpointedError as exc:
        raise Conflict({"message": str(exc)}, code="not_checkpointed") from None
    except NotFoundError as exc:
        raise NotFound({"message": str(exc)}) from None
    return InclusionProofOut(**bundle.to_json())


@router.get("/checkpoints/latest", response_model=CheckpointOut, summary="Latest signed checkpoint", responses=_ERR)
def latest_checkpoint(principal: CurrentPrincipal, services: Services) -> CheckpointOut:
    """The newest signed checkpoint (C2SP note). Keep a copy: later logs must stay consistent with it."""
    require(services, principal, AdminAction.AUDIT_READ, principal.tenant)
    info = _log(services).latest_checkpoint()
    if info is None:
        raise NotFound({"message": "no checkpoint has been signed yet"})
    return CheckpointOut(origin=_log(services).origin, **info.to_json())


@router.get(
    "/consistency", response_model=ConsistencyProofOut, summary="Consistency proof between checkpoints", responses=_ERR
)
def consistency(
    principal: CurrentPrincipal,
    services: Services,
    old: Annotated[int, Query(ge=0, le=MAX_SEQ, description="size of the checkpoint you hold")],
    new: Annotated[int, Query(ge=0, le=MAX_SEQ, description="size of the newer checkpoint")],
) -> ConsistencyProofOut:
    """RFC 6962 proof that checkpoint `old` is a prefix of checkpoint `new`."""
    require(services, principal, AdminAction.AUDIT_READ, principal.tenant)
    if old > new:
        raise InvalidInput({"message": "old must not exceed new"})
    sizes = {cp.size for cp in _log(services).checkpoints()}
    if new not in sizes or (old not in sizes and old != 0):
        raise NotFound({"message": "both sizes must be signed checkpoints"})
    try:
        path = _log(services).consistency_proof(old, new)
    except NotFoundError as exc:
        raise NotFound({"message": str(exc)}) from None
    return ConsistencyProofOut(old=old, new=new, path=[h.hex() for h in path])


@router.get(
    "/export",
    summary="Export records as JSON Lines",
    responses={200: {"content": {"application/x-ndjson": {}}}, **_ERR},
    response_class=StreamingResponse,
)
def export_records(
    principal: CurrentPrincipal,
    services: Services,
    tenant: TenantScope = None,
    action: Annotated[str | None, Query(max_length=512)] = None,
    since: Annotated[str | None, Query(max_length=64)] = None,
    until: Annotated[str | None, Query(max_length=64)] = None,
) -> StreamingResponse:
    """One record per line, each line the record's stored bytes exactly as hashed."""
    scope = tenant or principal.tenant
    require(services, principal, AdminAction.AUDIT_EXPORT, scope)
    flt = _page_filter(scope, action=action, since=since, until=until)

    def lines() -> Iterator[bytes]:
        for record in _log(services).iter_records(flt):
            yield record.body + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post(
    "/verify",
    response_model=VerifyOut,
    summary="Verify the whole log now (leaves, roots, checkpoint signatures, contiguity)",
    responses={
        **error_responses(401, 403, 503),
        429: {"model": ErrorBody, "description": "`verification_in_progress`: one runs at a time per process",
              "content": error_example(429, "verification_in_progress"),
              "headers": {"retry-after": {**RETRY_AFTER, "required": True}}},
    },
)
def verify(principal: CurrentPrincipal, services: Services) -> Any:
    """Runs what `extgate audit verify` runs, in this process. Tenant auditors get the status,
    counts and positions of problems; callers who may read every tenant's records (platform
    auditors) also get each finding's wording."""
    require(services, principal, AdminAction.AUDIT_READ, principal.tenant)
    log = _log(services)
    try:
        report = verify_audit_log(log)
    except VerificationBusy:
        return JSONResponse({"error": "verification_in_progress",
                             "detail": {"message": "a verification is already running; retry shortly"}},
                            status_code=429, headers={"retry-after": "2"})
    full = services.authorizer.authorize_admin(principal, AdminAction.AUDIT_READ, tenant_id=ALL_TENANTS).allowed
    return JSONResponse(report if full else redact_for_tenant(report), headers={"cache-control": "no-store"})


@router.get("/public-key", response_model=PublicKeysOut, summary="Checkpoint signing keys")
def public_key(services: Services) -> PublicKeysOut:
    """Public keys that sign audit checkpoints. Public: no token needed."""
    keys = [
        PublicKeyOut(
            name=v.name,
            algorithm="Ed25519",
            key_id=v.key_id.hex(),
            public_key=base64.b64encode(v.public_key).decode(),
            vkey=v.vkey,
        )
        for v in _log(services).public_keys()
    ]
    return PublicKeysOut(origin=_log(services).origin, keys=keys)
