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
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from runner.contract.execute import ERROR_STATUS, ExecuteRequest, RunnerError
from runner.engine import wasmtime_version
from runner.executor import Runner
from runner.settings import RunnerSettings

MAX_BODY_BYTES_OVERHEAD = 1 << 20  # JSON envelope around the base64 body


def _error(code: RunnerError, status: int | None = None) -> JSONResponse:
    return JSONResponse({"error": code.value}, status_code=status or ERROR_STATUS[code])


def create_app(runner: Runner, token: str | list[str]) -> FastAPI:
    app = FastAPI(title="extgate runner", docs_url=None, redoc_url=None, openapi_url=None)
    accepted = [t.encode() for t in ([token] if isinstance(token, str) else token)]
    max_body = (runner.settings.runner_max_request_body_bytes // 3 + 1) * 4 + MAX_BODY_BYTES_OVERHEAD

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        compiled = runner.settings.compiled_dir
        return {"status": "ok", "wasmtime": wasmtime_version(),
                "engine_fingerprint": runner.engine_options.fingerprint(),
                "compiled_dir_exists": compiled.is_dir()}

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
        result = await runner.execute_async(body, dict(request.headers))
        # Routing refusals are the caller's fault: make them real HTTP errors.
        if result.error in (RunnerError.MISSING_ROUTING_HEADERS, RunnerError.TENANT_MISMATCH):
            return _error(RunnerError(result.error))
        return JSONResponse(result.model_dump(mode="json"))

    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory for `extgate runner serve` (one Runner per worker process)."""
    from runner.logging_config import configure_logging

    configure_logging()
    settings = RunnerSettings()
    runner = Runner(settings)
    runner.warm()  # before accepting requests: the first one after a restart finds its component loaded
    return create_app(runner, settings.service_tokens())
