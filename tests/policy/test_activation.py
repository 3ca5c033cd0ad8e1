"""Explicit activation: a policy folder goes live only through reload/rollback by a named
actor (bootstrap aside), after its tests and the coverage gate; each activation is one
audit record; read-only verbs change nothing and record nothing."""

from __future__ import annotations

import fcntl
import getpass
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from service.cli.main import app as cli_app
from service.policy.service import (
    REJECTED,
    RELOADED,
    ActivationInProgress,
    CandidateRejected,
    PolicyService,
)
from service.policy.store import BundleStore
from tests.policy.test_api import ROOT, client

FREEZE = (
    '\n@id("freeze.hello-writes")\n@reason("Writes to the hello extension are frozen.")\n'
    'forbid (principal, action == ExtGate::Action::"write", resource is ExtGate::Install)\n'
    'when { resource.slug == "acme.com.acme.hello" };\n'
)
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _service(policy_dir: Path, state: Path | None) -> tuple[PolicyService, list[tuple[str, Any, dict[str, Any]]]]:
    events: list[tuple[str, Any, dict[str, Any]]] = []
    svc = PolicyService(policy_dir, store=BundleStore(state))
    svc.on_event(lambda kind, rev, detail: events.append((kind, rev, detail)))
    return svc, events


# -- the reproduction: an edited folder went live through any CLI verb ------------------

@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy_copy: Path) -> Any:
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EXTGATE_POLICY_DIR", str(policy_copy))
    monkeypatch.delenv("EXTGATE_DATABASE_URL", raising=False)
    monkeypatch.setattr("service.container.default_component_validator", lambda settings: None)
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli_app, list(args))

    return run


def _policy_records(tmp_path: Path) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'extgate.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT body FROM audit_record ORDER BY seq")).all()
    finally:
        engine.dispose()
    records = [json.loads(r[0]) for r in rows]
    return [r for r in records if r["action"].startswith("policy.")]


def test_an_edited_folder_never_goes_live_without_reload(cli: Any, policy_copy: Path, tmp_path: Path) -> None:
    fresh = json.loads(cli("policy", "status", "--json").stdout)
    assert fresh["active_revision"] is None and fresh["history"] == []  # status activates nothing

    assert cli("install", "list", "--tenant", "acme").exit_code == 0  # first service start: bootstrap
    r0 = json.loads(cli("policy", "status", "--json").stdout)
    assert r0["active_revision"] and [h["via"] for h in r0["history"]] == ["bootstrap"]
    assert r0["history"][0]["actor"] == "bootstrap" and ISO.match(r0["activated_at"])
    assert ISO.match(r0["history"][0]["activated_at"]) and r0["folder"]["differs"] is False

    with (policy_copy / "rbac.cedar").open("a") as fh:
        fh.write(FREEZE)
    for _ in range(3):  # every verb that opens the service, as often as you like
        assert cli("install", "list", "--tenant", "acme").exit_code == 0
    after = cli("policy", "status", "--json")
    status = json.loads(after.stdout)
    assert status["active_revision"] == r0["active_revision"] and len(status["history"]) == 1
    assert status["folder"]["differs"] is True
    assert status["folder"]["changes"]["added"] == ["freeze.hello-writes"]
    assert status["folder"]["message"] == "folder differs from the active revision: 1 policies changed, not active"
    text_out = cli("policy", "status").stdout
    assert "folder differs from the active revision: 1 policies changed, not active" in text_out
    assert "added: freeze.hello-writes" in text_out

    records = _policy_records(tmp_path)
    assert [(r["action"], r["actor"]["id"]) for r in records] == [("policy.reloaded", "bootstrap")]


def test_reload_gates_on_coverage_and_records_one_activation(cli: Any, policy_copy: Path, tmp_path: Path) -> None:
    assert cli("install", "list", "--tenant", "acme").exit_code == 0
    r0 = json.loads(cli("policy", "status", "--json").stdout)["active_revision"]
    with (policy_copy / "rbac.cedar").open("a") as fh:
        fh.write(FREEZE)

    refused = cli("policy", "reload", "--json")
    assert refused.exit_code == 1
    body = json.loads(refused.stdout)
    assert body["error"] == "policy_rejected"
    assert any(p["policy_id"] == "freeze.hello-writes" for p in body["problems"])
    assert "below the required 100%" in body["problems"][0]["message"]
    assert json.loads(cli("policy", "status", "--json").stdout)["active_revision"] == r0

    ok = cli("policy", "reload", "--allow-untested", "--json")
    assert ok.exit_code == 0, ok.stdout
    r1 = json.loads(ok.stdout)["active_revision"]
    assert r1 != r0
    assert json.loads(cli("policy", "status", "--json").stdout)["folder"]["differs"] is False

    records = _policy_records(tmp_path)
    assert [r["action"] for r in records] == ["policy.reloaded", "policy.rejected", "policy.reloaded"]
    rejected, activated = records[1], records[2]
    me = f"cli:{getpass.getuser()}"
    assert rejected["actor"]["id"] == me and rejected["outcome"] == "rejected"
    assert activated["actor"]["id"] == me and activated["policy_revision"] == r1
    details = activated["details"]
    assert details["previous"] == r0 and details["via"] == "reload"
    assert details["changes"]["added"] == ["freeze.hello-writes"] and details["changes"]["changed"] == []
    assert details["allow_untested"] is True and details["untested"] == ["freeze.hello-writes"]

    again = cli("policy", "reload")  # the same folder again: nothing to activate, nothing recorded
    assert again.exit_code == 0 and "unchanged" in again.stdout
    assert len(_policy_records(tmp_path)) == 3


def test_read_only_verbs_change_nothing_and_record_nothing(cli: Any, policy_copy: Path, tmp_path: Path) -> None:
    assert cli("install", "list", "--tenant", "acme").exit_code == 0
    state = tmp_path / "data" / "policy" / "state.json"
    before_state = state.read_text()
    before = _policy_records(tmp_path)
    with (policy_copy / "rbac.cedar").open("a") as fh:
        fh.write(FREEZE)
    cli("policy", "status")
    cli("policy", "validate")
    cli("policy", "test")
    cli("policy", "explain", "--principal", "acme-editor", "--action", "write", "--resource", "acme-crm")
    cli("policy", "diff", "--against", str(Path(__file__).resolve().parents[2] / "policies"))
    cli("install", "list", "--tenant", "acme")
    assert state.read_text() == before_state
    assert _policy_records(tmp_path) == before


# -- the service ------------------------------------------------------------------------

def test_bootstrap_happens_once(policy_copy: Path, tmp_path: Path) -> None:
    first, events = _service(policy_copy, tmp_path / "state")
    r0 = first.start().active_revision
    assert [(k, d["actor"]) for k, _, d in events] == [(RELOADED, "bootstrap")]
    with (policy_copy / "rbac.cedar").open("a") as fh:
        fh.write(FREEZE)
    second, second_events = _service(policy_copy, tmp_path / "state")
    assert second.start().active_revision == r0 and second.revision == r0
    assert second_events == []


def test_a_failed_bootstrap_denies_everything_and_is_retried_at_the_next_start(
    policy_copy: Path, tmp_path: Path
) -> None:
    rbac = policy_copy / "rbac.cedar"
    good = rbac.read_text()
    rbac.write_text("permit (")
    svc, events = _service(policy_copy, tmp_path / "state")
    assert svc.start().active_revision is None and svc.revision == "none"
    assert [k for k, _, _ in events] == [REJECTED]
    rbac.write_text(good)
    again, again_events = _service(policy_copy, tmp_path / "state")
    assert again.start().active_revision is not None
    assert [k for k, _, _ in again_events] == [RELOADED]


@pytest.mark.parametrize(
    ("mutate", "expected_file", "expected_text"),
    [
        (lambda d: (d / "rbac.cedar").write_text((d / "rbac.cedar").read_text().replace("permit (", "permit ((", 1)),
         "rbac.cedar", "does not parse"),
        (lambda d: ((d / "rbac.cedar").open("a").write("\n// a new revision\n"), (d / "tests" / "rbac.json").write_text(
            (d / "tests" / "rbac.json").read_text().replace('"decision": "deny"', '"decision": "allow"', 1))),
         "tests/rbac.json", "test failed"),
        (lambda d: (d / "rbac.cedar").open("a").write(FREEZE), "rbac.cedar", "untested"),
        (lambda d: (d / "rbac.cedar").write_text(
            (d / "rbac.cedar").read_text().replace('ExtGate::Role::"admin"]', 'ExtGate::Role::"admn"]', 1)),
         "rbac.cedar", 'unknown role "admn"'),
    ],
    ids=["syntax", "failing-test", "coverage", "unknown-role"],
)
def test_rejected_reloads_leave_the_active_revision_and_one_record(
    policy_copy: Path, tmp_path: Path, mutate: Any, expected_file: str, expected_text: str
) -> None:
    svc, events = _service(policy_copy, tmp_path / "state")
    r0 = svc.start().active_revision
    mutate(policy_copy)
    with pytest.raises(CandidateRejected) as info:
        svc.reload(actor="alice", actor_ip="203.0.113.9")
    assert any(p.file == expected_file and expected_text in p.message for p in info.value.problems), info.value
    assert svc.revision == r0 and svc.status().active_revision == r0
    assert [k for k, _, _ in events] == [RELOADED, REJECTED]
    detail = events[-1][2]
    assert detail["actor"] == "alice" and detail["actor_ip"] == "203.0.113.9" and detail["problems"]


def test_a_concurrent_reload_is_refused_not_queued(policy_copy: Path, tmp_path: Path) -> None:
    svc, events = _service(policy_copy, tmp_path / "state")
    r0 = svc.start().active_revision
    (policy_copy / "rbac.cedar").open("a").write("\n// edited\n")
    with open(tmp_path / "state" / ".lock", "a+") as other_process:  # another process's activation
        fcntl.flock(other_process, fcntl.LOCK_EX)
        with pytest.raises(ActivationInProgress) as info:
            svc.reload(actor="bob")
        fcntl.flock(other_process, fcntl.LOCK_UN)
    assert "in progress" in str(info.value)
    assert svc.revision == r0 and [k for k, _, _ in events] == [RELOADED, REJECTED]
    assert events[-1][2]["code"] == "policy_activation_in_progress"
    assert svc.reload(actor="bob").active_revision != r0  # free again


def test_api_reload_allow_untested_busy_and_caller_address(policy_copy: Path, tmp_path: Path) -> None:
    svc, events = _service(policy_copy, tmp_path / "state")
    r0 = svc.start().active_revision
    (policy_copy / "rbac.cedar").open("a").write(FREEZE)
    api = client(svc, ROOT)
    refused = api.post("/api/policy/reload")
    assert refused.status_code == 422 and refused.json()["error"] == "policy_rejected"
    assert "freeze.hello-writes" in json.dumps(refused.json()["detail"])
    with open(tmp_path / "state" / ".lock", "a+") as other_process:
        fcntl.flock(other_process, fcntl.LOCK_EX)
        busy = api.post("/api/policy/reload", json={"allow_untested": True})
        fcntl.flock(other_process, fcntl.LOCK_UN)
    assert busy.status_code == 409 and busy.json()["error"] == "policy_activation_in_progress"
    bad = api.post("/api/policy/reload", json={"allow_untested": "perhaps"})
    assert bad.status_code == 422
    assert svc.status().active_revision == r0
    ok = api.post("/api/policy/reload", json={"allow_untested": True})
    assert ok.status_code == 200 and ok.json()["active_revision"] != r0
    kind, _, detail = events[-1]
    assert kind == RELOADED and detail["actor"] == "root" and detail["actor_ip"] == "testclient"
    assert detail["allow_untested"] is True and detail["changes"]["added"] == ["freeze.hello-writes"]
    status = api.get("/api/policy/status").json()
    assert ISO.match(status["activated_at"]) and status["folder"]["differs"] is False


def test_no_audit_record_no_activation_with_the_real_log(policy_copy: Path, tmp_path: Path, database_url: str) -> None:
    """The activation's record is written before the switch: with the audit table refusing
    inserts, a reload answers audit_unavailable and the active revision stays."""
    from service.errors import ServiceUnavailable
    from tests.foundation.test_atomic_audit import audit_refuses_inserts
    from tests.support import make_container

    container = make_container(tmp_path, database_url, policy_dir=policy_copy)
    try:
        policy = container.policy
        r0 = policy.revision
        (policy_copy / "rbac.cedar").open("a").write(FREEZE)
        with audit_refuses_inserts(container), pytest.raises(ServiceUnavailable) as info:
            policy.reload(actor="alice", allow_untested=True)
        assert info.value.code == "audit_unavailable"
        assert policy.revision == r0 and policy.status().active_revision == r0
        assert [h["via"] for h in policy.status().history] == ["bootstrap"]
        assert policy.reload(actor="alice", allow_untested=True).active_revision != r0
    finally:
        container.close()
