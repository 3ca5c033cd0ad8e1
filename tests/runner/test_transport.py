"""POST /v1/execute: credential, routing binding, idempotency scope."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from runner.transport.app import create_app
from tests.runner.conftest import make_request

TOKEN = "t" * 32


@pytest.fixture(scope="module")
def client(runner):
    return TestClient(create_app(runner, TOKEN))


def _post(client, req, *, token=TOKEN, tenant=None, extension="acme.demo", key=None):
    headers = {"authorization": f"Bearer {token}", "x-alga-tenant": tenant or req.context.tenant_id,
               "x-alga-extension": extension}
    if key:
        headers["x-idempotency-key"] = key
    return client.post("/v1/execute", content=req.model_dump_json(), headers=headers)


def test_healthz(client) -> None:
    assert client.get("/healthz").json()["status"] == "ok"


def test_credential_required(client, wat_guests) -> None:
    req = make_request(wat_guests["echo"], "/")
    assert _post(client, req, token="wrong").status_code == 401
    r = client.post("/v1/execute", content=req.model_dump_json())
    assert (r.status_code, r.json()) == (401, {"error": "unauthenticated"})


def test_routing_headers_must_match_body(client, wat_guests) -> None:
    req = make_request(wat_guests["echo"], "/")
    r = _post(client, req, tenant="other-tenant")
    assert (r.status_code, r.json()) == (403, {"error": "tenant_mismatch"})
    r = _post(client, req, extension="other.ext")
    assert r.status_code == 403
    r = client.post("/v1/execute", content=req.model_dump_json(), headers={"authorization": f"Bearer {TOKEN}"})
    assert (r.status_code, r.json()) == (400, {"error": "missing_routing_headers"})


def test_malformed_body(client) -> None:
    r = client.post("/v1/execute", content=b"{not json", headers={"authorization": f"Bearer {TOKEN}"})
    assert (r.status_code, r.json()) == (400, {"error": "invalid_request"})


def test_unknown_capability(client, wat_guests) -> None:
    r = _post(client, make_request(wat_guests["echo"], "/", providers=["cap:root"]))
    assert r.status_code == 200 and r.json()["error"] == "unknown_capabilities"


def test_execute_ok(client, wat_guests) -> None:
    r = _post(client, make_request(wat_guests["echo"], "/", method="POST", body=b"hi"))
    assert r.status_code == 200
    assert r.json() == {"status": 200, "headers": {}, "body_b64": base64.b64encode(b"hi").decode(), "error": None}


def test_idempotency_scoped_by_tenant_and_extension(client, runner, wat_guests) -> None:
    calls = []
    original = runner._run

    def counting(*args, **kwargs):
        calls.append(args[0].context.tenant_id)
        return original(*args, **kwargs)

    runner._run = counting
    try:
        a = make_request(wat_guests["echo"], "/", method="POST", body=b"a", tenant="ta")
        assert _post(client, a, key="k1").json()["error"] is None
        assert _post(client, a, key="k1").json()["error"] is None  # replayed, not executed
        assert calls == ["ta"]
        b = make_request(wat_guests["echo"], "/", method="POST", body=b"a", tenant="tb")
        assert _post(client, b, key="k1").json()["error"] is None  # same key, other tenant: executes
        assert calls == ["ta", "tb"]
        changed = make_request(wat_guests["echo"], "/", method="POST", body=b"different", tenant="ta")
        assert _post(client, changed, key="k1").json()["error"] == "idempotency_key_reused"
    finally:
        runner._run = original


def test_version_headers_checked(runner, wat_guests) -> None:
    req = make_request(wat_guests["echo"], "/")
    base = {"x-alga-tenant": "t1", "x-alga-extension": "acme.demo"}
    assert runner.execute(req, {**base, "x-ext-install-id": "other"}).error == "tenant_mismatch"
    assert runner.execute(req, {**base, "x-ext-version-id": "v0"}).error == "version_mismatch"
    assert runner.execute(req, {**base, "x-ext-install-id": "i1", "x-ext-version-id": "v1"}).error is None


def test_credential_rotation_accepts_every_listed_token(runner, wat_guests, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """EXTGATE_RUNNER_TOKEN="new,old": runners accept both while gateways switch (they send
    the first); anything else, or a token shorter than 16 characters, is refused."""
    import pytest

    from runner.settings import RunnerSettings
    from service.settings import Settings

    new, old = "n" * 24, "o" * 24
    monkeypatch.setenv("EXTGATE_RUNNER_TOKEN", f"{new}, {old}")
    assert RunnerSettings().service_tokens() == [new, old] and RunnerSettings().service_token() == new
    assert Settings().effective_runner_token == new
    c = TestClient(create_app(runner, RunnerSettings().service_tokens()))
    req = make_request(wat_guests["echo"], "/")
    assert _post(c, req, token=new).status_code == 200
    assert _post(c, req, token=old).status_code == 200
    assert _post(c, req, token=f"{new},{old}").status_code == 401
    assert _post(c, req, token="x" * 24).status_code == 401
    monkeypatch.setenv("EXTGATE_RUNNER_TOKEN", f"{new},short")
    with pytest.raises(ValueError, match="at least 16"):
        RunnerSettings().service_tokens()
