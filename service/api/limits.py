"""Request-size guards that run before routing (pure ASGI: no per-request overhead of BaseHTTPMiddleware).

uvicorn's httptools parser accepts header blocks of any size; cap them here so an
oversized request is a clear 431 instead of memory spent further down.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

MAX_HEADER_BYTES = 32 * 1024
MAX_HEADER_COUNT = 100


class HeaderLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_HEADER_BYTES, max_count: int = MAX_HEADER_COUNT) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_count = max_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope.get("headers") or []
            size = sum(len(name) + len(value) for name, value in headers)
            if size > self.max_bytes or len(headers) > self.max_count:
                body = json.dumps(
                    {
                        "error": "request_header_fields_too_large",
                        "detail": f"headers over {self.max_bytes} bytes or {self.max_count} fields",
                    }
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 431,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
