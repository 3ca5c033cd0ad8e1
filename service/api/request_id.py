"""Every request gets our own id (`request.state.request_id`, echoed as `x-request-id`).

The id and the client's address are also the request's `service.request_context`, so code
deep in a request (denial records) names them without threading `Request` through.

A client-supplied `x-request-id` is not trusted as an audit key, so it is replaced, not
reused. Pure ASGI: `BaseHTTPMiddleware` would add a task and a body relay per request and
buffer-related surprises on streamed (SSE) responses.
"""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.request_context import enter_request, leave_request


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        client = scope.get("client")
        token = enter_request(rid, client[0] if client else None)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            leave_request(token)
