"""Event builders used by the service wiring."""

from __future__ import annotations

import json

import pytest

from audit import actions
from audit.records import Actor


def test_decision_event_shape() -> None:
    ev = actions.decision_event(
        allowed=False,
        tenant_id="acme",
        actor=Actor("u1", tenant="acme"),
        install_id="i1",
        endpoint="GET /items",
        request_id="r1",
        policy_ids=["forbid-viewers"],
        policy_revision="sha256:ab",
        reasons=["forbid-viewers"],
        extension="acme.tool@1.0.0",
    )
    body = json.loads(ev.encode(0))
    assert body["action"] == "gateway.decision" and body["outcome"] == "deny"
    assert body["policy_ids"] == ["forbid-viewers"] and body["details"]["reasons"] == ["forbid-viewers"]
    assert body["resource"] == "install:i1/endpoint:GET /items"


def test_execution_and_secrets_events_carry_no_values() -> None:
    ex = actions.execution_event(
        tenant_id="acme",
        actor=None,
        install_id="i1",
        endpoint="POST /x",
        request_id="r2",
        status=502,
        duration_ms=17,
        error_class="Trap",
        fuel_used=1234,
    )
    assert json.loads(ex.encode(1))["outcome"] == "error"
    sec = actions.admin_event(
        actions.SECRETS_WRITE,
        actor=Actor("admin"),
        tenant_id="acme",
        resource="install:i1/secrets",
        details={"secret_names": ["API_KEY"], "api_key": "sk-live-123"},
    )
    text = sec.encode(2).decode()
    assert "API_KEY" in text and "sk-live-123" not in text


def test_debug_session_end_reason_validated() -> None:
    ev = actions.debug_session_event(
        actions.DEBUG_SESSION_END,
        session_id="s1",
        tenant_id="acme",
        actor=Actor("op"),
        install_id="i1",
        end_reason="max_duration",
        duration_ms=3_600_000,
    )
    assert json.loads(ev.encode(3))["details"]["end_reason"] == "max_duration"
    with pytest.raises(ValueError):
        actions.debug_session_event(
            actions.DEBUG_SESSION_END, session_id="s", tenant_id="t", actor=None, install_id="i", end_reason="bored"
        )
    rejected = actions.policy_event(actions.POLICY_REJECTED, outcome="rejected", revision="r2", errors=["parse error"])
    assert json.loads(rejected.encode(4))["actor"]["type"] == "system"


def test_every_action_the_service_writes_is_named_in_audit_actions() -> None:
    """One vocabulary: record action names written as literals in service/ are declared in
    audit/actions.py."""
    import re
    from pathlib import Path

    declared = {v for k, v in vars(actions).items() if k.isupper() and isinstance(v, str) and "." in v}
    root = Path(__file__).resolve().parents[2] / "service"
    written = set()
    for path in root.rglob("*.py"):
        written |= set(re.findall(r'AuditEvent\(\s*action="([a-z_.]+)"', path.read_text()))
    assert written and written <= declared, written - declared
