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
from tests.support import make_container, token, write_bundle

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
