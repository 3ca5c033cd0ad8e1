"""No record, no change: every state change commits together with its audit record.

The reproduction: with inserts into `audit_record` refused while the server runs, PATCH of
an install's egress allowlist, PATCH of its secrets and PUT of its config answered 503 but
the change was stored and in effect. Now each command (API and CLI) answers 503
`audit_unavailable` and leaves the state exactly as it was, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.app import create_app
from service.cli.main import app as cli_app
from service.container import ServiceContainer
from service.registry.bundles import pack_directory
from tests.support import make_container, manifest, token, write_bundle

SECRET = "first-secret-value"


@contextmanager
def audit_refuses_inserts(c: ServiceContainer) -> Iterator[None]:
    """A DBA's trigger (or a full disk, a revoked grant): every audit insert fails."""
    with c.db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION test_audit_down() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'down'; END $$"
            )
            conn.exec_driver_sql("CREATE TRIGGER test_audit_down BEFORE INSERT ON audit_record "
                                 "FOR EACH ROW EXECUTE FUNCTION test_audit_down()")
        else:
            conn.exec_driver_sql("CREATE TRIGGER test_audit_down BEFORE INSERT ON audit_record "
                                 "BEGIN SELECT RAISE(ABORT, 'down'); END")
    try:
        yield
    finally:
        with c.db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("DROP TRIGGER test_audit_down ON audit_record")
            else:
                conn.exec_driver_sql("DROP TRIGGER test_audit_down")


@pytest.fixture
def env(tmp_path: Any, database_url: str) -> Iterator[tuple[ServiceContainer, TestClient, dict[str, Any], str]]:
    c = make_container(tmp_path, database_url)
    client = TestClient(create_app(container=c))
    hdr = {
        "platform": {"authorization": "Bearer " + token(c, "ops", "platform-admin")},
        "t1": {"authorization": "Bearer " + token(c, "t1", "admin")},
    }
    archive = pack_directory(write_bundle(tmp_path / "v1"))
    assert client.post("/api/admin/extensions", content=archive, headers=hdr["platform"]).status_code == 201
    v2 = pack_directory(write_bundle(tmp_path / "v2", manifest(version="2.0.0")))
    assert client.post("/api/admin/extensions", content=v2, headers=hdr["platform"]).status_code == 201
    r = client.post("/api/admin/tenants/t1/installs", headers=hdr["t1"], json={
        "extension": "acme.com.acme.tickets", "version": "1.0.0", "granted_capabilities": ["cap:secrets.get"],
        "egress_allowlist": ["api.example.com"]})
    assert r.status_code == 201, r.text
    install_id = r.json()["id"]
    base = f"/api/admin/tenants/t1/installs/{install_id}"
    assert client.put(f"{base}/config", headers=hdr["t1"], json={"values": {"region": "eu"}}).status_code == 200
    assert client.patch(f"{base}/secrets", headers=hdr["t1"], json={"secrets": {"api-key": SECRET}}).status_code == 200
    yield c, client, hdr, install_id
    c.close()


def _state(client: TestClient, hdr: dict[str, Any], install_id: str) -> dict[str, Any]:
    base = f"/api/admin/tenants/t1/installs/{install_id}"
    return {
        "installs": client.get("/api/admin/tenants/t1/installs", headers=hdr["t1"]).json(),
        "install": client.get(base, headers=hdr["t1"]).json(),
        "config": client.get(f"{base}/config", headers=hdr["t1"]).json(),
        "secrets": client.get(f"{base}/secrets", headers=hdr["t1"]).json(),
        "extensions": client.get("/api/admin/extensions", headers=hdr["platform"]).json(),
    }


def test_no_record_no_change_through_the_api(env: Any, tmp_path: Any) -> None:
    c, client, hdr, install_id = env
    base = f"/api/admin/tenants/t1/installs/{install_id}"
    before = _state(client, hdr, install_id)
    records_before = c.audit.size()
    v3 = pack_directory(write_bundle(tmp_path / "v3", manifest(version="3.0.0")))
    other = pack_directory(write_bundle(tmp_path / "other", manifest(name="com.acme.other")))
    changes = [
        ("PATCH", base, {"egress_allowlist": ["evil.example.net"]}),
        ("PATCH", f"{base}/secrets", {"secrets": {"api-key": "replaced-secret-value"}}),
        ("PUT", f"{base}/config", {"values": {"region": "us"}}),
        ("POST", f"{base}/disable", None),
        ("POST", f"{base}/enable", None),
        ("POST", f"{base}/upgrade", {"version": "2.0.0", "approved_capabilities": ["cap:secrets.get"]}),
        ("POST", f"{base}/secrets/rotate", None),
        ("DELETE", base, None),
    ]
    with audit_refuses_inserts(c):
        for method, url, body in changes:
            r = client.request(method, url, headers=hdr["t1"], json=body)
            assert r.status_code == 503 and r.json()["error"] == "audit_unavailable", (method, url, r.text)
            assert "replaced-secret-value" not in r.text
        r = client.post("/api/admin/extensions", content=v3, headers=hdr["platform"])
        assert r.status_code == 503 and r.json()["error"] == "audit_unavailable", r.text
        t2 = {"authorization": "Bearer " + token(c, "t2", "admin")}
        r = client.post("/api/admin/tenants/t2/installs", headers=t2, json={
            "extension": "acme.com.acme.tickets", "granted_capabilities": []})
        assert r.status_code == 503 and r.json()["error"] == "audit_unavailable", r.text
        assert client.get("/api/admin/tenants/t2/installs", headers=t2).json() == []
        r = client.post("/api/admin/extensions", content=other, headers=hdr["platform"])
        assert r.status_code == 503, r.text
    assert _state(client, hdr, install_id) == before
    assert c.audit.size() == records_before

    # The extension still reads the secret it had (the envelope was not replaced).
    from runner.contract.envelope import SecretEnvelope, open_envelope
    from service.db.models import InstallSecrets

    with c.db.session() as s:
        row = s.get(InstallSecrets, install_id)
    opened = open_envelope(SecretEnvelope.model_validate(row.envelope), keyring=c.keyring, tenant_id="t1",
                           install_id=install_id)
    assert opened == {"api-key": SECRET}

    # With the log back, the same change commits with exactly one record.
    r = client.patch(base, headers=hdr["t1"], json={"egress_allowlist": ["evil.example.net"]})
    assert r.status_code == 200 and c.audit.size() == records_before + 1
    last = json.loads(c.audit.get(records_before).body)
    assert last["action"] == "admin.install.update" and last["actor"]["ip"] == "testclient"


def test_no_record_no_change_from_the_cli(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    c, client, hdr, install_id = env
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(c.settings.data_dir))
    if c.settings.database_url:
        monkeypatch.setenv("EXTGATE_DATABASE_URL", c.settings.database_url)
        monkeypatch.setenv("EXTGATE_ALLOW_DEV_KEYS", "1")
        monkeypatch.setenv("EXTGATE_AUDIT_ALLOW_DEV_KEY", "1")
    before = _state(client, hdr, install_id)
    runner = CliRunner()
    with audit_refuses_inserts(c):
        for args in (["install", "config", "set", "--tenant", "t1", install_id, "region=us"],
                     ["install", "disable", "--tenant", "t1", install_id],
                     ["install", "remove", "--tenant", "t1", install_id]):
            result = runner.invoke(cli_app, args)
            assert result.exit_code == 1, (args, result.output)
            assert json.loads(result.stderr)["error"] == "audit_unavailable"
    assert _state(client, hdr, install_id) == before
