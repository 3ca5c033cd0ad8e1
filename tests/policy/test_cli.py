"""`extgate policy ...` verbs and their exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli.policy import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy_copy: Path) -> None:
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EXTGATE_POLICY_DIR", str(policy_copy))


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_validate(policy_copy: Path) -> None:
    code, out = run("validate")
    assert code == 0 and "25 policies in 5 files" in out
    (policy_copy / "rbac.cedar").write_text((policy_copy / "rbac.cedar").read_text().replace('@id("rbac.write")', ""))
    code, out = run("validate", str(policy_copy))
    assert code == 1 and "rbac.cedar:" in out and "no @id" in out
    code, out = run("validate", "--json")
    assert code == 1 and json.loads(out)["problems"][0]["file"] == "rbac.cedar"
    assert run("validate", "/nonexistent")[0] == 2


def test_fmt(policy_copy: Path) -> None:
    assert run("fmt", "--check") == (0, "all policy files are formatted\n")
    path = policy_copy / "debug.cedar"
    path.write_text(path.read_text().replace("permit (\n  principal", "permit (principal", 1))
    code, out = run("fmt", "--check")
    assert code == 1 and "debug.cedar" in out
    assert run("fmt")[0] == 0 and run("fmt", "--check")[0] == 0
    path.write_text("permit (")
    assert run("fmt")[0] == 1


def test_test_verb(policy_copy: Path) -> None:
    code, out = run("test")
    assert code == 0 and "0 failed" in out and "coverage: 100%" in out
    (policy_copy / "tests/endpoints.json").unlink()
    code, out = run("test")
    assert code == 1 and "endpoints.cedar: no policy in this file determines any test" in out
    assert "never determining: endpoint.undeclared" in out


def test_test_verb_reports_failures(policy_copy: Path) -> None:
    cases = json.loads((policy_copy / "tests/admin.json").read_text())
    cases[1]["decision"] = "allow"
    (policy_copy / "tests/admin.json").write_text(json.dumps(cases))
    code, out = run("test", "--json")
    data = json.loads(out)
    assert code == 1 and data["failed"][0]["test"].startswith("tests/admin.json#2 tenant admin cannot publish")


def test_explain_exit_codes() -> None:
    assert run("explain", "--principal", "acme-viewer", "--action", "read", "--resource", "acme-crm")[0] == 0
    code, out = run("explain", "--principal", "acme-viewer", "--action", "write", "--resource", "acme-crm")
    assert code == 1 and "why not" in out and "rbac.write" in out
    code, out = run(
        "explain",
        "--principal",
        'ExtGate::User::"platform-root"',
        "--action",
        "debug.view",
        "--resource",
        "acme-crm",
        "--context",
        '{"justification": "incident 42 escalated"}',
        "--json",
    )
    assert code == 0 and json.loads(out)["determining"][0]["policy_id"] == "debug.platform-operator"
    assert run("explain", "--principal", "x", "--action", "read", "--resource", "y", "--context", "[1]")[0] == 2


def test_diff(policy_copy: Path, tmp_path: Path) -> None:
    code, out = run("diff", "--against", str(policy_copy))
    assert code == 0 and "0 gained, 0 lost" in out
    old = tmp_path / "old"
    shutil.copytree(policy_copy, old)
    rbac = policy_copy / "rbac.cedar"
    rbac.write_text(
        rbac.read_text().replace(
            'principal in [ExtGate::Role::"editor", ExtGate::Role::"admin"]', 'principal in ExtGate::Role::"viewer"'
        )
    )
    code, out = run("diff", "--against", str(old))
    assert code == 1 and "GAINED" in out and "LOST" in out and "viewer of t1  write" in out
    assert run("diff", "--against", "no-such-thing")[0] == 2


def test_reload_rollback_status(policy_copy: Path) -> None:
    code, out = run("reload", "--json")
    assert code == 0
    first = json.loads(out)["active_revision"]
    rbac = policy_copy / "rbac.cedar"
    original = rbac.read_text()
    rbac.write_text(original.replace("permit (", "permit ((", 1))
    code, out = run("reload")
    assert code == 1 and "rejected" in out and "rbac.cedar" in out
    code, out = run("status", "--json")
    status = json.loads(out)
    assert status["active_revision"] == first and status["last_error"]["problems"]
    rbac.write_text(original + "\n// changed\n")
    code, out = run("reload", "--json")
    assert code == 0 and json.loads(out)["active_revision"] != first
    code, out = run("diff", "--against", first[7:20])
    assert code == 0
    assert run("rollback", first[7:19])[0] == 0
    assert json.loads(run("status", "--json")[1])["active_revision"] == first
    assert run("rollback", "ffffffff")[0] == 2
