"""Hot reload: candidates are validated before activation, swaps are atomic, rollback, events, replicas."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from service.authz import AdminAction
from service.errors import ServiceUnavailable
from service.policy import CedarAuthorizer
from service.policy.model import EndpointMatch
from service.policy.service import REJECTED, RELOADED, ROLLED_BACK, CandidateRejected, PolicyService
from service.policy.store import BundleStore, RevisionNotFound
from tests.policy.conftest import install, user

VIEWER = user("v", "acme", "viewer")
CRM = install("acme", "acme-crm", "cap:debug.logs")
POST = ("POST", EndpointMatch(True, "/items"))


def _service(policy_dir: Path, state: Path | None = None, **kw: Any) -> tuple[PolicyService, list[tuple[Any, ...]]]:
    events: list[tuple[Any, ...]] = []
    svc = PolicyService(policy_dir, store=BundleStore(state, keep=kw.pop("keep", 3)), **kw)
    svc.on_event(lambda kind, rev, detail: events.append((kind, rev, detail)))
    return svc, events


def _let_viewers_write(policy_dir: Path) -> None:
    rbac = policy_dir / "rbac.cedar"
    rbac.write_text(
        rbac.read_text().replace(
            'principal in [ExtGate::Role::"editor", ExtGate::Role::"admin"]',
            'principal in [ExtGate::Role::"viewer", ExtGate::Role::"editor", ExtGate::Role::"admin"]',
        )
    )
    cases = json.loads((policy_dir / "tests/rbac.json").read_text())
    for case in cases:
        if case["name"] == "viewer cannot write":
            case["decision"], case["reason"] = "allow", ["rbac.write"]
    (policy_dir / "tests/rbac.json").write_text(json.dumps(cases))


def test_start_reload_and_events(policy_copy: Path, tmp_path: Path) -> None:
    svc, events = _service(policy_copy, tmp_path / "state")
    status = svc.start()
    first = status.active_revision
    assert first and status.policies >= 20 and status.last_error is None
    assert [(k, r) for k, r, _ in events] == [(RELOADED, first)]
    assert events[0][2]["actor"] == "bootstrap" and events[0][2]["via"] == "bootstrap"
    assert events[0][2]["previous"] is None and events[0][2]["origin"] == str(policy_copy)
    assert not svc.decide_invoke(VIEWER, CRM, *POST).allowed

    _let_viewers_write(policy_copy)
    status = svc.reload(actor="alice")
    assert status.active_revision != first and svc.decide_invoke(VIEWER, CRM, *POST).allowed
    assert events[-1][0] == RELOADED and events[-1][2]["previous"] == first and events[-1][2]["actor"] == "alice"
    decision = svc.decide_invoke(VIEWER, CRM, *POST)
    assert decision.revision == status.active_revision

    svc.reload()  # unchanged: nothing activated, nothing recorded
    assert len(events) == 2


@pytest.mark.parametrize(
    "breakage",
    [
        ("rbac.cedar", lambda t: t.replace("permit (", "permit ((", 1), "does not parse"),
        ("rbac.cedar", lambda t: t.replace('@id("rbac.write")', '@id("rbac.read")'), "duplicate @id"),
        ("rbac.cedar", lambda t: t.replace("resource.tenant", "resource.tennant", 1), "tennant"),
        ("rbac.cedar", lambda t: t.replace('ExtGate::Role::"viewer",', "", 1), "test failed"),
        (
            "extgate.cedarschema",
            lambda t: t.replace("enabled: Bool,", "enabled: Bool, region: String,"),
            "requests do not fit the schema",
        ),
    ],
    ids=["parse", "duplicate-id", "schema", "failing-test", "service-shape"],
)
def test_broken_candidate_never_replaces_the_active_bundle(
    policy_copy: Path, tmp_path: Path, breakage: tuple[str, Any, str]
) -> None:
    name, mutate, expected = breakage
    svc, events = _service(policy_copy, tmp_path / "state")
    good = svc.start().active_revision
    path = policy_copy / name
    path.write_text(mutate(path.read_text()))
    with pytest.raises(CandidateRejected) as info:
        svc.reload(actor="bob")
    assert expected in str(info.value)
    status = svc.status()
    assert status.active_revision == good and svc.revision == good
    assert status.last_error and status.last_error["actor"] == "bob"
    assert svc.decide_invoke(VIEWER, CRM, "GET", EndpointMatch(True, "/")).allowed
    assert events[-1][0] == REJECTED and events[-1][2]["problems"]
    # a process restarting with the broken directory keeps serving the last good revision
    restarted, _ = _service(policy_copy, tmp_path / "state")
    assert restarted.start().active_revision == good


def test_rollback_and_history(policy_copy: Path, tmp_path: Path) -> None:
    svc, events = _service(policy_copy, tmp_path / "state", keep=2)
    first = svc.start().active_revision
    assert first is not None
    _let_viewers_write(policy_copy)
    second = svc.reload().active_revision
    status = svc.rollback(first[7:19], actor="carol")
    assert status.active_revision == first and not svc.decide_invoke(VIEWER, CRM, *POST).allowed
    assert events[-1][:2] == (ROLLED_BACK, first)
    assert events[-1][2]["previous"] == second and events[-1][2]["actor"] == "carol"
    assert [h["via"] for h in status.history[:3]] == ["rollback", "reload", "bootstrap"]
    with pytest.raises(RevisionNotFound):
        svc.rollback("deadbeef")
    # every activated revision stays loadable (recorded decisions name them), whatever `keep`
    for n in range(4):
        (policy_copy / "zz.cedar").write_text(
            f'@id("extra.{n}")\n@reason("n")\nforbid (principal, action, resource) when {{ false }};\n'
        )
        svc.reload(allow_untested=True)  # extra.n determines no test
    assert len(svc.status().available_revisions) == 6
    assert events[-1][2]["allow_untested"] is True and events[-1][2]["untested"] == ["extra.3"]


def test_restart_keeps_a_rollback(policy_copy: Path, tmp_path: Path) -> None:
    svc, _ = _service(policy_copy, tmp_path / "state")
    first = svc.start().active_revision
    assert first is not None
    _let_viewers_write(policy_copy)
    svc.reload()
    svc.rollback(first)
    again, _ = _service(policy_copy, tmp_path / "state")
    assert again.start().active_revision == first  # the directory did not change since: no reload


def test_replicas_adopt_the_active_revision(policy_copy: Path, tmp_path: Path) -> None:
    a, _ = _service(policy_copy, tmp_path / "state")
    b, b_events = _service(policy_copy, tmp_path / "state")
    first = a.start().active_revision
    assert b.start().active_revision == first
    _let_viewers_write(policy_copy)
    second = a.reload().active_revision
    time.sleep(0.01)
    assert b.sync() and b.revision == second
    assert b_events == []  # adopting records nothing: the activation has its own record
    assert not b.sync()


def test_watcher_serves_what_another_process_activated_and_never_the_folder(
    policy_copy: Path, tmp_path: Path
) -> None:
    svc, events = _service(policy_copy, tmp_path / "state")
    other, _ = _service(policy_copy, tmp_path / "state")
    first = svc.start().active_revision
    other.start()
    svc.start_watching(0.02)
    try:
        _let_viewers_write(policy_copy)
        time.sleep(0.3)
        assert svc.revision == first  # an edited folder is not live
        second = other.reload(actor="alice").active_revision
        deadline = time.time() + 5
        while svc.revision == first and time.time() < deadline:
            time.sleep(0.02)
        assert svc.revision == second
        assert len(events) == 1  # only the bootstrap: the watcher adopted without a record
    finally:
        svc.stop_watching()


def test_no_valid_bundle_denies_everything(policy_copy: Path) -> None:
    (policy_copy / "rbac.cedar").write_text("permit (")
    svc, events = _service(policy_copy)
    status = svc.start()
    assert status.active_revision is None and status.last_error
    decision = svc.decide_invoke(user("a", "acme", "admin"), CRM, "GET", EndpointMatch(True, "/"))
    assert not decision.allowed and decision.errors
    assert (
        not CedarAuthorizer(svc)
        .authorize_admin(user("r", "p", "platform-admin"), AdminAction.POLICY_READ, tenant_id=None)
        .allowed
    )
    assert events[-1][0] == REJECTED


def test_swap_is_atomic_under_concurrent_decisions(policy_copy: Path) -> None:
    svc, _ = _service(policy_copy)
    first = svc.start().active_revision
    _let_viewers_write(policy_copy)
    seen: set[tuple[str, bool]] = set()
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            d = svc.decide_invoke(VIEWER, CRM, *POST)
            seen.add((d.revision, d.allowed))

    thread = threading.Thread(target=hammer)
    thread.start()
    second = svc.reload().active_revision
    time.sleep(0.05)
    stop.set()
    thread.join()
    assert seen <= {(first, False), (second, True)}


def test_cedar_authorizer_maps_decisions(policy_copy: Path) -> None:
    svc, _ = _service(policy_copy)
    svc.start()
    authz = CedarAuthorizer(svc)
    allowed = authz.authorize_admin(user("a", "acme", "admin"), AdminAction.SECRETS_WRITE, tenant_id="acme")
    assert allowed.allowed and allowed.policy_ids == ("admin.secrets-write",) and allowed.revision == svc.revision
    denied = authz.authorize_admin(user("a", "acme", "admin"), AdminAction.SECRETS_WRITE, tenant_id="globex")
    assert not denied.allowed and denied.policy_ids == ("tenancy.admin-same-tenant",) and denied.reasons


def test_no_record_no_activation(policy_copy: Path, tmp_path: Path) -> None:
    svc, events = _service(policy_copy, tmp_path / "state")
    first = svc.start().active_revision
    down = {"on": True}

    def audit(kind: str, rev: str | None, detail: dict[str, Any]) -> None:
        if down["on"]:
            raise RuntimeError("audit down")

    svc.on_event(audit)
    _let_viewers_write(policy_copy)
    with pytest.raises(ServiceUnavailable) as info:
        svc.reload(actor="alice")
    assert info.value.code == "audit_unavailable"
    assert svc.revision == first and svc.status().active_revision == first
    assert [h["via"] for h in svc.status().history] == ["bootstrap"]
    assert not svc.decide_invoke(VIEWER, CRM, *POST).allowed
    down["on"] = False
    assert svc.reload(actor="alice").active_revision != first
