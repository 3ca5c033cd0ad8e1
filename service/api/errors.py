"""Uniform JSON error bodies: `{"error": code, "detail": ...}`.

Validation errors are reported by location and message only: pydantic's echo of the
offending input is dropped, because that input may be a secret value.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import DomainError
from service.observability.metrics import set_error_code

log = logging.getLogger("extgate.api")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}


def error_response(status: int, code: str, detail: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": code}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


def _safe_validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        for err in exc.errors()
    ]


def _outage_classes() -> list[tuple[type[Exception], str]]:
    """Exception types that mean "a dependency is down", with the dependency's name. Only
    connection-level failures: a constraint violation or a bad query is still our bug."""
    import httpx
    import redis.exceptions as redis_errors
    import sqlalchemy.exc as sa

    from audit.log import AuditUnavailableError

    return [
        (sa.OperationalError, "database"),  # refused, reset, timed out, database locked/absent
        (sa.InterfaceError, "database"),
        (sa.TimeoutError, "database"),  # connection pool exhausted
        (sa.DisconnectionError, "database"),
        (redis_errors.ConnectionError, "redis"),
        (redis_errors.TimeoutError, "redis"),
        (redis_errors.BusyLoadingError, "redis"),
        (httpx.TransportError, "runner"),
        (AuditUnavailableError, "audit"),
        (ConnectionError, "network"),  # OSError family: refused, reset, aborted
        (TimeoutError, "network"),
    ]


def dependency_outage(exc: BaseException) -> str | None:
    """The dependency whose outage caused `exc` (following `raise … from` and implicit
    chaining), or None when `exc` is not an outage."""
    classes = _outage_classes()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DependencyUnavailable):
            return current.dependency
        for cls, name in classes:
            if isinstance(current, cls):
                return name
        current = current.__cause__ or current.__context__
    return None


class DependencyUnavailable(Exception):
    """Raised by code that already knows a dependency is down (answered like any outage)."""

    def __init__(self, dependency: str) -> None:
        super().__init__(dependency)
        self.dependency = dependency


def outage_response(dependency: str, request_id: str | None) -> JSONResponse:
    # The dependency's own error text never reaches the client (it may name hosts or users).
    return error_response(503, "service_unavailable", {"dependency": dependency, "request_id": request_id},
                          {"retry-after": "1"})


def install_error_handlers(app: FastAPI) -> None:
    async def _outage(request: Request, exc: Exception) -> JSONResponse:
        dependency = dependency_outage(exc) or "unknown"
        request_id = getattr(request.state, "request_id", None)
        log.error("dependency unavailable: %s (%s)", dependency, type(exc).__name__,
                  extra={"request_id": request_id})
        set_error_code(request.scope, "service_unavailable")
        return outage_response(dependency, request_id)

    # Registered per class so they are answered by the exception middleware (a plain
    # response), not the server-error path.
    for cls in {cls for cls, _ in _outage_classes()} | {DependencyUnavailable}:
        app.add_exception_handler(cls, _outage)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
        set_error_code(request.scope, exc.code)
        return error_response(exc.status, exc.code, exc.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        set_error_code(request.scope, "invalid_request")
        return error_response(422, "invalid_request", _safe_validation_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        set_error_code(request.scope, code)
        return error_response(exc.status_code, code, None, dict(exc.headers or {}) or None)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)
        dependency = dependency_outage(exc)
        if dependency is not None:  # an outage wrapped in another exception: still a 503
            log.error("dependency unavailable: %s (%s)", dependency, type(exc).__name__,
                      extra={"request_id": request_id})
            set_error_code(request.scope, "service_unavailable")
            return outage_response(dependency, request_id)
        log.exception("unhandled error", extra={"request_id": request_id})
        set_error_code(request.scope, "internal_error")
        return error_response(500, "internal_error", {"request_id": request_id})
