"""The audit API router, mounted on a small app with the real error handlers and authorizer."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from audit.sql import SqlAuditLog
from audit.verify import verify_inclusion_bundle
from service.api.audit import router
from service.api.deps import get_principal, get_services
from service.api.errors import install_error_handlers
from service.auth.principal import Principal
from service.authz import RoleAuthorizer
from tests.audit.conftest import event

PRINCIPALS = {
    "acme-admin": Principal("alice", "acme", frozenset({"admin"})),
    "acme-viewer": Principal("victor", "acme", frozenset({"viewer"})),
    "globex-admin": Principal("gina", "globex", frozenset({"admin"})),
    "platform": Principal("root", "ops", frozenset({"platform-admin"})),
}


@pytest.fixture
def log(make_log: Callable[..., SqlAuditLog]) -> SqlAuditLog:
    log = make_log()
    for i in range(25):
        log.append(event(i, tenant="acme" if i % 5 else "globex"))
    log.append(event(25, tenant=None, action="policy.reload", outcome="success"))
    log.checkpoint()
    log.append(event(26, tenant="acme"))
    return log


@pytest.fixture
def client(log: SqlAuditLog) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    services = SimpleNamespace(audit=log, authorizer=RoleAuthorizer())

    def principal(request: Request) -> Principal:
        return PRINCIPALS[request.headers.get("x-who", "acme-admin")]

    app.dependency_overrides[get_services] = lambda: services
    app.dependency_overrides[get_principal] = principal
    return TestClient(app)


def get(client: TestClient, url: str, who: str = "acme-admin", **params: object) -> tuple[int, dict]:
    r = client.get(url, params=params, headers={"x-who": who})
    return r.status_code, r.json()


def test_records_scoped_to_own_tenant_with_cursor(client: TestClient) -> None:
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        status, body = get(client, "/api/audit/records", **params)
        assert status == 200, body
        assert all(r["record"]["tenant"] == "acme" for r in body["records"])
        seen += [r["seq"] for r in body["records"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    expected = [i for i in range(27) if i % 5 and i != 25]
    assert seen == sorted(expected, reverse=True)
    status, body = get(client, "/api/audit/records", order="asc", limit=3, outcome="deny")
    assert [r["seq"] for r in body["records"]] == [3, 6, 9]


def test_other_tenant_forbidden_platform_admin_allowed(client: TestClient) -> None:
    status, body = get(client, "/api/audit/records", tenant="globex")
    assert status == 403 and body["error"] == "forbidden"
    status, body = get(client, "/api/audit/records", who="acme-viewer")
    assert status == 403
    status, body = get(client, "/api/audit/records", who="platform", tenant="globex")
    assert status == 200 and {r["record"]["tenant"] for r in body["records"]} == {"globex"}
    status, body = get(client, "/api/audit/records", who="platform", tenant="*", action="policy.")
    assert status == 200 and [r["seq"] for r in body["records"]] == [25]
    status, body = get(client, "/api/audit/records", who="acme-admin", tenant="*")
    assert status == 403
    status, body = get(client, "/api/audit/records", tenant="bad tenant!")
    assert status == 422 and body["error"] == "invalid_request"
    status, body = get(client, "/api/audit/records", since="last tuesday")
    assert status == 422
    status, body = get(client, "/api/audit/records", cursor="garbage")
    assert status == 422


def test_proof_endpoint(client: TestClient, log: SqlAuditLog) -> None:
    status, body = get(client, "/api/audit/records/3/proof")
    assert status == 200, body
    ok, why = verify_inclusion_bundle(body, log.verifiers)
    assert ok, why
    status, body = get(client, "/api/audit/records/5/proof")  # globex's record
    assert status == 403
    status, body = get(client, "/api/audit/records/5/proof", who="globex-admin")
    assert status == 200
    status, body = get(client, "/api/audit/records/26/proof")
    assert status == 409 and body["error"] == "not_checkpointed"
    status, body = get(client, "/api/audit/records/999/proof")
    assert status == 404 and body["error"] == "not_found"
    status, body = get(client, "/api/audit/records/25/proof")  # platform record
    assert status == 403
    status, body = get(client, "/api/audit/records/25/proof", who="platform")
    assert status == 200


def test_checkpoint_consistency_public_key_export(client: TestClient, log: SqlAuditLog) -> None:
    status, body = get(client, "/api/audit/checkpoints/latest")
    assert status == 200 and body["size"] == 26 and body["note"].startswith(body["origin"] + "\n26\n")
    log.checkpoint()
    status, body = get(client, "/api/audit/consistency", old=26, new=27)
    assert status == 200 and body["path"]
    status, body = get(client, "/api/audit/consistency", old=5, new=27)
    assert status == 404
    r = client.get("/api/audit/public-key")
    assert r.status_code == 200
    keys = r.json()["keys"]
    assert keys[0]["vkey"] == log.verifiers[0].vkey and keys[0]["algorithm"] == "Ed25519"
    r = client.get("/api/audit/export", headers={"x-who": "acme-admin"})
    assert r.status_code == 200
    lines = r.content.splitlines()
    assert len(lines) == 21 and all(b'"tenant":"acme"' in line for line in lines)
    assert (
        client.get("/api/audit/export", params={"tenant": "globex"}, headers={"x-who": "acme-admin"}).status_code == 403
    )


def test_no_checkpoint_yet_is_404(make_log: Callable[..., SqlAuditLog]) -> None:
    log = make_log()
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    services = SimpleNamespace(audit=log, authorizer=RoleAuthorizer())
    app.dependency_overrides[get_services] = lambda: services
    app.dependency_overrides[get_principal] = lambda: PRINCIPALS["acme-admin"]
    r = TestClient(app).get("/api/audit/checkpoints/latest")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
