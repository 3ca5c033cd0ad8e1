"""The CLI end to end on the embedded default (a fresh data directory)."""

import json

import pytest
from typer.testing import CliRunner

from service.cli.main import app
from service.registry.bundles import pack_directory
from tests.support import manifest, write_bundle


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("EXTGATE_DATABASE_URL", raising=False)
    runner = CliRunner()

    def _run(*args, input=None, ok=True):
        result = runner.invoke(app, list(args), input=input)
        if ok:
            assert result.exit_code == 0, (result.output, result.stderr if hasattr(result, "stderr") else "")
        return result

    return _run


def _json(result):
    return json.loads(result.stdout)


def test_newcomer_flow(run, tmp_path, monkeypatch):
    # The component validator compiles real components; this bundle has a header-only one.
    monkeypatch.setattr("service.container.default_component_validator", lambda settings: None)
    bundle = write_bundle(tmp_path / "b")
    pub = _json(run("ext", "publish", str(bundle)))
    assert pub["created"] and pub["content_hash"].startswith("sha256:")
    inst = _json(
        run(
            "install",
            "create",
            "--tenant",
            "acme",
            "acme.com.acme.tickets",
            "--grant-declared",
            "--egress",
            "api.example.com",
        )
    )
    assert inst["granted_capabilities"] == ["cap:secrets.get", "cap:storage.kv"]
    cfg = _json(run("install", "config", "set", "--tenant", "acme", inst["id"], "region=eu", "tier=gold"))
    assert cfg["values"] == {"region": "eu", "tier": "gold"}
    sec = run(
        "install",
        "secrets",
        "set",
        "--tenant",
        "acme",
        inst["id"],
        "--from-json",
        "-",
        input=json.dumps({"api-key": "s3cr3t-value"}),
    )
    assert "s3cr3t-value" not in sec.output and _json(sec)["key_names"] == ["api-key"]
    rot = _json(run("install", "secrets", "rotate", "--tenant", "acme", inst["id"]))
    assert rot["version"] != _json(sec)["version"]
    assert _json(run("install", "list", "--tenant", "acme"))[0]["id"] == inst["id"]
    assert _json(run("install", "disable", "--tenant", "acme", inst["id"]))["status"] == "disabled"
    assert _json(run("install", "list", "--tenant", "other")) == []
    assert _json(run("install", "remove", "--tenant", "acme", inst["id"])) == {"removed": inst["id"]}


def test_errors_are_json_with_nonzero_exit(run, tmp_path, monkeypatch):
    monkeypatch.setattr("service.container.default_component_validator", lambda settings: None)
    bad = write_bundle(tmp_path / "bad", manifest(name="NotReverseDomain", version="1"))
    result = run("ext", "publish", str(bad), ok=False)
    assert result.exit_code == 1
    err = json.loads(result.stderr)
    assert err["error"] == "manifest_invalid"
    assert {e["path"] for e in err["detail"]["errors"]} >= {"name", "version"}
    result = run("install", "create", "--tenant", "acme", "no.such", ok=False)
    assert result.exit_code == 1 and json.loads(result.stderr)["error"] == "extension_not_found"


def test_token_and_db_verbs(run):
    tok = _json(run("token", "--tenant", "acme", "--user", "alice", "--role", "admin", "--role", "viewer"))
    assert tok["roles"] == ["admin", "viewer"] and tok["token"].count(".") == 2
    bad = run("token", "--tenant", "acme", "--user", "alice", "--role", "root", ok=False)
    assert bad.exit_code == 2
    up = _json(run("db", "upgrade"))
    cur = _json(run("db", "current"))
    assert up["revision"] == cur["head"] == cur["current"]


def test_sign_and_publish_signed(run, tmp_path, monkeypatch):
    monkeypatch.setattr("service.container.default_component_validator", lambda settings: None)
    keys = _json(run("ext", "keygen", "--out", str(tmp_path / "pub.key")))
    archive = tmp_path / "b.tar.zst"
    archive.write_bytes(pack_directory(write_bundle(tmp_path / "b")))
    sig = _json(run("ext", "sign", str(archive), "--key", str(tmp_path / "pub.key")))
    monkeypatch.setenv("EXTGATE_REQUIRE_SIGNED_BUNDLES", "1")
    monkeypatch.setenv("EXTGATE_TRUSTED_PUBLISHER_KEYS", "me:" + keys["public_key"])
    assert json.loads(run("ext", "publish", str(archive), ok=False).stderr)["error"] == "signature_required"
    assert _json(run("ext", "publish", str(archive), "--signature", sig["signature"]))["signer_key_id"] == "me"


def test_cli_changes_are_audited(run, tmp_path, monkeypatch):
    """Every CLI write leaves an admin.* record naming the OS account; secret values never
    appear; policy reloads from the CLI are recorded too."""
    import getpass
    import socket

    from sqlalchemy import create_engine, text

    monkeypatch.setattr("service.container.default_component_validator", lambda settings: None)
    pub = _json(run("ext", "publish", str(write_bundle(tmp_path / "b"))))
    inst = _json(run("install", "create", "--tenant", "acme", "acme.com.acme.tickets", "--grant-declared"))
    run("install", "config", "set", "--tenant", "acme", inst["id"], "region=eu")
    run("install", "secrets", "set", "--tenant", "acme", inst["id"], "--from-json", "-",
        input=json.dumps({"api_key": "s3cr3t-value-123"}))
    run("install", "secrets", "rotate", "--tenant", "acme", inst["id"])
    run("install", "disable", "--tenant", "acme", inst["id"])
    run("install", "remove", "--tenant", "acme", inst["id"])
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "policies"
    run("policy", "reload", str(shipped))  # already active: nothing changes, nothing to record
    import shutil

    broken = tmp_path / "broken-policies"
    shutil.copytree(shipped, broken)
    (broken / "rbac.cedar").write_text("permit (principal, action, resource) when { nonsense };\n")
    assert run("policy", "reload", str(broken), ok=False).exit_code == 1

    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'extgate.db'}")
    with engine.connect() as conn:
        bodies = [r[0] for r in conn.execute(text("SELECT body FROM audit_record ORDER BY seq"))]
    engine.dispose()
    assert not any("s3cr3t-value-123" in (b if isinstance(b, str) else b.decode()) for b in bodies)
    records = [json.loads(b) for b in bodies]
    by_action = {r["action"]: r for r in records}
    for action in ("admin.extension.publish", "admin.install.create", "admin.install.config.write",
                   "admin.install.secrets.write", "admin.install.secrets.rotate", "admin.install.disable",
                   "admin.install.remove"):
        assert action in by_action, (action, sorted(by_action))
        assert by_action[action]["actor"] == {"id": f"cli:{getpass.getuser()}", "type": "operator", "auth": "cli",
                                              "ip": f"cli:{getpass.getuser()}@{socket.gethostname()}"}
    assert by_action["admin.install.create"]["tenant"] == "acme"
    assert by_action["admin.install.secrets.write"]["details"]["set"] == ["api_key"]
    assert by_action["admin.extension.publish"]["details"]["content_hash"] == pub["content_hash"]
    rejected = [r for r in records if r["action"] == "policy.rejected"]
    assert rejected and rejected[-1]["actor"]["id"] == f"cli:{getpass.getuser()}"
    assert rejected[-1]["actor"]["ip"] == f"cli:{getpass.getuser()}@{socket.gethostname()}"
    assert rejected[-1]["outcome"] == "rejected"


def test_missing_production_keys_are_a_clear_error(run, monkeypatch, postgres_url):
    """On PostgreSQL without configured keys, CLI verbs exit 2 naming what to set (no traceback)."""
    monkeypatch.setenv("EXTGATE_DATABASE_URL", postgres_url)
    for var in ("EXTGATE_SECRET_KEYS", "EXTGATE_ALLOW_DEV_KEYS", "EXTGATE_AUDIT_SIGNING_KEY",
                "EXTGATE_AUDIT_ALLOW_DEV_KEY"):
        monkeypatch.delenv(var, raising=False)
    result = run("install", "list", "--tenant", "acme", ok=False)
    assert result.exit_code == 2, result.output
    err = json.loads(result.stderr)
    assert err["error"] == "configuration_error" and "EXTGATE_" in err["detail"]


@pytest.mark.parametrize(
    ("env", "proxy_headers", "trusted"),
    [(None, False, None), ("", False, None), (" 10.0.0.0/8 , 192.168.1.5 ", True, "10.0.0.0/8,192.168.1.5")],
)
def test_serve_trusts_forwarded_headers_only_from_configured_proxies(run, monkeypatch, env, proxy_headers, trusted):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    if env is None:
        monkeypatch.delenv("EXTGATE_FORWARDED_ALLOW_IPS", raising=False)
    else:
        monkeypatch.setenv("EXTGATE_FORWARDED_ALLOW_IPS", env)
    run("serve", "--port", "8123")
    [(target, kw)] = calls
    assert target == "service.asgi:app" and kw["port"] == 8123
    assert kw["proxy_headers"] is proxy_headers
    assert kw["forwarded_allow_ips"] == trusted


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "proxy.internal", "10.0.0.1,,nope"])
def test_serve_refuses_an_invalid_proxy_list(run, monkeypatch, bad):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setenv("EXTGATE_FORWARDED_ALLOW_IPS", bad)
    result = run("serve", ok=False)
    assert result.exit_code == 2 and calls == []  # nothing started
    body = json.loads(result.stderr)
    assert body["error"] == "configuration_error"
    assert body["detail"][0]["setting"] == "EXTGATE_FORWARDED_ALLOW_IPS"
    assert "is not an IP address or CIDR network" in body["detail"][0]["message"]


@pytest.mark.parametrize("missing", ["EXTGATE_SECRET_KEYS", "EXTGATE_AUDIT_SIGNING_KEY"])
def test_serve_without_a_production_key_is_one_configuration_error(run, monkeypatch, postgres_url, missing):
    """`extgate serve` on PostgreSQL names the missing key in one line; nothing starts, no traceback."""
    import base64
    import os

    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setenv("EXTGATE_DATABASE_URL", postgres_url)
    for var in ("EXTGATE_ALLOW_DEV_KEYS", "EXTGATE_AUDIT_ALLOW_DEV_KEY"):
        monkeypatch.delenv(var, raising=False)
    present = {
        "EXTGATE_SECRET_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode(),
        "EXTGATE_JWT_HS256_SECRET": "x" * 48,
        "EXTGATE_RUNNER_TOKEN": "r" * 32,
        "EXTGATE_AUDIT_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    for var, value in present.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv(missing)
    result = run("serve", ok=False)
    assert result.exit_code == 2 and calls == []
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    body = json.loads(result.stderr)
    assert body["error"] == "configuration_error" and missing in body["detail"]
    for value in present.values():
        assert value not in result.stderr
