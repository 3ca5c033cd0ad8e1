"""Denials belong to the caller's log and cannot flood it.

Reproductions: an acme viewer calling GET /api/admin/tenants/globex/installs 200 times added
200 deny records to globex's log; 300 denied gateway writes by one viewer added 300 records
(denials were recorded before the rate limit was consulted, and never summarised).
"""

from __future__ import annotations

from typing import Any

from service.denials import SUMMARY_ACTION, DenialRecorder
from tests.gateway.conftest import OTHER, TENANT
from tests.support import token

PER_WINDOW = 10


def _records(env: Any) -> list[dict[str, Any]]:
    env.container.denials.flush(everything=True)  # close the open windows: their summaries
    return env.audit_records()


def test_admin_denials_go_to_the_callers_log_with_the_target(make_env: Any, database_url: str) -> None:
    env = make_env(database_url)
    before = len(env.audit_records())
    for _ in range(200):
        r = env.client.get(f"/api/admin/tenants/{OTHER}/installs", headers=env.headers("viewer"))
        assert r.status_code == 403
    new = _records(env)[before:]
    assert not [r for r in new if r["tenant"] == OTHER]  # nothing grew globex's log
    individual = [r for r in new if r["action"] == "admin.install.read"]
    summaries = [r for r in new if r["action"] == SUMMARY_ACTION]
    assert len(individual) == PER_WINDOW
    assert all(r["tenant"] == TENANT and r["details"]["target_tenant"] == OTHER for r in individual)
    assert all(r["actor"]["ip"] == "testclient" for r in individual)
    assert sum(s["details"]["count"] for s in summaries) == 200 - PER_WINDOW  # exact
    assert all(s["tenant"] == TENANT and s["actor"]["id"] == "viewer-user" for s in summaries)
    assert len(summaries) <= 2  # one per window (the run may straddle a window boundary)
    assert sum(t["count"] for s in summaries for t in s["details"]["targets"]) == 200 - PER_WINDOW
    assert {t["value"] for s in summaries for t in s["details"]["targets"]} == {OTHER}

    # globex's admin reading globex's log sees none of acme's attempts.
    globex_admin = {"authorization": "Bearer " + token(env.container, OTHER, "admin", sub="globex-admin")}
    page = env.client.get("/api/audit/records", headers=globex_admin, params={"limit": 500})
    assert page.status_code == 200, page.text
    assert not [r for r in page.json()["records"] if (r.get("actor") or {}).get("tenant") == TENANT]


def test_gateway_denials_are_rate_limited_and_summarised(make_env: Any, database_url: str) -> None:
    env = make_env(database_url, gateway={"rate_limit_burst": 50, "rate_limit_per_second": 0.001})
    before = len(env.audit_records())
    # A denial is durable before the refusal is answered (not deferred): read the table
    # directly, without the flush marker `audit_records` appends.
    refused = env.client.put(env.url("/kv/ns/k"), content=b"v", headers=env.headers("viewer"))
    assert refused.status_code == 403
    from sqlalchemy import text

    with env.container.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT request_id FROM audit_record WHERE action = 'gateway.decision'"))
        ids = [r[0] for r in rows]
    assert refused.headers["x-request-id"] in ids
    statuses = [
        env.client.put(env.url("/kv/ns/k"), content=b"v", headers=env.headers("viewer")).status_code
        for _ in range(299)
    ]
    assert statuses.count(403) == 49 and statuses.count(429) == 250  # denials spend the caller's budget
    new = _records(env)[before:]
    denials = [r for r in new if r["action"] == "gateway.decision" and r["outcome"] == "deny"]
    summaries = [r for r in new if r["action"] == SUMMARY_ACTION]
    assert len(denials) == PER_WINDOW
    assert len(new) <= PER_WINDOW + 2 + 1  # O(windows), not O(requests) (+ the flush marker)
    assert sum(s["details"]["count"] for s in summaries) == 300 - PER_WINDOW
    assert all(len(s["details"]["sample_request_ids"]) <= 5 for s in summaries)


def test_recorder_windows_and_exact_counts() -> None:
    class Log:
        def __init__(self) -> None:
            self.events: list[Any] = []

        def append(self, event: Any, timeout: float | None = None) -> int:
            self.events.append(event)
            return len(self.events)

    from audit.records import Actor, AuditEvent

    now = [1000.0]
    log = Log()
    rec = DenialRecorder(log, per_window=3, window_s=60, clock=lambda: now[0])
    actor = Actor("u", tenant="acme")
    for i in range(10):
        rec.record("acme\x00u", AuditEvent(action="gateway.decision", outcome="deny", tenant_id="acme", actor=actor,
                                           request_id=f"r{i}"), target="t")
    assert len(log.events) == 3
    now[0] += 60  # the next window: the previous window's summary is written by the next denial
    rec.record("acme\x00u", AuditEvent(action="gateway.decision", outcome="deny", tenant_id="acme", actor=actor))
    summary = log.events[3]
    assert summary.action == SUMMARY_ACTION and summary.details["count"] == 7
    assert summary.details["sample_request_ids"] == ["r3", "r4", "r5", "r6", "r7"]
    assert len(log.events) == 5  # the new window's first denial is recorded individually
    assert rec.flush(everything=True) == 0  # nothing suppressed in the open window
