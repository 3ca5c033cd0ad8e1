"""`extgate audit ...` end to end on SQLite (embedded, dev key) and PostgreSQL (configured key)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from audit.config import AuditSettings
from audit.schema import create_schema
from audit.sql import SqlAuditLog
from service.cli.audit import app
from service.db.backends import engine_for_url
from tests.audit.conftest import event, tamper

runner = CliRunner()


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for var in list(__import__("os").environ):
        if var.startswith("EXTGATE_"):
            monkeypatch.delenv(var)
    values = {"EXTGATE_DATA_DIR": str(tmp_path / "data"), "EXTGATE_AUDIT_ORIGIN": "cli.test/audit"}
    if database_url.startswith("postgresql"):
        values["EXTGATE_DATABASE_URL"] = database_url
        values["EXTGATE_ALLOW_DEV_KEYS"] = "1"
        values["EXTGATE_AUDIT_SIGNING_KEY"] = base64.b64encode(
            Ed25519PrivateKey.generate().private_bytes_raw()
        ).decode()
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


@pytest.fixture
def populated(env: dict[str, str], database_url: str) -> str:
    url = env.get("EXTGATE_DATABASE_URL") or f"sqlite:///{env['EXTGATE_DATA_DIR']}/extgate.db"
    engine = engine_for_url(url)
    create_schema(engine)
    settings = AuditSettings()
    log = SqlAuditLog.from_settings(
        engine, settings, data_dir=Path(env["EXTGATE_DATA_DIR"]), embedded="EXTGATE_DATABASE_URL" not in env
    )
    for i in range(30):
        log.append(event(i, tenant="t1" if i % 2 else "t2", ts=1_700_000_000_000_000 + i * 1_000_000))
    log.checkpoint()
    log.append(event(30, tenant="t1"))
    log.close(final_checkpoint=False)
    engine.dispose()
    return url


def invoke(*args: str, stdout_only: bool = False) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout if stdout_only else result.output


def test_verify_checkpoint_export_prove(populated: str, env: dict[str, str], tmp_path: Path) -> None:
    code, out = invoke("verify")
    assert code == 0, out
    assert "Result: OK" in out and "Unanchored tail: 1" in out
    code, out = invoke("verify", "--strict")
    assert code == 2, out
    code, out = invoke("checkpoint", stdout_only=True)
    assert code == 0, out
    assert out.startswith("cli.test/audit\n31\n")
    code, out = invoke("verify", "--strict", "--json", stdout_only=True)
    assert code == 0, out
    assert json.loads(out)["anchored_size"] == 31

    code, out = invoke(
        "export", "--tenant", "t1", "--since", "2023-11-14T22:13:30Z", "--format", "jsonl", stdout_only=True
    )
    assert code == 0, out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines and all(r["tenant"] == "t1" for r in lines)
    assert all(r["ts"] >= 1_700_000_010_000_000 for r in lines)

    proof = tmp_path / "proof.json"
    code, out = invoke("prove", "7", "--out", str(proof))
    assert code == 0, out
    assert json.loads(proof.read_text())["seq"] == 7
    code, out = invoke("verify-proof", str(proof))
    assert code == 0 and out.startswith("valid"), out
    code, out = invoke("public-key")
    assert code == 0 and out.startswith("cli.test/audit+")
    vkey = out.strip()
    bad = json.loads(proof.read_text())
    bad["record"] = bad["record"].replace('"seq":7', '"seq":7,"x":1')
    proof.write_text(json.dumps(bad))
    code, out = invoke("verify-proof", str(proof), "--key", vkey)
    assert code == 1 and out.startswith("INVALID"), out


def test_verify_detects_tampering_exit_1(populated: str) -> None:
    engine = engine_for_url(populated)
    tamper(engine, "DELETE FROM audit_record WHERE seq = 5")
    engine.dispose()
    code, out = invoke("verify")
    assert code == 1, out
    assert "first bad seq 5 (deleted)" in out


def test_verify_with_explicit_checkpoint_file(populated: str, env: dict[str, str], tmp_path: Path) -> None:
    pinned = tmp_path / "pinned.txt"
    files = sorted((Path(env["EXTGATE_DATA_DIR"]) / "checkpoints").iterdir())
    pinned.write_text(files[-1].read_text())
    engine = engine_for_url(populated)
    tamper(engine, "DELETE FROM audit_record WHERE seq >= 20", "DELETE FROM audit_checkpoint")
    engine.dispose()
    code, out = invoke("verify", "--checkpoint", str(pinned))
    assert code == 1 and "(truncated)" in out, out


def test_stale_tail_is_unverifiable(populated: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTGATE_AUDIT_MAX_TAIL_AGE_SECONDS", "0")
    code, out = invoke("verify")
    assert code == 2 and "UNVERIFIABLE" in out, out


def test_usage_errors_exit_3(env: dict[str, str], tmp_path: Path) -> None:
    code, out = invoke("verify")  # no schema yet
    assert code == 3, out
    code, _ = invoke("export", "--format", "csv")
    assert code == 3


def test_prove_uncovered_record(populated: str) -> None:
    code, out = invoke("prove", "30")
    assert code == 1 and "no signed checkpoint" in out
    code, out = invoke("prove", "999")
    assert code == 1


def test_no_update_possible_through_app_path(populated: str) -> None:
    engine = engine_for_url(populated)
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_record SET outcome = 'x'")
    engine.dispose()
