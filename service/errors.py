"""Domain errors. Each carries the HTTP status and the stable JSON error code clients see.

Routers never build error bodies by hand: they raise these, and `service.api.errors`
turns them into `{"error": code, "detail": ...}`.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(self, detail: Any = None, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(detail if isinstance(detail, str) else (code or self.code))
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class InvalidInput(DomainError):
    status = 422
    code = "invalid_request"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Unauthenticated(DomainError):
    status = 401
    code = "unauthenticated"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"


class ServiceUnavailable(DomainError):
    status = 503
    code = "service_unavailable"
