"""`/api/ext/{extension}/{path}`: the extension gateway's route. Thin: the pipeline in
`service.gateway.pipeline` does the work (authentication included, because the order of
checks and their error codes are the contract)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.deps import Services
from service.api.schemas import RETRY_AFTER, ErrorBody, error_example
from service.errors import ServiceUnavailable

router = APIRouter(tags=["gateway"])

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")

_ERRORS: dict[int, str] = {
    400: "`bad_request`: an unparseable `content-length`, or the client went away mid-body",
    401: "`unauthenticated`: missing or invalid bearer token",
    403: "`tenant_mismatch` (a tenant header disagrees with the token) or `forbidden` (policy)",
    404: "`extension_not_available` (no active install for the caller's tenant) or `endpoint_not_found`",
    409: "`idempotency_in_progress`: a request with this idempotency key is still running",
    413: "`payload_too_large`: request body over the cap (10 MiB by default)",
    422: "`idempotency_key_reused`: the key was used for a different request",
    429: "`rate_limited`: token bucket of this tenant + install is empty; see `retry-after`",
    502: "`bad_gateway`: the runner is unreachable or failed; `detail.request_id` identifies the call",
    503: "`access_policy_unavailable` (policy, audit or rate-limit store unavailable) or "
    "`runner_unavailable` (busy; see `retry-after`)",
    504: "`gateway_timeout`: the extension did not answer before the deadline",
}

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the extension's response: its status, body and allowed headers "
          "(content-type, cache-control, etag, x-ext-*)", "content": {"application/json": {}, "*/*": {}}},
    **{status: {"model": ErrorBody, "description": text, "content": error_example(status, text.split("`")[1])}
       for status, text in _ERRORS.items()},
}
RESPONSES[429]["headers"] = {"retry-after": {**RETRY_AFTER, "required": True}}
RESPONSES[503]["headers"] = {"retry-after": {**RETRY_AFTER, "description": "with `runner_unavailable`"}}


def _endpoint(method: str) -> Any:
    async def call_extension(request: Request, extension: str, path: str, services: Services) -> Response:
        gateway = services.gateway
        if gateway is None:
            raise ServiceUnavailable("the gateway is not configured", code="access_policy_unavailable")
        return await gateway.handle(request, extension, path)

    call_extension.__name__ = f"call_extension_{method.lower()}"
    return call_extension


for _method in METHODS:
    router.add_api_route(
        "/api/ext/{extension}/{path:path}",
        _endpoint(_method),
        methods=[_method],
        operation_id=f"call_extension_{_method.lower()}",
        summary=f"Call an installed extension ({_method}{', authorized as GET' if _method == 'HEAD' else ''})",
        description=(
            "`extension` is the install id, extension id or `publisher.name` slug (case-insensitive) of an "
            "active install of the caller's tenant. Checks, in order: bearer token, tenant headers, install, "
            "declared endpoint, Cedar policy, rate limit, durable audit record, body cap; then the runner."
        ),
        responses=RESPONSES,
        response_class=Response,
        openapi_extra={"security": [{"HTTPBearer": []}]},
    )
