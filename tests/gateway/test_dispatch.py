"""`GatewayDispatchMiddleware`: gateway calls are served from the ASGI stack, with the
same route matching, request ids and error handling as through FastAPI; everything else,
and every call while no gateway is configured, still goes through FastAPI."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app


@pytest.fixture
def env(make_env: Any, sqlite_url: str) -> Any:
    return make_env(sqlite_url, "headers")


def test_calls_are_served_without_the_fastapi_endpoint(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[str] = []
    real = env.container.gateway.handle

    async def spy(request: Any, extension: str, path: str) -> Any:
        callers = set()
        frame = sys._getframe(1)
        while frame is not None:
            callers.add(frame.f_code.co_qualname)
            frame = frame.f_back  # type: ignore[assignment]
        assert "GatewayDispatchMiddleware.__call__" in callers
        assert "run_endpoint_function" not in callers  # FastAPI's endpoint machinery
        used.append(f"{request.method} {extension} {path}")
        return await real(request, extension, path)

    monkeypatch.setattr(env.container.gateway, "handle", spy)
    r = env.client.get(env.url("/headers", env.slug.upper()), headers=env.headers())
    assert r.status_code == 200
    assert len(r.headers["x-request-id"]) == 32
    h = env.client.head(env.url("/headers"), headers=env.headers())
    assert h.status_code == 200 and h.content == b""
    # Path parameters as the route's own matcher splits them (nested paths included).
    env.client.get(env.url("/items/a%2Fb/c"), headers=env.headers())
    assert used == [f"GET {env.slug.upper()} headers", f"HEAD {env.slug} headers", f"GET {env.slug} items/a/b/c"]


def test_request_id_matches_the_audit_record(env: Any) -> None:
    r = env.client.get(env.url("/headers"), headers=env.headers())
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    records = [rec for rec in env.audit_records("gateway.decision") if rec["request_id"] == rid]
    assert len(records) == 1 and records[0]["outcome"] == "allow"


def test_header_limit_still_applies(env: Any) -> None:
    headers = env.headers(**{f"x-filler-{i}": "v" for i in range(120)})
    r = env.client.get(env.url("/headers"), headers=headers)
    assert r.status_code == 431
    assert r.json()["error"] == "request_header_fields_too_large"


def test_paths_the_route_does_not_match_go_to_fastapi(env: Any) -> None:
    # No `{path}` segment: not the gateway route (FastAPI answers, as before).
    r = env.client.get(f"/api/ext/{env.slug}", headers=env.headers(), follow_redirects=False)
    assert r.status_code in (307, 404)
    # A method the gateway does not serve.
    r = env.client.options(env.url("/headers"), headers=env.headers())
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_unexpected_errors_become_the_apps_json_500(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def boom(*_: Any) -> Any:
        raise RuntimeError("s3cr3t detail that must not leak")

    monkeypatch.setattr(env.container.gateway, "handle", boom)
    client = TestClient(create_app(container=env.container), raise_server_exceptions=False)
    r = client.get(env.url("/headers"), headers=env.headers())
    assert r.status_code == 500
    assert r.json()["error"] == "internal_error" and "s3cr3t" not in r.text


def test_without_a_gateway_the_declared_route_answers_503(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env.container, "gateway", None)
    r = env.client.get(env.url("/headers"), headers=env.headers())
    assert r.status_code == 503
    assert r.json()["error"] == "access_policy_unavailable"
