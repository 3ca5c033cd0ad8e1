"""The gateway pipeline end to end, with the embedded runner: every row of the DESIGN.md §4
error table, tenancy, policy, audit, idempotency, header allowlists, CORS, body cap."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from typing import Any

import pytest

from runner.contract.execute import ExecuteRequest, ExecuteResponse
from service.auth.tokens import mint_dev_token
from service.gateway import GatewaySettings, build_gateway
from service.gateway.transport import RunnerTransport
from service.registry import install_config, install_secrets, installs
from tests.gateway.conftest import OTHER, SECRET_VALUE, TENANT, GatewayEnv


class Recording:
    """Wraps a transport and records what the gateway dispatched."""

    name = "recording"

    def __init__(self, inner: RunnerTransport) -> None:
        self.inner = inner
        self.calls: list[tuple[ExecuteRequest, dict[str, str]]] = []

    async def execute(
        self, request: ExecuteRequest, headers: Mapping[str, str], *, deadline_s: float
    ) -> ExecuteResponse:
        self.calls.append((request, dict(headers)))
        return await self.inner.execute(request, headers, deadline_s=deadline_s)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def close(self) -> None:
        getattr(self.inner, "close", lambda: None)()


def record(env: GatewayEnv) -> Recording:
    rec = Recording(env.container.gateway.transport)
    env.container.gateway.transport = rec
    return rec


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["error"] == code
    return body


# --- happy path and resolution ---------------------------------------------------------


def test_resolves_by_slug_install_id_and_extension_id(make_env, database_url) -> None:
    env = make_env(database_url)
    rec = record(env)
    for ref in (env.slug, env.slug.upper(), env.install_id, env.install_id.upper(), env.extension_id):
        r = env.client.get(env.url("/hello", ref), headers=env.headers("viewer"))
        assert r.status_code == 200, (ref, r.text)
        body = r.json()
        assert body["tenant"] == TENANT and body["install"] == env.install_id
        assert body["request_id"] == r.headers["x-request-id"]

    req, headers = rec.calls[-1]
    ctx = req.context
    assert (ctx.tenant_id, ctx.install_id, ctx.extension_id, ctx.content_hash) == (
        TENANT, env.install_id, env.extension_id, env.content_hash)
    assert ctx.version_id and ctx.config == {"greeting": "hello", "region": "eu"}
    assert "cap:secrets.get" in req.providers and "cap:context.read" in req.providers
    assert req.secret_envelope is not None and SECRET_VALUE not in req.secret_envelope.model_dump_json()
    assert req.user is not None and req.user.user_id == "viewer-user"
    assert req.egress.allowed_hosts == ["api.example.com"]
    assert headers["x-alga-tenant"] == TENANT and headers["x-alga-extension"] == env.extension_id
    assert headers["x-ext-install-id"] == env.install_id and headers["x-ext-version-id"] == ctx.version_id
    assert headers["x-ext-config-version"] and headers["x-ext-secrets-version"] == req.secret_envelope.version
    assert "x-idempotency-key" not in headers


def test_head_is_authorized_as_get(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url)
    r = env.client.head(env.url("/hello"), headers=env.headers("viewer"))
    assert r.status_code == 200 and r.content == b""
    # /echo is declared for POST only: HEAD matches GET declarations, so it is undeclared.
    assert env.client.head(env.url("/echo"), headers=env.headers("viewer")).status_code == 404


# --- the error table -------------------------------------------------------------------


def test_401_unauthenticated(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url)
    rec = record(env)
    assert_error(env.client.get(env.url("/hello")), 401, "unauthenticated")
    r = env.client.get(env.url("/hello"), headers={"authorization": "Bearer not-a-jwt"})
    assert_error(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"] == "Bearer"
    r = env.client.get(env.url("/hello"), headers={"authorization": "Basic dXNlcjpwYXNz", "x-alga-tenant": TENANT})
    assert_error(r, 401, "unauthenticated")
    assert rec.calls == []


def test_403_tenant_mismatch(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url)
    rec = record(env)
    for name in ("x-alga-tenant", "x-tenant-id"):
        r = env.client.get(env.url("/hello"), headers=env.headers("viewer", **{name: OTHER}))
        assert_error(r, 403, "tenant_mismatch")
    # A matching header is fine; headers never select a tenant.
    same = env.client.get(env.url("/hello"), headers=env.headers("viewer", **{"x-alga-tenant": TENANT}))
    assert same.status_code == 200
    assert len(rec.calls) == 1


def test_404_cross_tenant_by_every_reference(make_env, database_url) -> None:
    env = make_env(database_url)
    rec = record(env)
    stranger = mint_dev_token(env.container.settings, tenant="initech", subject="u", roles=["admin"])
    for ref in (env.install_id, env.extension_id, env.slug):
        r = env.client.get(env.url("/hello", ref), headers={"authorization": f"Bearer {stranger}"})
        assert_error(r, 404, "extension_not_available")
    # acme's token naming globex's install id: another tenant's install is simply not there.
    assert_error(env.client.get(env.url("/hello", env.other_install_id), headers=env.headers("admin")),
                 404, "extension_not_available")
    assert_error(env.client.get(env.url("/hello", "no.such-ext"), headers=env.headers("admin")),
                 404, "extension_not_available")
    assert rec.calls == []


def test_404_disabled_install(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url)
    with env.container.db.session() as session:
        installs.set_enabled(session, TENANT, env.install_id, False)
    assert_error(env.client.get(env.url("/hello"), headers=env.headers("viewer")), 404, "extension_not_available")


def test_404_endpoint_not_found_and_403_forbidden(make_env, database_url) -> None:
    env = make_env(database_url)
    rec = record(env)
    assert_error(env.client.get(env.url("/nope"), headers=env.headers("viewer")), 404, "endpoint_not_found")
    assert_error(env.client.post(env.url("/hello"), headers=env.headers("editor")), 404, "endpoint_not_found")
    # viewer write → 403; a user with no role → 403
    assert_error(env.client.put(env.url("/kv/ns/k"), content=b"v", headers=env.headers("viewer")), 403, "forbidden")
    assert_error(env.client.get(env.url("/hello"), headers=env.headers("none")), 403, "forbidden")
    # traversal through a `:param`, percent-encoded so no client normalises it away
    for raw in ("/kv/%2E%2E", "/kv/ns/%2e%2e", "/kv/%2e%2e%2fadmin/k", "/kv/ns/..%5Cx", "/kv/ns/a%00b"):
        assert_error(env.client.get(env.url(raw), headers=env.headers("editor")), 404, "endpoint_not_found")
    assert rec.calls == []
    assert env.client.put(env.url("/kv/ns/k"), content=b"v", headers=env.headers("editor")).status_code == 200


def test_429_rate_limited_in_process(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url, gateway={"rate_limit_burst": 2, "rate_limit_per_second": 0.5})
    codes = [env.client.get(env.url("/hello"), headers=env.headers("viewer")).status_code for _ in range(2)]
    assert codes == [200, 200]
    r = env.client.get(env.url("/hello"), headers=env.headers("viewer"))
    assert_error(r, 429, "rate_limited")
    assert 1 <= int(r.headers["retry-after"]) <= 2
    # per tenant + install: globex's bucket is untouched
    other = env.client.get(env.url("/hello"), headers=env.headers("other-editor"))
    assert other.status_code == 200


def test_429_rate_limited_redis(make_env, sqlite_url, redis_url) -> None:
    import uuid

    env = make_env(sqlite_url, redis_url=redis_url, gateway={"rate_limit_burst": 2, "rate_limit_per_second": 0.2})
    limiter = env.container.gateway.limiter
    limiter.prefix = f"extgate-test:{uuid.uuid4().hex}"  # a fresh bucket for this test
    assert type(limiter).__name__ == "RedisRateLimiter"
    codes = [env.client.get(env.url("/hello"), headers=env.headers("viewer")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_503_when_audit_fails_and_nothing_is_dispatched(make_env, database_url, monkeypatch) -> None:
    env = make_env(database_url)
    rec = record(env)

    async def broken(event: Any) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(env.container.audit, "append_async", broken)
    assert_error(env.client.get(env.url("/hello"), headers=env.headers("viewer")), 503, "access_policy_unavailable")
    assert rec.calls == []
    monkeypatch.setattr(env.container, "audit", None)
    assert_error(env.client.get(env.url("/hello"), headers=env.headers("viewer")), 503, "access_policy_unavailable")
    assert rec.calls == []


def test_503_when_policy_engine_missing(make_env, sqlite_url, monkeypatch) -> None:
    env = make_env(sqlite_url)
    monkeypatch.setattr(env.container, "policy", None)
    assert_error(env.client.get(env.url("/hello"), headers=env.headers("viewer")), 503, "access_policy_unavailable")


def test_413_from_content_length(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url, gateway={"max_body_bytes": 1024})
    rec = record(env)
    r = env.client.post(env.url("/echo"), content=b"x" * 1025, headers=env.headers("editor"))
    assert_error(r, 413, "payload_too_large")
    assert rec.calls == []
    assert env.client.post(env.url("/echo"), content=b"x" * 1024, headers=env.headers("editor")).content == b"x" * 1024


def _asgi_post(app: Any, path: str, headers: list[tuple[bytes, bytes]], chunks: int, chunk: bytes) -> tuple[int, int]:
    """Drive the ASGI app directly so we can count how much of the body it pulled."""
    pulled = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= chunks:
            return {"type": "http.disconnect"}
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": pulled < chunks}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
             "state": {}}
    asyncio.run(app(scope, receive, send))
    return status, pulled


def test_413_eleven_mib_not_read_into_memory(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url)
    app = env.client.app
    mib = b"x" * (1 << 20)
    auth = [(b"authorization", f"Bearer {env.tokens['editor']}".encode()), (b"host", b"testserver")]
    # Declared length over the cap: refused before reading any of it.
    status, pulled = _asgi_post(app, env.url("/echo"), [*auth, (b"content-length", str(11 << 20).encode())], 11, mib)
    assert (status, pulled) == (413, 0)
    # Chunked (no length): reading stops at the first chunk past the cap.
    status, pulled = _asgi_post(app, env.url("/echo"), [*auth, (b"transfer-encoding", b"chunked")], 40, mib)
    assert status == 413 and pulled == 11  # 40 MiB offered, 11 MiB read


def test_503_unreachable_runner_has_request_id(make_env, sqlite_url) -> None:
    # An unreachable runner is an outage (nothing was delivered): 503 with retry-after.
    from tests.gateway.conftest import free_port

    env = make_env(sqlite_url, runner_url=f"http://127.0.0.1:{free_port()}")
    env.container.gateway.close()
    env.container.gateway = build_gateway(env.container, GatewaySettings(rate_limit_burst=100))
    r = env.client.get(env.url("/hello"), headers=env.headers("viewer"))
    body = assert_error(r, 503, "runner_unavailable")
    assert body["detail"] == {"request_id": r.headers["x-request-id"]} and r.headers["retry-after"] == "1"


def test_502_guest_failure_never_leaks_guest_text(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url, guest="faults")
    r = env.client.get(env.url("/trap"), headers=env.headers("viewer"))
    body = assert_error(r, 502, "bad_gateway")
    assert set(body) == {"error", "detail"} and set(body["detail"]) == {"request_id"}


def test_504_guest_timeout(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url, guest="faults", gateway={"timeout_ms": 300})
    r = env.client.get(env.url("/loop"), headers=env.headers("viewer"))
    body = assert_error(r, 504, "gateway_timeout")
    assert body["detail"]["request_id"] == r.headers["x-request-id"]
    # the worker is free again
    assert env.client.post(env.url("/echo"), content=b"ok", headers=env.headers("editor")).content == b"ok"


# --- install metadata reaches the guest ---------------------------------------------------


def test_config_and_secret_changes_reach_the_guest(make_env, database_url) -> None:
    env = make_env(database_url)
    rec = record(env)
    h = env.headers("viewer")
    assert env.client.get(env.url("/config"), headers=h).json() == {"greeting": "hello", "region": "eu"}
    assert env.client.get(env.url("/secret-check?key=api_key"), headers=h).json()["present"] is True
    assert env.client.get(env.url("/secret-check?key=rotated"), headers=h).json()["present"] is False
    first = rec.calls[-1][1]

    install_config.set_config(env.container.db, TENANT, env.install_id, {"greeting": "changed"})
    install_secrets.set_secrets(env.container.db, env.container.keyring, TENANT, env.install_id,
                                {"rotated": "x" * 12, "api_key": None})
    assert env.client.get(env.url("/config"), headers=h).json() == {"greeting": "changed"}
    assert env.client.get(env.url("/secret-check?key=rotated"), headers=h).json()["present"] is True
    assert env.client.get(env.url("/secret-check?key=api_key"), headers=h).json()["present"] is False
    second = rec.calls[-1][1]
    assert second["x-ext-config-version"] != first["x-ext-config-version"]
    assert second["x-ext-secrets-version"] != first["x-ext-secrets-version"]


# --- idempotency ---------------------------------------------------------------------


def test_idempotent_retry_returns_first_response_once(make_env, database_url) -> None:
    env = make_env(database_url)
    rec = record(env)
    h = env.headers("editor", **{"x-idempotency-key": "op-1"})
    first = env.client.put(env.url("/kv/ns/k"), content=b"v1", headers=h)
    assert first.status_code == 200 and first.json()["revision"] == 1
    again = env.client.put(env.url("/kv/ns/k"), content=b"v1", headers=h)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["x-ext-idempotent-replay"] == "true"
    assert len(rec.calls) == 1  # executed once
    assert rec.calls[0][1]["x-idempotency-key"] == "op-1"
    # same key, different request → refused; no key → executes again
    assert_error(env.client.put(env.url("/kv/ns/k"), content=b"v2", headers=h), 422, "idempotency_key_reused")
    assert env.client.put(env.url("/kv/ns/k"), content=b"v1", headers=env.headers("editor")).json()["revision"] == 2
    # the key is scoped by tenant + install: globex's identical key executes on its own install
    other = env.client.put(env.url("/kv/ns/k"), content=b"v1",
                           headers=env.headers("other-editor", **{"x-idempotency-key": "op-1"}))
    assert other.status_code == 200 and other.json()["revision"] == 1


def test_idempotency_redis_backend(make_env, sqlite_url, redis_url) -> None:
    import uuid

    env = make_env(sqlite_url, redis_url=redis_url)
    assert type(env.container.gateway.idempotency).__name__ == "RedisIdempotencyStore"
    rec = record(env)
    h = env.headers("editor", **{"x-idempotency-key": uuid.uuid4().hex})
    first = env.client.put(env.url("/kv/ns/r"), content=b"v", headers=h)
    again = env.client.put(env.url("/kv/ns/r"), content=b"v", headers=h)
    assert first.status_code == again.status_code == 200 and first.content == again.content
    assert len(rec.calls) == 1


# --- headers --------------------------------------------------------------------------


def test_header_allowlists_both_ways(make_env, sqlite_url) -> None:
    env = make_env(sqlite_url, guest="headers")
    r = env.client.get(env.url("/headers"), headers=env.headers(
        "viewer", cookie="session=abc", accept="application/json", **{
            "user-agent": "pytest", "x-request-id": "client-rid", "x-custom": "nope", "x-alga-tenant": TENANT,
            "proxy-authorization": "Basic Zm9vOmJhcg=="}))
    assert r.status_code == 200, r.text
    seen = dict(line.split(": ", 1) for line in r.text.splitlines())
    assert seen["accept"] == "application/json" and seen["user-agent"] == "pytest"
    assert seen["x-request-id"] == "client-rid"
    for banned in ("authorization", "cookie", "x-custom", "x-alga-tenant", "proxy-authorization", "host"):
        assert banned not in seen
    assert env.tokens["viewer"] not in r.text
    # response: guest set set-cookie, x-ext-trace, etag, x-internal, content-type
    assert r.headers["x-ext-trace"] == "t1" and r.headers["etag"] == '"v1"'
    assert r.headers["content-type"] == "text/plain"
    assert "set-cookie" not in r.headers and "x-internal" not in r.headers


# --- audit ------------------------------------------------------------------------------


def test_audit_records_allow_and_deny_without_secrets(make_env, database_url) -> None:
    env = make_env(database_url)
    ok = env.client.get(env.url("/secret-check?key=api_key"), headers=env.headers("viewer"))
    denied = env.client.put(env.url("/kv/ns/k"), content=b"body-text", headers=env.headers("viewer"))
    assert ok.status_code == 200 and denied.status_code == 403
    records = env.audit_records()
    decisions = [r for r in records if r["action"] == "gateway.decision"]
    allow = next(r for r in decisions if r["request_id"] == ok.headers["x-request-id"])
    assert allow["outcome"] == "allow" and allow["tenant"] == TENANT
    assert allow["policy_ids"] == ["rbac.read"] and allow["policy_revision"].startswith("sha256:")
    assert allow["resource"] == f"install:{env.install_id}/endpoint:GET /secret-check"
    assert allow["actor"]["id"] == "viewer-user"
    deny = next(r for r in decisions if r["request_id"] == denied.headers["x-request-id"])
    assert deny["outcome"] == "deny" and deny["details"]["default_deny"] is True  # no permit for viewers
    undeclared = env.client.get(env.url("/nope"), headers=env.headers("viewer"))
    records = env.audit_records()
    nf = next(r for r in records if r["request_id"] == undeclared.headers["x-request-id"])
    assert nf["outcome"] == "deny" and nf["policy_ids"] == ["endpoint.undeclared"] and nf["details"]["reasons"]
    execution = next(r for r in records if r["action"] == "execution.complete"
                     and r["request_id"] == ok.headers["x-request-id"])
    assert execution["outcome"] == "success" and execution["details"]["status"] == 200
    # allow is durable before dispatch: it precedes its execution record
    assert allow["seq"] < execution["seq"]
    text = json.dumps(records)
    for secret in (SECRET_VALUE, env.tokens["viewer"], "body-text", base64.b64encode(b"body-text").decode()):
        assert secret not in text


# --- CORS -------------------------------------------------------------------------------


def test_cors_from_configuration_only(make_env, sqlite_url) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app

    env = make_env(sqlite_url, gateway={"cors_origins": "https://app.example.com"})
    client = TestClient(create_app(container=env.container))
    pre = client.options(env.url("/hello"), headers={
        "origin": "https://app.example.com", "access-control-request-method": "GET",
        "access-control-request-headers": "authorization"})
    assert pre.status_code == 200  # answered without a token
    assert pre.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-alga-tenant" not in pre.headers.get("access-control-allow-headers", "")
    evil = client.options(env.url("/hello"), headers={
        "origin": "https://evil.example", "access-control-request-method": "GET"})
    assert "access-control-allow-origin" not in evil.headers
    r = client.get(env.url("/hello"), headers=env.headers("viewer", origin="https://evil.example"))
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = client.get(env.url("/hello"), headers=env.headers("viewer", origin="https://app.example.com"))
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"


def test_cors_wildcard_refused() -> None:
    from service.gateway.cors import validate_origins

    with pytest.raises(ValueError):
        validate_origins(["*"])
    with pytest.raises(ValueError):
        validate_origins(["null"])
