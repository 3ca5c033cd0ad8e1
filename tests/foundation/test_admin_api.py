"""Admin API over HTTP: auth, tenant isolation, error bodies, secrets never returned."""

import io
import json
import tarfile

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.registry.bundles import pack_directory
from tests.support import make_container, token, write_bundle

SECRET = "hunter2-very-secret"


@pytest.fixture
def env(tmp_path, database_url):
    c = make_container(tmp_path, database_url)
    client = TestClient(create_app(container=c))
    archive = pack_directory(write_bundle(tmp_path / "bundle"))
    hdr = {
        "platform": {"authorization": "Bearer " + token(c, "ops", "platform-admin")},
        "t1": {"authorization": "Bearer " + token(c, "t1", "admin")},
        "t1_viewer": {"authorization": "Bearer " + token(c, "t1", "viewer")},
        "t2": {"authorization": "Bearer " + token(c, "t2", "admin")},
    }
    yield client, hdr, archive
    c.close()


def _publish_and_install(client, hdr, archive):
    r = client.post("/api/admin/extensions", content=archive, headers=hdr["platform"])
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/admin/tenants/t1/installs",
        headers=hdr["t1"],
        json={"extension": "acme.com.acme.tickets", "granted_capabilities": ["cap:secrets.get"]},
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_health_and_ready(env):
    client, _, _ = env
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["database"]["ok"] is True


@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer nope", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 9000])
def test_unauthenticated(env, auth):
    client, _, _ = env
    headers = {"authorization": auth} if auth else {}
    r = client.get("/api/admin/tenants/t1/installs", headers=headers)
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated"
    assert r.headers["www-authenticate"] == "Bearer"


def test_publish_needs_platform_admin_and_republish_is_idempotent(env):
    client, hdr, archive = env
    r = client.post("/api/admin/extensions", content=archive, headers=hdr["t1"])
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    first = client.post("/api/admin/extensions", content=archive, headers=hdr["platform"])
    assert first.status_code == 201
    again = client.post("/api/admin/extensions", content=archive, headers=hdr["platform"])
    assert again.status_code == 200 and again.json()["content_hash"] == first.json()["content_hash"]
    listed = client.get("/api/admin/extensions", headers=hdr["t1"]).json()
    assert listed[0]["slug"] == "acme.com.acme.tickets" and listed[0]["versions"][0]["content_hash"]


def test_publish_bad_archives(env):
    client, hdr, _ = env
    r = client.post("/api/admin/extensions", content=b"not an archive", headers=hdr["platform"])
    assert r.status_code == 422 and r.json()["error"] == "bundle_invalid"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../../etc/passwd")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    r = client.post("/api/admin/extensions", content=buf.getvalue(), headers=hdr["platform"])
    assert r.status_code == 422 and r.json()["error"] == "unsafe_archive_member"
    r = client.get("/api/admin/extensions", headers=hdr["platform"])
    assert r.json() == []


def test_cross_tenant_is_refused_or_invisible(env):
    client, hdr, archive = env
    install_id = _publish_and_install(client, hdr, archive)
    # Another tenant's admin on t1's path: forbidden by the authorizer.
    r = client.get("/api/admin/tenants/t1/installs", headers=hdr["t2"])
    assert r.status_code == 403
    # On its own path with t1's install id: not found, nothing changed.
    r = client.patch(
        f"/api/admin/tenants/t2/installs/{install_id}/secrets", headers=hdr["t2"], json={"secrets": {"api-key": "evil"}}
    )
    assert r.status_code == 404 and r.json()["error"] == "install_not_found"
    r = client.get(f"/api/admin/tenants/t1/installs/{install_id}/secrets", headers=hdr["t1"])
    assert r.json()["key_names"] == []


def test_viewer_cannot_write(env):
    client, hdr, archive = env
    install_id = _publish_and_install(client, hdr, archive)
    assert client.get("/api/admin/tenants/t1/installs", headers=hdr["t1_viewer"]).status_code == 200
    r = client.put(
        f"/api/admin/tenants/t1/installs/{install_id}/config", headers=hdr["t1_viewer"], json={"values": {"a": "b"}}
    )
    assert r.status_code == 403


def test_secrets_never_returned_nor_echoed(env):
    client, hdr, archive = env
    install_id = _publish_and_install(client, hdr, archive)
    base = f"/api/admin/tenants/t1/installs/{install_id}/secrets"
    r = client.patch(base, headers=hdr["t1"], json={"secrets": {"api-key": SECRET}})
    assert r.status_code == 200 and r.json()["key_names"] == ["api-key"] and SECRET not in r.text
    # A validation failure must not echo the offending value back.
    r = client.patch(base, headers=hdr["t1"], json={"secrets": {"api-key": SECRET, "n": 5}})
    assert r.status_code == 422 and SECRET not in r.text
    r = client.patch(base, headers=hdr["t1"], json={"secrets": {"bad key!": SECRET}})
    assert r.status_code == 422 and SECRET not in r.text
    r = client.get(base, headers=hdr["t1"])
    assert SECRET not in r.text and r.json()["version"]
    rotated = client.post(base + "/rotate", headers=hdr["t1"]).json()
    assert rotated["version"] != r.json()["version"] and rotated["key_names"] == ["api-key"]


def test_config_put_get_and_conflict(env):
    client, hdr, archive = env
    install_id = _publish_and_install(client, hdr, archive)
    base = f"/api/admin/tenants/t1/installs/{install_id}/config"
    v1 = client.put(base, headers=hdr["t1"], json={"values": {"region": "eu"}}).json()["version"]
    r = client.put(base, headers=hdr["t1"], json={"values": {"region": "us"}, "expected_version": "stale"})
    assert r.status_code == 409 and r.json()["error"] == "version_conflict"
    assert client.get(base, headers=hdr["t1"]).json() == {
        "install_id": install_id,
        "values": {"region": "eu"},
        "version": v1,
        "updated_at": client.get(base, headers=hdr["t1"]).json()["updated_at"],
    }
    r = client.put(base, headers=hdr["t1"], json={"values": {"region": 5}})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"


def test_install_lifecycle(env):
    client, hdr, archive = env
    install_id = _publish_and_install(client, hdr, archive)
    base = f"/api/admin/tenants/t1/installs/{install_id}"
    assert client.post(base + "/disable", headers=hdr["t1"]).json()["status"] == "disabled"
    assert client.post(base + "/enable", headers=hdr["t1"]).json()["enabled"] is True
    r = client.patch(base, headers=hdr["t1"], json={"granted_capabilities": ["cap:http.fetch"]})
    assert r.status_code == 422 and r.json()["detail"]["not_declared"] == ["cap:http.fetch"]
    r = client.post(
        "/api/admin/tenants/t1/installs",
        headers=hdr["t1"],
        json={"extension": "acme.com.acme.tickets", "granted_capabilities": []},
    )
    assert r.status_code == 409 and r.json()["error"] == "already_installed"
    r = client.post(
        "/api/admin/tenants/t1/installs",
        headers=hdr["t1"],
        json={"extension": "nope.nope", "granted_capabilities": [], "surprise": 1},
    )
    assert r.status_code == 422
    assert client.delete(base, headers=hdr["t1"]).status_code == 204
    assert client.get(base, headers=hdr["t1"]).status_code == 404


def test_bad_tenant_in_path(env):
    client, hdr, _ = env
    r = client.get("/api/admin/tenants/..%2Fx/installs", headers=hdr["platform"])
    assert r.status_code in (404, 422)
    assert json.loads(r.text)["error"]


def test_platform_admin_reads_but_never_writes_another_tenant(env):
    client, hdr, archive = env
    install_id = _publish_and_install(client, hdr, archive)
    base = f"/api/admin/tenants/t1/installs/{install_id}"
    assert client.get(base, headers=hdr["platform"]).status_code == 200
    for method, url, body in [
        ("patch", base + "/secrets", {"secrets": {"api-key": "x"}}),
        ("put", base + "/config", {"values": {"a": "b"}}),
        ("post", base + "/disable", None),
    ]:
        r = client.request(method.upper(), url, headers=hdr["platform"], json=body)
        assert r.status_code == 403 and r.json()["error"] == "forbidden", (method, url)
    assert client.get(base, headers=hdr["t1"]).json()["enabled"] is True
    assert client.get(base + "/secrets", headers=hdr["t1"]).json()["key_names"] == []


def test_admin_changes_and_denials_are_audited_without_values(env):
    client, hdr, archive = env
    install_id = _publish_and_install(client, hdr, archive)
    base = f"/api/admin/tenants/t1/installs/{install_id}"
    client.patch(base + "/secrets", headers=hdr["t1"], json={"secrets": {"api-key": SECRET}})
    client.put(base + "/config", headers=hdr["t1"], json={"values": {"region": "eu-west-secret-ish"}})
    client.put(base + "/config", headers=hdr["t1_viewer"], json={"values": {"a": "b"}})  # denied
    audit = client.app.state.services.audit
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the denial is queued, not awaited
        records = [audit.get(seq).parsed() for seq in range(audit.size())]
        if any(r["outcome"] == "deny" for r in records):
            break
        time.sleep(0.05)
    text = json.dumps(records)
    assert SECRET not in text and "eu-west-secret-ish" not in text
    actions = [(r["action"], r["outcome"]) for r in records]
    assert ("admin.extension.publish", "success") in actions
    assert ("admin.install.create", "success") in actions
    assert ("admin.install.secrets.write", "success") in actions
    assert ("admin.install.config.write", "success") in actions
    assert ("admin.install.config.write", "deny") in actions
    secrets_rec = next(r for r in records if r["action"] == "admin.install.secrets.write")
    assert secrets_rec["details"]["set"] == ["api-key"] and secrets_rec["tenant"] == "t1"
