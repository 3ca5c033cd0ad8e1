"""The policy router, mounted on a small app with the principal and services overridden."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api.deps import get_principal, get_services
from service.api.errors import install_error_handlers
from service.api.policy import router
from service.auth.principal import Principal
from service.policy import CedarAuthorizer, PolicyService
from service.policy.store import BundleStore
from tests.policy.conftest import user

ROOT = user("root", "platform", "platform-admin")
TENANT_ADMIN = user("a", "acme", "admin")
EDITOR = user("e", "acme", "editor")


@pytest.fixture
def policy(policy_copy: Path, tmp_path: Path) -> PolicyService:
    svc = PolicyService(policy_copy, store=BundleStore(tmp_path / "state"))
    svc.start()
    return svc


def client(policy: Any, principal: Principal) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    services = SimpleNamespace(policy=policy, authorizer=CedarAuthorizer(policy) if policy else None)
    if policy is None:
        from service.authz import RoleAuthorizer

        services.authorizer = RoleAuthorizer()
    app.dependency_overrides[get_services] = lambda: services
    app.dependency_overrides[get_principal] = lambda: principal
    return TestClient(app)


def test_status_for_policy_readers(policy: PolicyService) -> None:
    response = client(policy, TENANT_ADMIN).get("/api/policy/status")
    assert response.status_code == 200
    body = response.json()
    assert body["active_revision"] == policy.revision and body["last_error"] is None and body["loaded_at"]
    denied = client(policy, EDITOR).get("/api/policy/status")
    assert denied.status_code == 403 and denied.json()["error"] == "forbidden"


def test_explain(policy: PolicyService) -> None:
    api = client(policy, ROOT)
    body = {"principal": "acme-viewer", "action": "write", "resource": "acme-crm", "context": {"method": "PUT"}}
    response = api.post("/api/policy/explain", json=body)
    assert response.status_code == 200
    data = response.json()
    assert data["decision"] == "deny" and data["why_not"][0]["policy_id"] == "rbac.write"
    bad = api.post("/api/policy/explain", json={**body, "principal": 'X::"'})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_request"


def test_reload_and_rollback_need_policy_manage(policy: PolicyService, policy_copy: Path) -> None:
    assert client(policy, TENANT_ADMIN).post("/api/policy/reload").status_code == 403
    api = client(policy, ROOT)
    first = policy.revision
    rbac = policy_copy / "rbac.cedar"
    rbac.write_text(rbac.read_text() + "\n// edited\n")
    response = api.post("/api/policy/reload")
    assert response.status_code == 200 and response.json()["active_revision"] != first
    rbac.write_text("permit (")
    rejected = api.post("/api/policy/reload")
    assert rejected.status_code == 422 and rejected.json()["error"] == "policy_rejected"
    assert rejected.json()["detail"]["problems"][0]["file"] == "rbac.cedar"
    back = api.post("/api/policy/rollback", json={"revision": first[7:19]})
    assert back.status_code == 200 and back.json()["active_revision"] == first
    missing = api.post("/api/policy/rollback", json={"revision": "ffffffffff"})
    assert missing.status_code == 404 and missing.json()["error"] == "revision_not_found"


def test_unconfigured_policy_is_503() -> None:
    response = client(None, ROOT).get("/api/policy/status")
    assert response.status_code == 503 and response.json()["error"] == "policy_unavailable"
