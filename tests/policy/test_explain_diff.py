"""Explanations (why / why not) and the permission-matrix diff."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.policy.bundle import compile_bundle
from service.policy.diff import matrix_diff
from service.policy.engine import EntitiesError, PolicyEngine
from service.policy.explain import explain_request
from service.policy.source import BundleSource
from service.policy.uids import UidError


def test_explain_allow_names_the_permit(engine: PolicyEngine) -> None:
    result = explain_request(engine, "acme-editor", "write", "acme-crm")
    assert result.decision.allowed and [p.id for p in result.determining] == ["rbac.write"]
    assert result.candidates == ()
    assert "ALLOW" in result.render() and "rbac.cedar:" in result.render()


def test_explain_forbid_needs_no_why_not(engine: PolicyEngine) -> None:
    result = explain_request(engine, "acme-admin", "read", "globex-crm")
    assert [p.id for p in result.determining] == ["tenancy.install-same-tenant"]
    assert result.candidates == ()


def test_why_not_lists_the_failed_condition(engine: PolicyEngine) -> None:
    result = explain_request(engine, "acme-viewer", "write", "acme-crm", {"method": "DELETE"})
    assert not result.decision.allowed and result.determining == ()
    (candidate,) = result.candidates
    assert candidate.policy.id == "rbac.write"
    (failed,) = candidate.failed
    assert failed.kind == "when" and 'ExtGate::Role::"editor"' in failed.text
    assert any("principal.tenant" in c.text for c in candidate.checks if c.status == "satisfied")
    data = result.to_dict()
    assert data["why_not"][0]["policy_id"] == "rbac.write" and data["decision"] == "deny"


def test_why_not_ranks_closest_first(engine: PolicyEngine) -> None:
    result = explain_request(engine, "acme-admin", "debug.view", "acme-crm", {"justification": "short"})
    ids = [c.policy.id for c in result.candidates]
    assert set(ids) == {"debug.tenant-operator", "debug.platform-operator"}
    assert all(len(a.failed) <= len(b.failed) for a, b in zip(result.candidates, result.candidates[1:], strict=False))
    kinds = {c.kind for cand in result.candidates for c in cand.failed}
    assert "principal scope" in kinds


def test_explain_bad_input(engine: PolicyEngine) -> None:
    with pytest.raises(UidError):
        explain_request(engine, 'Bad::"x', "read", "acme-crm")
    with pytest.raises(EntitiesError):
        explain_request(engine, "u", "read", "i", entities=[{"uid": {"type": "ExtGate::User", "id": "u"}}])


def test_diff_of_identical_bundles_is_empty(engine: PolicyEngine) -> None:
    result = matrix_diff(engine, engine)
    # No action's applicable policies differ, so no cell needs deciding.
    assert result.changes == () and result.policy_changes == () and not result.changed
    assert result.population["actions"] == {} and len(result.population["not_evaluated"]) == 13


def test_diff_surfaces_a_viewer_privilege_escalation(
    engine: PolicyEngine, shipped_source: BundleSource, edit: Callable[..., BundleSource]
) -> None:
    rbac = shipped_source.files["rbac.cedar"].replace(
        'principal in [ExtGate::Role::"editor", ExtGate::Role::"admin"]',
        'principal in [ExtGate::Role::"viewer", ExtGate::Role::"editor", ExtGate::Role::"admin"]',
    )
    new = PolicyEngine(compile_bundle(edit({"rbac.cedar": rbac})))
    result = matrix_diff(engine, new)
    assert result.gained and not result.lost
    assert {c.cell.action for c in result.gained} == {"write"}
    assert all("viewer" in c.cell.who or c.cell.who.startswith("acme-") for c in result.gained)
    assert any(c.cell.who == "viewer of t1" for c in result.gained)
    assert all(c.after.policy_ids == ("rbac.write",) for c in result.gained)
    assert "GAINED" in result.render() and result.to_dict()["gained"] == len(result.gained)
    back = matrix_diff(new, engine)
    assert len(back.lost) == len(result.gained) and not back.gained
