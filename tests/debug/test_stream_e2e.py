"""End to end against real Redis: a real guest's lines reach an SSE viewer with full
context; access is refused without the capability, the role or the tenant; sessions end
(max duration, revocation) and every start/end is audited."""

from __future__ import annotations

import httpx
import pytest

from service.registry import installs
from tests.debug.conftest import NO_DEBUG_TENANT
from tests.gateway.conftest import OTHER, TENANT

pytestmark = pytest.mark.redis


@pytest.fixture(params=["redis", "in-process"])
def env(request: pytest.FixtureRequest, make_debug_env):  # type: ignore[no-untyped-def]
    if request.param == "redis":
        return make_debug_env(request.getfixturevalue("redis_url"))
    return make_debug_env()


def test_guest_lines_reach_viewer_with_full_context(env) -> None:  # type: ignore[no-untyped-def]
    reader = env.watch()
    resp = env.call("/log")
    assert resp.status_code == 200, resp.text
    got = {}
    for _ in range(6):
        entry_id, data = reader.expect("log")
        assert entry_id and entry_id == entry_id.strip()
        got[(data["source"], data["message"])] = data
    assert {("log", "info line"), ("log", "warn line"), ("log", "error line"), ("stdout", "stdout line 1"),
            ("stdout", "stdout line 2"), ("stderr", "stderr line")} <= set(got)
    line = got[("stderr", "stderr line")]
    assert line["tenant"] == TENANT and line["install"] == env.install_id
    assert line["extension"] == env.extension_id and line["version"]
    assert line["request_id"] == resp.headers["x-request-id"]
    assert line["v"] == 1 and line["ts"].endswith("Z") and line["seq"] >= 1
    assert got[("log", "warn line")]["level"] == "warn"
    reader.close()


def test_refusals(env) -> None:  # type: ignore[no-untyped-def]
    # no operator role
    assert env.open("viewer").status_code == 403
    assert env.open("admin").status_code == 403
    # the install lacks cap:debug.logs
    assert env.open("plain-operator").status_code == 403
    # another tenant by body: refused for a tenant operator, and never by query parameter
    assert env.open("operator", tenant=OTHER).status_code == 403
    resp = httpx.post(f"{env.url}/api/ext-debug/sessions?tenant={OTHER}&tenantId={OTHER}",
                      json={"extension": env.slug}, headers=env.auth("operator"), timeout=10)
    assert resp.status_code == 201 and resp.json()["tenant_id"] == TENANT
    assert resp.json()["install_id"] == env.install_id
    # platform admin: only with a justification, and it is audited
    assert env.open("platform", tenant=OTHER).status_code == 403
    ok = env.open("platform", tenant=OTHER, justification="incident INC-42 investigation")
    assert ok.status_code == 201 and ok.json()["install_id"] == env.other_install_id
    # no token / bad ticket
    assert httpx.post(f"{env.url}/api/ext-debug/sessions", json={"extension": env.slug}).status_code == 401
    bad = httpx.get(f"{env.url}/api/ext-debug/stream", params={"ticket": "x" * 43}, timeout=10)
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_ticket"
    # missing or malformed tickets are refused the same way (the ticket is the credential)
    for params in ({}, {"ticket": "short"}, {"ticket": "y" * 500}):
        bad = httpx.get(f"{env.url}/api/ext-debug/stream", params=params, timeout=10)
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_ticket", params
    # a ticket works once
    ticket_url = env.url + resp.json()["stream_url"]
    with httpx.Client(timeout=10) as c, c.stream("GET", ticket_url) as r1:
        assert r1.status_code == 200
        assert httpx.get(ticket_url, timeout=10).status_code == 401
    denials = env.audit_records("debug_session.deny")
    # in the caller's own log (the platform admin's: the platform log), naming the target
    assert {d["tenant"] for d in denials} >= {TENANT, NO_DEBUG_TENANT, None}
    assert OTHER not in {d["tenant"] for d in denials}
    assert {d["details"].get("target_tenant") for d in denials} >= {OTHER}
    # each denial names the refused call's request id (x-request-id of the 403)
    refused = env.open("viewer")
    assert refused.status_code == 403
    assert refused.headers["x-request-id"] in {d.get("request_id") for d in env.audit_records("debug_session.deny")}
    # a policy denial names what it was decided on (request + entity snapshot digest)
    denial = next(d for d in env.audit_records("debug_session.deny")
                  if d.get("request_id") == refused.headers["x-request-id"])
    assert denial["details"]["decision"]["action"] == "debug.view"
    assert denial["details"]["decision"]["entities"].startswith("sha256:")


def test_cross_tenant_session_is_audited(env) -> None:  # type: ignore[no-untyped-def]
    reader = env.watch("platform", tenant=OTHER, justification="incident INC-42 investigation")
    reader.close()
    start = env.audit_records("debug_session.start")[-1]
    assert start["tenant"] == OTHER and start["details"]["cross_tenant"] is True
    assert start["actor"]["ip"] == "127.0.0.1"  # every actor has its address
    assert start["details"]["justification"] == "incident INC-42 investigation"
    assert start["actor"]["id"] == "root-1"
    # the start record names what debug.view was decided on; it explains as recorded
    from service.policy.recorded import explain_recorded

    decision = start["details"]["decision"]
    assert decision["action"] == "debug.view" and decision["context"]["justification"].startswith("incident")
    policy = env.container.policy
    explained = explain_recorded(env.container.audit, policy.store, start, current=policy.engine)
    assert explained.mismatch is None and explained.explanation is not None
    assert explained.explanation.decision.allowed and explained.today["decision"] == "allow"


def test_max_duration_ends_session_and_is_audited(make_debug_env, redis_url) -> None:  # type: ignore[no-untyped-def]
    env = make_debug_env(redis_url, EXTGATE_DEBUG_MAX_SESSION_S="1.5")
    reader = env.watch()
    _, data = reader.expect("end", timeout=10)
    assert data["reason"] == "max_duration"
    reader.expect("closed", timeout=10)
    starts = env.audit_records("debug_session.start")
    ends = env.audit_records("debug_session.end")
    assert len(starts) == 1 and len(ends) == 1
    end = ends[0]
    assert end["details"]["end_reason"] == "max_duration" and end["outcome"] == "max_duration"
    assert end["tenant"] == TENANT and end["resource"] == f"install:{env.install_id}/debug"
    assert end["details"]["extension_id"] == env.extension_id and end["actor"]["id"] == "op-1"


def test_revoking_the_capability_ends_live_sessions(env) -> None:  # type: ignore[no-untyped-def]
    reader = env.watch()
    with env.container.db.session() as session:
        install = installs.get_install(session, TENANT, env.install_id)
        install.granted_capabilities = [c for c in install.granted_capabilities if c != "cap:debug.logs"]
        session.add(install)
    _, data = reader.expect("end", timeout=10)
    assert data["reason"] == "revoked"
    reader.expect("closed", timeout=10)
    assert env.audit_records("debug_session.end")[-1]["details"]["end_reason"] == "revoked"


def test_client_close_is_audited(env) -> None:  # type: ignore[no-untyped-def]
    reader = env.watch()
    reader.close()
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not env.audit_records("debug_session.end"):
        time.sleep(0.1)
    assert env.audit_records("debug_session.end")[-1]["details"]["end_reason"] == "client_closed"


def test_stream_cap(make_debug_env) -> None:  # type: ignore[no-untyped-def]
    env = make_debug_env(EXTGATE_DEBUG_MAX_VIEWERS_PER_STREAM="2")
    assert env.open().status_code == 201
    assert env.open().status_code == 201
    third = env.open()
    assert third.status_code == 403


def test_cli_tail_streams_guest_lines(make_debug_env) -> None:  # type: ignore[no-untyped-def]
    """`extgate debug tail --json` opens a session and prints the guest's lines as they come."""
    import json
    import os
    import subprocess
    import sys
    import time

    env = make_debug_env()
    cmd = [sys.executable, "-m", "service.cli.main", "debug", "tail", env.slug, "--level", "error",
           "--server", env.url, "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,  # noqa: S603
                            env={**os.environ, "EXTGATE_TOKEN": env.tokens["operator"]})
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())
        assert started["event"] == "info" and started["data"]["code"] == "session_started"
        call = env.call("/log")
        assert call.status_code == 200
        deadline = time.monotonic() + 20
        seen: list[dict[str, object]] = []
        while time.monotonic() < deadline and not any(e["data"].get("source") == "stderr" for e in seen):
            event = json.loads(proc.stdout.readline())
            if event["event"] == "log":
                seen.append(event)
        assert {e["data"]["request_id"] for e in seen} == {call.headers["x-request-id"]}
        # --level error: the guest's info/warn lines and stdout are filtered out
        assert {e["data"]["level"] for e in seen} == {"error"}
        assert ("stderr", "stderr line") in {(e["data"]["source"], e["data"]["message"]) for e in seen}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_tail_without_token_or_with_refusal(make_debug_env) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from service.cli.main import app

    env = make_debug_env()
    runner = CliRunner()
    no_token = runner.invoke(app, ["debug", "tail", env.slug, "--server", env.url], env={"EXTGATE_TOKEN": ""})
    assert no_token.exit_code == 2 and "missing_token" in no_token.output
    viewer = runner.invoke(app, ["debug", "tail", env.slug, "--server", env.url, "--token", env.tokens["viewer"]])
    assert viewer.exit_code == 1 and '"forbidden"' in viewer.output
