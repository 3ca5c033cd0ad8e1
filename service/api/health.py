"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.api.deps import Services
from service.db.migrate import schema_state

router = APIRouter(tags=["health"])


class Liveness(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, dict[str, Any]]


@router.get("/healthz", response_model=Liveness, summary="Liveness: the process answers")
def healthz() -> Liveness:
    return Liveness(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "a dependency is not ready"}},
    summary="Readiness: each dependency checked",
)
def readyz(services: Services) -> Any:
    checks: dict[str, dict[str, Any]] = {}
    try:
        services.db.ping()
        state = schema_state(services.db.engine)
        checks["database"] = {
            "ok": state != "behind",
            "backend": services.db.dialect,
            "schema": state,
            **({"reason": "migrations pending: run extgate db upgrade"} if state == "behind" else {}),
        }
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        checks["database"] = {"ok": False, "backend": services.db.dialect, "reason": type(exc).__name__}
    for name, probe in services.extras.get("readiness_probes", {}).items():
        try:
            result = probe()  # a bool, or {"ok": bool, ...state} (service.observability.readiness)
            found: dict[str, Any] = dict(result) if isinstance(result, dict) else {"ok": result}
            checks[name] = {**found, "ok": bool(found.get("ok"))}
        except Exception as exc:  # noqa: BLE001
            checks[name] = {"ok": False, "reason": type(exc).__name__}
    ready = all(c["ok"] for c in checks.values())
    body = Readiness(status="ready" if ready else "not_ready", checks=checks)
    return body if ready else JSONResponse(body.model_dump(), status_code=503)
