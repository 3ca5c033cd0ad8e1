"""Debug stream API: open a session (policy-gated, audited), then watch it over SSE.

`POST /api/ext-debug/sessions` answers a one-time ticket (browsers' EventSource cannot send
an Authorization header, and a bearer token must not travel in a URL).
`GET /api/ext-debug/stream?ticket=...` is the Server-Sent Events stream. No query
parameter selects a tenant: the tenant is fixed when the ticket is issued.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Header, Request, Security
from fastapi.security import APIKeyQuery
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from runner.debug.wire import parse_id
from service.api.deps import CurrentPrincipal, Services
from service.api.schemas import error_responses
from service.auth.tokens import TENANT_ID_RE
from service.container import ServiceContainer
from service.debug.runtime import DebugRuntime
from service.debug.sessions import OpenRequest
from service.debug.stream import session_events
from service.errors import ServiceUnavailable, Unauthenticated

router = APIRouter(prefix="/api/ext-debug", tags=["debug stream"])

Level = Literal["debug", "info", "warn", "error"]


class DebugSessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"extension": "acme.com.acme.tickets", "min_level": "info", "justification": "ticket SUP-1234"}]})

    extension: str = Field(min_length=1, max_length=401, description="extension id, slug publisher.name or install id")
    install: str | None = Field(default=None, min_length=1, max_length=64, description="install id (optional)")
    tenant: str | None = Field(
        default=None, pattern=TENANT_ID_RE.pattern, max_length=64,
        description="another tenant's stream: platform administrators only, with a justification; "
                    "default the caller's tenant",
    )
    request_id: str | None = Field(default=None, min_length=1, max_length=128, description="only this request")
    min_level: Level | None = Field(default=None, description="only lines at this level or above")
    justification: str | None = Field(default=None, max_length=1000, description="why; recorded in the audit log")


class DebugSessionOut(BaseModel):
    session_id: str
    ticket: str = Field(description="one-time, short-lived; pass as ?ticket= to the stream")
    expires_in: int = Field(description="seconds until the ticket expires if unused")
    stream_url: str
    tenant_id: str
    extension_id: str
    install_id: str
    max_duration_s: float


def _runtime(services: ServiceContainer) -> DebugRuntime:
    runtime: DebugRuntime | None = getattr(services, "debug", None)
    if runtime is None:
        raise ServiceUnavailable("the debug stream is not configured", code="debug_unavailable")
    return runtime


@router.post(
    "/sessions",
    response_model=DebugSessionOut,
    status_code=201,
    summary="Open a debug session (returns a one-time stream ticket)",
    responses=error_responses(401, 403, 404, 422, 503),
)
def open_session(body: DebugSessionCreate, request: Request, services: Services,
                 principal: CurrentPrincipal) -> DebugSessionOut:
    runtime = _runtime(services)
    ticket = runtime.sessions.open(
        principal,
        OpenRequest(extension=body.extension, install=body.install, tenant=body.tenant, request_id=body.request_id,
                    min_level=body.min_level, justification=body.justification),
        getattr(request.state, "request_id", None),
    )
    g = ticket.grant
    return DebugSessionOut(
        session_id=g.session_id, ticket=ticket.ticket, expires_in=ticket.expires_in_s,
        stream_url=f"/api/ext-debug/stream?ticket={ticket.ticket}", tenant_id=g.tenant_id,
        extension_id=g.extension_id, install_id=g.install_id, max_duration_s=g.max_duration_s,
    )


_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: `log` (id = stream entry id), `gap`, `warning`, `info`, `end`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **error_responses(401, 422, 503),
}
_STREAM_DOC[401] = {**_STREAM_DOC[401], "description": "the ticket is unknown, expired or already used"}


# The ticket is the stream's credential (declared as a security scheme, not a plain
# parameter); malformed ones are refused like unknown ones, without a lookup.
_ticket_scheme = APIKeyQuery(name="ticket", scheme_name="DebugTicket", auto_error=False,
                             description="one-time ticket from POST /api/ext-debug/sessions")
_TICKET_MIN, _TICKET_MAX = 16, 128


@router.get(
    "/stream",
    summary="Watch a debug session (Server-Sent Events)",
    response_class=EventSourceResponse,
    responses=_STREAM_DOC,
)
async def stream(
    services: Services,
    ticket: Annotated[str | None, Security(_ticket_scheme)],
    last_event_id: Annotated[str | None, Header(alias="last-event-id", max_length=64)] = None,
) -> EventSourceResponse:
    runtime = _runtime(services)
    if ticket is None or not _TICKET_MIN <= len(ticket) <= _TICKET_MAX:
        raise Unauthenticated("the ticket is unknown, expired or already used", code="invalid_ticket")
    grant = await anyio.to_thread.run_sync(runtime.sessions.redeem, ticket)
    if grant is None:
        raise Unauthenticated("the ticket is unknown, expired or already used", code="invalid_ticket")
    try:
        await anyio.to_thread.run_sync(runtime.sessions.renew, grant)
        await anyio.to_thread.run_sync(runtime.sessions.audit_start, grant)
    except Exception:
        await anyio.to_thread.run_sync(runtime.sessions.release, grant)
        raise
    s = runtime.settings
    resume = last_event_id.strip() if last_event_id else None
    return EventSourceResponse(
        session_events(runtime.sessions, runtime.hub(), grant, resume if resume and parse_id(resume) else None),
        ping=s.heartbeat_s,
        send_timeout=s.send_timeout_s,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
