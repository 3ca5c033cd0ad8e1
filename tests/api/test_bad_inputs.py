"""What schemathesis doesn't generate: raw-HTTP abuse against a real server, and in-process
abuse of the JSON and auth layers. Every case: a clear 4xx, nothing stored."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth.tokens import mint_dev_token
from service.registry.bundles import pack_directory
from service.settings import Settings
from tests.support import make_container, token, write_bundle


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("srv")
    port = _free_port()
    env = {**os.environ, "EXTGATE_DATA_DIR": str(data), "EXTGATE_PORT": str(port)}
    env.pop("EXTGATE_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "service.cli.main", "serve"], env=env,  # noqa: S603
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(base + "/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("server did not start")
        settings = Settings(data_dir=data)
        admin = mint_dev_token(settings, tenant="acme", subject="a", roles=["admin"])
        yield base, port, admin
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def test_header_injection_rejected(server):
    _, port, admin = server
    raw = _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rSet-Cookie: evil=1\r\nConnection: close\r\n\r\n")
    assert raw == b"" or 400 <= _status(raw) < 500
    assert b"evil=1" not in raw


def test_huge_headers_rejected(server):
    _, port, _ = server
    raw = _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\nConnection: close\r\n\r\n")
    assert raw == b"" or _status(raw) == 431
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    raw = _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"Connection: close\r\n\r\n")
    assert _status(raw) == 431 and b"request_header_fields_too_large" in raw


def test_invalid_utf8_path(server):
    _, port, admin = server
    raw = _raw(port, b"GET /api/admin/tenants/\xff\xfe/installs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
               + admin.encode() + b"\r\nConnection: close\r\n\r\n")
    assert 400 <= _status(raw) < 500


def test_oversized_token_over_http(server):
    base, _, _ = server
    r = httpx.get(base + "/api/admin/tenants/acme/installs", headers={"authorization": "Bearer " + "a" * 9000})
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated"


# In-process ---------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path):
    c = make_container(tmp_path, f"sqlite:///{tmp_path / 'x.db'}")
    client = TestClient(create_app(container=c), raise_server_exceptions=False)
    platform = {"authorization": "Bearer " + token(c, "ops", "platform-admin")}
    admin = {"authorization": "Bearer " + token(c, "acme", "admin")}
    assert client.post("/api/admin/extensions", content=pack_directory(write_bundle(tmp_path / "b")),
                       headers=platform).status_code == 201
    r = client.post("/api/admin/tenants/acme/installs", headers=admin,
                    json={"extension": "acme.com.acme.tickets", "granted_capabilities": []})
    yield client, c, admin, r.json()["id"]
    c.close()


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"values":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001,
    b'{"values": {"a": "\xff\xfe"}}',
    b'{"values": {"a": "b"',
])
def test_json_bombs_and_bad_encodings(env, body):
    client, _, admin, install_id = env
    url = f"/api/admin/tenants/acme/installs/{install_id}/config"
    r = client.put(url, content=body, headers={**admin, "content-type": "application/json"})
    assert r.status_code in (400, 422) and r.json()["error"] in ("bad_request", "invalid_request")
    assert client.get(url, headers=admin).json()["values"] == {}


def test_method_override_headers_are_ignored(env):
    client, _, admin, install_id = env
    for header in ("x-http-method-override", "x-method-override", "x-http-method"):
        r = client.post(f"/api/admin/tenants/acme/installs/{install_id}/enable", headers={**admin, header: "DELETE"})
        assert r.status_code == 200
    assert client.get(f"/api/admin/tenants/acme/installs/{install_id}", headers=admin).status_code == 200


def _b64(d: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def test_expired_forged_and_none_tokens(env):
    client, c, _, _ = env
    secret = c.settings.effective_jwt_hs256_secret
    now = int(time.time())
    claims = {"sub": "a", "tenant": "acme", "roles": ["admin"], "exp": now + 60}
    bad = [
        jwt.encode({**claims, "exp": now - 3600}, secret, algorithm="HS256"),
        jwt.encode(claims, "a-different-secret-of-enough-length", algorithm="HS256"),
        _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + ".",
        _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64(claims) + ".",
        jwt.encode({**claims, "tenant": "acme\r\nx-injected: 1"}, secret, algorithm="HS256"),
    ]
    for tok in bad:
        r = client.get("/api/admin/tenants/acme/installs", headers={"authorization": "Bearer " + tok})
        assert r.status_code == 401
        assert r.json() == {"error": "unauthenticated", "detail": "the bearer token is not valid"}


def test_tenant_header_never_selects_a_tenant(env):
    client, c, _, _ = env
    other = {"authorization": "Bearer " + token(c, "evil", "admin"), "x-alga-tenant": "acme", "x-tenant": "acme"}
    r = client.get("/api/admin/tenants/acme/installs", headers=other)
    assert r.status_code == 403


def test_unknown_path_and_method_are_json_errors(env):
    client, _, admin, _ = env
    r = client.get("/api/admin/nope", headers=admin)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = client.request("TRACE", "/api/admin/extensions", headers=admin)
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_bundle_upload_over_cap_is_413_without_storing(tmp_path):
    c = make_container(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", max_bundle_bytes=1024)
    try:
        client = TestClient(create_app(container=c), raise_server_exceptions=False)
        platform = {"authorization": "Bearer " + token(c, "ops", "platform-admin")}
        r = client.post("/api/admin/extensions", content=b"\x28\xb5\x2f\xfd" + b"0" * 5000, headers=platform)
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
        assert client.get("/api/admin/extensions", headers=platform).json() == []
        assert not list(Path(c.settings.bundle_dir).rglob("archive"))
    finally:
        c.close()
