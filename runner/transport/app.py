"""`POST /v1/execute` and `GET /healthz`.

Callers present the service credential as `Authorization: Bearer <token>` (compared in
constant time). Transport-level refusals are HTTP errors with `{"error": code}`; once a
request is accepted, the outcome — including guest failures — is an `ExecuteResponse`
with HTTP 200, as upstream. Error bodies never echo request, guest or secret text.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from runner.contract.execute import ERROR_STATUS, ExecuteRequest, RunnerError
from runner.contract.observability import ObservabilitySettings
from runner.engine import wasmtime_version
from runner.executor import Runner
from runner.logging_config import bind_log_context, reset_log_context
from runner.metrics import exposition
from runner.settings import RunnerSettings

MAX_BODY_BYTES_OVERHEAD = 1 << 20  # JSON envelope around the base64 body


def _error(code: RunnerError, status: int | None = None) -> JSONResponse:
    return JSONResponse({"error": code.value}, status_code=status or ERROR_STATUS[code])


def create_app(runner: Runner, token: str | list[str], observability: ObservabilitySettings | None = None) -> FastAPI:
    app = FastAPI(title="extgate runner", docs_url=None, redoc_url=None, openapi_url=None)
    observability = observability or ObservabilitySettings()
    accepted = [t.encode() for t in ([token] if isinstance(token, str) else token)]
    max_body = (runner.settings.runner_max_request_body_bytes // 3 + 1) * 4 + MAX_BODY_BYTES_OVERHEAD

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        compiled = runner.settings.compiled_dir
        return {"status": "ok", "wasmtime": wasmtime_version(),
                "engine_fingerprint": runner.engine_options.fingerprint(),
                "compiled_dir_exists": compiled.is_dir()}

    if observability.metrics_enabled:
        metrics_token = observability.metrics_token

        @app.get("/metrics")
        def metrics(request: Request) -> Response:
            status, body, content_type = exposition(request.headers.get("authorization", ""), metrics_token)
            return Response(body, status_code=status, media_type=content_type)

    @app.post("/v1/execute")
    async def execute(request: Request) -> JSONResponse:
        auth = request.headers.get("authorization", "")
        scheme, _, presented = auth.partition(" ")
        offered = presented.strip().encode()
        # Compare with every accepted token (no early exit): timing says nothing about which.
        matches = [hmac.compare_digest(offered, t) for t in accepted]
        if scheme.lower() != "bearer" or not any(matches):
            return _error(RunnerError.UNAUTHENTICATED)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            return _error(RunnerError.PAYLOAD_TOO_LARGE)
        raw = await request.body()
        if len(raw) > max_body:
            return _error(RunnerError.PAYLOAD_TOO_LARGE)
        try:
            body = ExecuteRequest.model_validate_json(raw)
        except ValidationError:
            return _error(RunnerError.INVALID_REQUEST)
        ctx = body.context
        log_context = bind_log_context(request_id=ctx.request_id or request.headers.get("x-request-id"),
                                       tenant=ctx.tenant_id, extension=ctx.extension_id, install=ctx.install_id)
        try:
            result = await runner.execute_async(body, dict(request.headers))
        finally:
            reset_log_context(log_context)
        # Routing refusals are the caller's fault: make them real HTTP errors.
        if result.error in (RunnerError.MISSING_ROUTING_HEADERS, RunnerError.TENANT_MISMATCH):
            return _error(RunnerError(result.error))
        return JSONResponse(result.model_dump(mode="json"))

    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory for `extgate runner serve` (one Runner per worker process)."""
    from runner.logging_config import configure_logging
    from runner.tracing import configure_tracing

    configure_logging()
    configure_tracing("extgate-runner")  # only when OTEL_TRACES_EXPORTER names an exporter
    settings = RunnerSettings()
    runner = Runner(settings)
    runner.warm()  # before accepting requests: the first one after a restart finds its component loaded
    return create_app(runner, settings.service_tokens())
