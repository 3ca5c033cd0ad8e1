"""Recorded decisions: every decision record names its inputs (request + entity snapshot),
`policy explain --request-id/--seq` and GET /api/policy/decisions/explanation explain a
past decision exactly as it was made, and `policy replay` re-decides recorded traffic with
a candidate bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from audit.log import RecordFilter
from audit.records import AuditEvent, blob_digest
from audit.schema import create_schema
from audit.sql import SqlAuditLog
from service.cli.policy import app as policy_cli
from service.db.backends import engine_for_url
from service.policy.bundle import compile_bundle
from service.policy.engine import PolicyEngine
from service.policy.model import EndpointMatch
from service.policy.recorded import SnapshotNotFound, find_decision, load_inputs, replay
from service.policy.service import PolicyService
from service.policy.source import BundleSource
from tests.gateway.conftest import GatewayEnv, compiled_cache, make_env  # noqa: F401 (fixtures)
from tests.policy.conftest import POLICY_DIR, install, user

cli = CliRunner()

FREEZE_REASON = "Change freeze: no writes to this install while the quarter closes."


def _freeze_dir(tmp_path: Path, install_id: str) -> Path:
    target = tmp_path / "policies-freeze"
    shutil.copytree(POLICY_DIR, target)
    (target / "freeze.cedar").write_text(
        '@id("freeze.quarter-close")\n'
        f'@reason("{FREEZE_REASON}")\n'
        "forbid (\n"
        "  principal,\n"
        '  action == ExtGate::Action::"write",\n'
        f'  resource == ExtGate::Install::"{install_id}"\n'
        ");\n"
    )
    return target


def _cli_env(monkeypatch: pytest.MonkeyPatch, env: GatewayEnv) -> None:
    settings = env.container.settings
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("EXTGATE_DATABASE_URL", settings.effective_database_url)


def _blob_rows(env: GatewayEnv) -> int:
    with env.container.db.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM audit_blob").scalar_one())


# --- the reproduction -------------------------------------------------------------------------


def test_denied_write_under_a_rolled_back_freeze_is_explained_as_recorded(
    make_env: Any, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    env: GatewayEnv = make_env(sqlite_url, "headers")
    policy = env.container.policy
    assert isinstance(policy, PolicyService)
    before = policy.revision

    # a freeze is activated; the editor's write is denied by it
    policy.reload(_freeze_dir(tmp_path, env.install_id), actor="test", allow_untested=True)
    frozen = policy.revision
    assert frozen != before
    denied = env.client.post(env.url("/echo"), headers=env.headers("editor"), content=b"{}")
    assert denied.status_code == 403
    rid = denied.headers["x-request-id"]
    # two reads by the same user on the same install: one entity snapshot stored
    for _ in range(2):
        assert env.client.get(env.url("/headers"), headers=env.headers("editor")).status_code == 200

    # the freeze is rolled back: today the same write is allowed
    policy.rollback(before, actor="test", allow_untested=True)
    assert policy.revision == before

    records = env.audit_records("gateway.decision")
    deny = next(r for r in records if r["request_id"] == rid)
    assert deny["outcome"] == "deny" and deny["policy_ids"] == ["freeze.quarter-close"]
    assert deny["policy_revision"] == frozen
    recorded = deny["details"]["decision"]
    assert recorded["principal"] == {"type": "ExtGate::User", "id": "editor-user"}
    assert recorded["action"] == "write" and recorded["resource"]["id"] == env.install_id
    assert recorded["context"]["method"] == "POST" and recorded["entities"].startswith("sha256:")
    allows = [r for r in records if r["outcome"] == "allow"]
    assert len(allows) == 2 and {r["details"]["decision"]["entities"] for r in allows} == {recorded["entities"]}
    assert _blob_rows(env) == 1  # dedup: one snapshot for (editor, install)
    blob = env.container.audit.get_blob(recorded["entities"])
    assert blob_digest(blob) == recorded["entities"]

    # CLI: the decision as it was made, then today's
    _cli_env(monkeypatch, env)
    result = cli.invoke(policy_cli, ["explain", "--request-id", rid])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "DENY" in out and "freeze.quarter-close" in out and FREEZE_REASON in out
    assert f"revision {frozen}" in out
    assert "today it would be ALLOW" in out and "rbac.write" in out
    assert "WARNING" not in out
    data = json.loads(cli.invoke(policy_cli, ["explain", "--request-id", rid, "--json"]).output)
    assert data["matches_record"] is True and data["recorded"]["decision"] == "deny"
    assert data["explanation"]["decision"] == "deny" and data["explanation"]["revision"] == frozen
    assert data["explanation"]["determining"][0] == {
        "policy_id": "freeze.quarter-close", "effect": "forbid", "reason": FREEZE_REASON,
        "location": "freeze.cedar:3"} or data["explanation"]["determining"][0]["reason"] == FREEZE_REASON
    assert data["today"]["decision"] == "allow" and data["today"]["revision"] == before
    by_seq = json.loads(cli.invoke(policy_cli, ["explain", "--seq", str(deny["seq"]), "--json"]).output)
    assert by_seq["seq"] == deny["seq"] and by_seq["explanation"] == data["explanation"]

    # API: the same JSON
    resp = env.client.get("/api/policy/decisions/explanation", params={"request_id": rid},
                          headers=env.headers("admin"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["explanation"] == data["explanation"] and body["today"]["decision"] == "allow"
    assert body["matches_record"] is True
    assert env.client.get("/api/policy/decisions/explanation", params={"seq": deny["seq"]},
                          headers=env.headers("admin")).json()["request_id"] == rid

    # errors: unknown request id, not a decision, both selectors, not allowed
    missing = env.client.get("/api/policy/decisions/explanation", params={"request_id": "nope"},
                             headers=env.headers("admin"))
    assert missing.status_code == 404 and missing.json()["error"] == "decision_not_found"
    assert cli.invoke(policy_cli, ["explain", "--request-id", "nope"]).exit_code == 2
    flush = env.container.audit.append(AuditEvent(action="test.flush", outcome="success", tenant_id="acme"))
    assert cli.invoke(policy_cli, ["explain", "--seq", str(flush)]).exit_code == 2
    not_decision = env.client.get("/api/policy/decisions/explanation", params={"seq": flush},
                                  headers=env.headers("admin"))
    assert not_decision.status_code == 404 and not_decision.json()["error"] == "not_a_decision"
    assert env.client.get("/api/policy/decisions/explanation", params={"seq": 0, "request_id": rid},
                          headers=env.headers("admin")).status_code == 422
    refused = env.client.get("/api/policy/decisions/explanation", params={"request_id": rid},
                             headers=env.headers("editor"))
    assert refused.status_code == 403
    # the admin denial records what it was decided on too, and explains as recorded
    admin_deny = env.audit_records("admin.policy.read")[-1]
    assert admin_deny["outcome"] == "deny" and admin_deny["details"]["decision"]["action"] == "policy.read"
    explained = json.loads(cli.invoke(policy_cli, ["explain", "--seq", str(admin_deny["seq"]), "--json"]).output)
    assert explained["matches_record"] is True and explained["explanation"]["decision"] == "deny"
    both = cli.invoke(policy_cli, ["explain", "--request-id", rid, "--principal", "x"])
    assert both.exit_code == 2
    # the plain explain keeps working
    assert cli.invoke(policy_cli, ["explain", "--principal", "acme-viewer", "--action", "read",
                                   "--resource", "acme-crm", "--dir", str(POLICY_DIR)]).exit_code == 0


def test_explain_errors_for_old_records_and_missing_revisions(
    make_env: Any, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    env: GatewayEnv = make_env(sqlite_url, "headers")
    audit = env.container.audit
    revision = env.container.policy.revision
    old = audit.append(AuditEvent(action="gateway.decision", outcome="deny", tenant_id="acme",
                                  policy_ids=("rbac.x",), policy_revision=revision, request_id="old-1",
                                  resource="install:i/endpoint:POST /echo", details={"reasons": []}))
    unknown_rev = audit.append(AuditEvent(
        action="gateway.decision", outcome="deny", tenant_id="acme", policy_revision="sha256:" + "ab" * 32,
        request_id="old-2", details={"decision": {"principal": {"type": "ExtGate::User", "id": "u"}, "action": "write",
                                                  "resource": {"type": "ExtGate::Install", "id": "i"}, "context": {},
                                                  "entities": blob_digest(b"[]")}},
        attachments={blob_digest(b"[]"): b"[]"}))
    _cli_env(monkeypatch, env)
    result = cli.invoke(policy_cli, ["explain", "--request-id", "old-1"])
    assert result.exit_code == 2 and "before decision records named their entity snapshot" in result.output
    resp = env.client.get("/api/policy/decisions/explanation", params={"seq": old}, headers=env.headers("admin"))
    assert resp.status_code == 404 and resp.json()["error"] == "snapshot_not_found"
    resp = env.client.get("/api/policy/decisions/explanation", params={"seq": unknown_rev},
                          headers=env.headers("admin"))
    assert resp.status_code == 404 and resp.json()["error"] == "revision_not_found"
    assert cli.invoke(policy_cli, ["explain", "--seq", str(unknown_rev)]).exit_code == 2


# --- engine: inputs and snapshots --------------------------------------------------------------


def test_decisions_carry_their_inputs(engine: PolicyEngine) -> None:
    editor = user("acme-editor", "acme", "editor")
    crm = install("acme", "acme-crm")
    d = engine.decide_invoke(editor, crm, "POST", EndpointMatch(True, "/items"), path="/items")
    assert d.allowed and d.inputs is not None
    assert d.inputs.principal.id == "acme-editor" and d.inputs.action == "write"
    assert d.inputs.context["method"] == "POST"
    assert blob_digest(d.inputs.entities) == d.inputs.entities_digest
    # the digest is computed once per cache entry: same principal + install, same snapshot object
    again = engine.decide_invoke(editor, crm, "PUT", EndpointMatch(True, "/items"), path="/items")
    assert again.inputs is not None and again.inputs.entities is d.inputs.entities
    record, attachments = d.inputs.record()
    assert record["entities"] == d.inputs.entities_digest and attachments == {d.inputs.entities_digest:
                                                                              d.inputs.entities}
    admin = engine.decide_admin(editor, "audit.read", tenant_id="acme")
    assert admin.inputs is not None and admin.inputs.resource.id == "acme"
    # a very long context value goes to a blob of its own
    long = engine.decide_invoke(editor, crm, "POST", EndpointMatch(True, "/items"), path="/" + "x" * 2000)
    assert long.inputs is not None
    rec, att = long.inputs.record()
    assert "context" not in rec and rec["context_digest"] in att and len(att) == 2


# --- replay -------------------------------------------------------------------------------------


def _seed(tmp_path: Path, engine: PolicyEngine) -> SqlAuditLog:
    eng = engine_for_url(f"sqlite:///{tmp_path / 'audit.db'}")
    create_schema(eng)
    log = SqlAuditLog(eng)
    calls = [
        (user("acme-editor", "acme", "editor"), install("acme", "acme-crm"), "POST", "/items/:id", "/items/1"),
        (user("acme-editor", "acme", "editor"), install("acme", "acme-crm"), "PUT", "/items/:id", "/items/2"),
        (user("acme-viewer", "acme", "viewer"), install("acme", "acme-crm"), "GET", "/items/:id", "/items/3"),
        (user("acme-viewer", "acme", "viewer"), install("acme", "acme-crm"), "POST", "/items/:id", "/items/4"),
        (user("globex-editor", "globex", "editor"), install("globex", "globex-crm"), "POST", "/items/:id",
         "/items/5"),
    ]
    events = []
    for i, (who, inst, method, template, path) in enumerate(calls):
        d = engine.decide_invoke(who, inst, method, EndpointMatch(True, template), path=path)
        assert d.inputs is not None
        rec, att = d.inputs.record()
        events.append(AuditEvent(
            action="gateway.decision", outcome="allow" if d.allowed else "deny", tenant_id=inst.tenant,
            resource=f"install:{inst.install_id}/endpoint:{method} {template}", policy_ids=d.policy_ids,
            policy_revision=d.revision, request_id=f"req-{i}", details={"decision": rec}, attachments=att))
    events.append(AuditEvent(action="gateway.decision", outcome="allow", tenant_id="acme", request_id="old",
                             policy_revision=engine.revision, details={}))  # before snapshots existed
    events.append(AuditEvent(action="execution.complete", outcome="success", tenant_id="acme", request_id="req-0"))
    log.append_many(events)
    return log


def _candidate(tmp_path: Path) -> Path:
    target = tmp_path / "candidate"
    shutil.copytree(POLICY_DIR, target)
    (target / "freeze.cedar").write_text(
        '@id("freeze.acme")\n@reason("Acme is frozen.")\n'
        'forbid (principal, action == ExtGate::Action::"write", resource is ExtGate::Install)\n'
        'when { resource.tenant == ExtGate::Tenant::"acme" };\n'
    )
    return target


def test_replay_reports_flips_grouped_and_skips_records_without_snapshots(
    engine: PolicyEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _seed(tmp_path, engine)
    candidate = PolicyEngine(compile_bundle(BundleSource.from_dir(_candidate(tmp_path))))
    size = log.size()
    report = replay(log, candidate, RecordFilter()).to_dict()
    assert report["read"] == 6 and report["replayed"] == 5
    assert report["skipped"] == {"no_snapshot": 1, "snapshot_unreadable": 0, "schema_mismatch": 0}
    assert report["flips"] == {"total": 2, "allow_to_deny": 2, "deny_to_allow": 0}
    groups = {g["endpoint"]: g for g in report["groups"]}  # grouped by endpoint template too
    assert set(groups) == {"POST /items/:id", "PUT /items/:id"}
    for endpoint, sample in (("POST /items/:id", "req-0"), ("PUT /items/:id", "req-1")):
        group = groups[endpoint]
        assert group["policy_ids"] == ["freeze.acme"] and group["tenant"] == "acme" and group["action"] == "write"
        assert group["direction"] == "allow_to_deny" and group["count"] == 1 and group["samples"] == [sample]
    assert log.size() == size  # read only
    # the shipped bundle replays without flips; --tenant narrows
    assert replay(log, engine, RecordFilter()).flips == 0
    assert replay(log, candidate, RecordFilter(tenant_id="globex")).flips == 0

    # the CLI
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EXTGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'audit.db'}")
    result = cli.invoke(policy_cli, ["replay", str(_candidate(tmp_path / "c2")), "--json"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.output)["flips"]["allow_to_deny"] == 2
    text = cli.invoke(policy_cli, ["replay", str(tmp_path / "c2" / "candidate")]).output
    assert "2 flips" in text and "freeze.acme" in text and "allow->deny" in text
    assert cli.invoke(policy_cli, ["replay", str(POLICY_DIR), "--limit", "3"]).exit_code == 0
    assert cli.invoke(policy_cli, ["replay", str(POLICY_DIR), "--since", "yesterday-ish"]).exit_code == 2
    assert cli.invoke(policy_cli, ["replay", str(tmp_path / "nope")]).exit_code == 2
    log.close()


def test_replay_reports_snapshots_that_do_not_fit_the_candidate(engine: PolicyEngine, tmp_path: Path) -> None:
    log = _seed(tmp_path, engine)
    target = _candidate(tmp_path)
    schema = target / "extgate.cedarschema"
    # the candidate requires an Install attribute the recorded snapshots do not have
    schema.write_text(schema.read_text().replace("enabled: Bool,", "enabled: Bool,\n    region: String,", 1))
    candidate = PolicyEngine(compile_bundle(BundleSource.from_dir(target)))
    report = replay(log, candidate, RecordFilter())
    assert report.skipped["schema_mismatch"] == 5 and report.replayed == 0 and report.schema_problems
    log.close()


def test_load_inputs_refuses_records_without_snapshots(engine: PolicyEngine, tmp_path: Path) -> None:
    log = _seed(tmp_path, engine)
    rec = find_decision(log, request_id="old")
    with pytest.raises(SnapshotNotFound):
        load_inputs(log, rec)
    # request id with several records: the decision is picked
    assert find_decision(log, request_id="req-0")["action"] == "gateway.decision"
    log.close()


def test_replay_memo_key_keeps_exactly_what_policies_read(edit: Any) -> None:
    """Replay evaluates once per distinct relevant context: attributes no policy names are
    reduced to their shape, so they cannot change the decision; named ones are kept."""
    from datetime import UTC, datetime

    from service.policy.engine import invoke_context
    from service.policy.model import EndpointMatch
    from service.policy.recorded import context_key

    shipped = PolicyEngine(compile_bundle(edit({})))
    key = context_key(shipped)
    at = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    a = invoke_context("GET", EndpointMatch(True, "/items/:id"), "/items/1", now=at)
    b = invoke_context("GET", EndpointMatch(True, "/items/:id"), "/items/2", now=at.replace(hour=23))
    assert key(a) == key(b)  # no shipped policy reads path or time
    assert key(a) != key(invoke_context("POST", EndpointMatch(True, "/items/:id"), "/items/1", now=at))
    broken = {**b, "time": {**b["time"], "datetime": {"__extn": {"fn": "datetime", "arg": "2026-13-45T99:00:00Z"}}}}
    assert key(broken) != key(a)  # an instant that does not parse is kept as it is
    assert key({**a, "path": 7}) != key(a)  # a different type is a different shape

    reads_path = edit({"paths.cedar": '@id("p")\n@reason("r")\nforbid (principal, action, resource)\n'
                                      'when { context has path && context.path like "/admin*" };\n'})
    assert context_key(PolicyEngine(compile_bundle(reads_path)))(a) != context_key(
        PolicyEngine(compile_bundle(reads_path)))(b)
