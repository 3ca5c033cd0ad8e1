"""`GET /metrics` (Prometheus text format). Not in the OpenAPI document: it is for scrapers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from runner.contract.observability import ObservabilitySettings
from runner.metrics import exposition


def metrics_router(settings: ObservabilitySettings) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    token = settings.metrics_token

    @router.get("/metrics")
    def metrics(request: Request) -> Response:
        status, body, content_type = exposition(request.headers.get("authorization", ""), token)
        headers = {"www-authenticate": "Bearer"} if status == 401 else None
        return Response(body, status_code=status, media_type=content_type, headers=headers)

    return router
