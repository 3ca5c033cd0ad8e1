"""Schemathesis over every operation of the committed OpenAPI document, as several roles.

Runs in `make test` with a small example budget; `make fuzz` raises it
(EXTGATE_FUZZ_EXAMPLES). Checks: no 5xx, status codes, content types, response schemas
and headers conform to the document.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.registry.bundles import pack_directory
from tests.support import make_container, manifest, token, write_bundle

EXAMPLES = int(os.environ.get("EXTGATE_FUZZ_EXAMPLES", "12"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

_tmp = Path(tempfile.mkdtemp(prefix="extgate-fuzz-"))
_container = make_container(_tmp, f"sqlite:///{_tmp / 'fuzz.db'}")
app = create_app(container=_container)
TOKENS = {
    "admin": token(_container, "acme", "admin"),
    "viewer": token(_container, "acme", "viewer"),
    "platform": token(_container, "ops", "platform-admin"),
}


def _seed() -> None:
    """A published extension and an install, so ids in paths can hit real rows."""
    client = TestClient(app)
    archive = pack_directory(write_bundle(_tmp / "bundle"))
    r = client.post("/api/admin/extensions", content=archive,
                    headers={"authorization": "Bearer " + TOKENS["platform"]})
    assert r.status_code == 201, r.text
    r = client.post("/api/admin/tenants/acme/installs", headers={"authorization": "Bearer " + TOKENS["admin"]},
                    json={"extension": "acme.com.acme.tickets", "granted_capabilities": ["cap:secrets.get"]})
    assert r.status_code == 201, r.text
    # a second extension, left uninstalled: the stateful chains install (and remove) it
    archive = pack_directory(write_bundle(_tmp / "bundle-notes", manifest(name="com.acme.notes")))
    r = client.post("/api/admin/extensions", content=archive,
                    headers={"authorization": "Bearer " + TOKENS["platform"]})
    assert r.status_code == 201, r.text


_seed()
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.fuzz
@pytest.mark.parametrize("role", sorted(TOKENS))
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms(case, role):
    case.call_and_validate(headers={"authorization": "Bearer " + TOKENS[role]}, checks=CHECKS)


@pytest.mark.fuzz
@schema.parametrize()
@settings(max_examples=max(3, EXAMPLES // 4), deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_unauthenticated(case):
    response = case.call_and_validate(checks=CHECKS)
    assert response.status_code < 500


STATEFUL_EXTENSION = "acme.com.acme.notes"


def _stateful_schema():  # type: ignore[no-untyped-def]
    """The app's document plus one test-only link: the extension list starts chains into
    tenant acme (a path's tenant cannot come from any response), so publish → install →
    get/patch/config/secrets → call through the gateway all get exercised."""
    doc = TestClient(app).get("/openapi.json").json()
    ok = doc["paths"]["/api/admin/extensions"]["get"]["responses"]["200"]
    ok["links"] = {"InstallFirstExtension": {
        "operationId": "create_install_api_admin_tenants__tenant_id__installs_post",
        "parameters": {"tenant_id": "acme"},
        "requestBody": {"extension": STATEFUL_EXTENSION, "granted_capabilities": ["cap:secrets.get"]},
    }}
    loaded = schemathesis.openapi.from_dict(doc)
    loaded.app = app
    return loaded


class _AdminWorkflow(_stateful_schema().as_state_machine()):  # type: ignore[misc]
    """Stateful: responses feed later requests through the document's links (install →
    get/patch/config/secrets/upgrade → call through the gateway), as a tenant admin."""

    def before_call(self, case):  # type: ignore[no-untyped-def]
        # Chains only grow inside the token's own tenant (cross-tenant cases are the
        # stateless tests' job), and with real credentials.
        if case.path_parameters and "tenant_id" in case.path_parameters:
            case.path_parameters["tenant_id"] = "acme"
        if isinstance(case.body, dict) and "extension" in case.body:
            case.body["extension"] = STATEFUL_EXTENSION
        case.headers = {**(case.headers or {}), "authorization": "Bearer " + TOKENS["admin"]}

    def validate_response(self, response, case, additional_checks=None, **kwargs):  # type: ignore[no-untyped-def]
        case.validate_response(response, checks=CHECKS)

    def teardown(self):  # type: ignore[no-untyped-def]
        # Each chain starts from "not installed".
        client = TestClient(app)
        headers = {"authorization": "Bearer " + TOKENS["admin"]}
        notes_id = client.get(f"/api/admin/extensions/{STATEFUL_EXTENSION}", headers=headers).json()["id"]
        for row in client.get("/api/admin/tenants/acme/installs", headers=headers).json():
            if row["extension_id"] == notes_id:
                client.delete(f"/api/admin/tenants/acme/installs/{row['id']}", headers=headers)
        super().teardown()


@pytest.mark.fuzz
def test_stateful_links():
    _AdminWorkflow.run(settings=settings(max_examples=max(5, EXAMPLES), stateful_step_count=6, deadline=None,
                                         suppress_health_check=list(HealthCheck)))
