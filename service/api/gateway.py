"""`/api/ext/{extension}/{path}`: the extension gateway's route. Thin: the pipeline in
`service.gateway.pipeline` does the work (authentication included, because the order of
checks and their error codes are the contract).

The routes below declare the operation (OpenAPI, and the fallback when no gateway is
configured). Calls are served by `GatewayDispatchMiddleware`, which matches them with the
same routes' own matcher and hands them to the pipeline from the ASGI stack: FastAPI's
routing scan, dependency solving and per-route exception layers cost ~0.3 ms per call,
a third of the gateway's latency budget, and the pipeline needs none of them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.deps import Services
from service.api.schemas import RETRY_AFTER, ErrorBody, error_example
from service.container import ServiceContainer
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
    502: "`bad_gateway`: the runner or the guest failed; `detail.request_id` identifies the call",
    503: "`access_policy_unavailable` (policy, audit or rate-limit store unavailable), "
    "`runner_unavailable` (no runner reachable, or busy) or `runner_busy` (the tenant's share of the "
    "runner is in use; not executed); see `retry-after`",
    504: "`gateway_timeout`: the extension did not answer before the deadline",
}

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the extension's response: its status, body and allowed headers "
          "(content-type, cache-control, etag, x-ext-*)", "content": {"application/json": {}, "*/*": {}}},
    **{status: {"model": ErrorBody, "description": text, "content": error_example(status, text.split("`")[1])}
       for status, text in _ERRORS.items()},
}
RESPONSES[429]["headers"] = {"retry-after": {**RETRY_AFTER, "required": True}}
RESPONSES[503]["headers"] = {"retry-after": {**RETRY_AFTER,
                                              "description": "with `runner_unavailable` and `runner_busy`"}}


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


_ROUTES: dict[str, Route] = {
    method: route
    for route in router.routes
    if isinstance(route, Route)
    for method in route.methods or () if method in METHODS
}  # HEAD: Starlette adds it to the GET route too; the HEAD route, declared last, wins


class GatewayDispatchMiddleware:
    """Pure ASGI: `/api/ext/{extension}/{path}` calls go straight to the gateway pipeline.

    Installed innermost of our middleware, so request ids, header limits and CORS apply as
    to every route, and an unexpected exception still reaches the app's 500 handler. A
    request is taken only when the declared route for its method matches it fully (the
    route's own matcher: same path rules, same parameters); anything else, and every call
    while no gateway is configured, continues to FastAPI unchanged.
    """

    def __init__(self, app: ASGIApp, *, services: ServiceContainer) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = self.services.gateway
        if scope["type"] == "http" and gateway is not None:
            route = _ROUTES.get(scope["method"])
            if route is not None:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    params = child["path_params"]
                    request = Request({**scope, **child}, receive)
                    response = await gateway.handle(request, params["extension"], params["path"])
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
