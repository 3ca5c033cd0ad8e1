"""Issue 15, items 6 and 7: roles are an enumeration; requests carry the time.

A. `ExtGate::Role` is declared as an enumeration of exactly KNOWN_ROLES: a misspelt role
   in a policy fails validation (file, line, the role), and a token role outside the
   enumeration is dropped, never a crash.
B. `read`, `write` and `debug.view` contexts carry `time` (UTC, to the minute) from an
   injectable clock, so policies can say "no writes at weekends"; the documented
   examples live in tests/policy/fixtures/time_rules/ and are tested here.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.auth.principal import KNOWN_ROLES
from service.cli.policy import app
from service.policy.bundle import check, compile_bundle
from service.policy.engine import (
    DenyAllEngine,
    PolicyEngine,
    debug_context,
    epoch_minute,
    invoke_context,
    time_context,
)
from service.policy.entities import request_entities
from service.policy.explain import default_context, explain_request
from service.policy.fmt import format_text
from service.policy.model import ROLE_TYPE, DebugCounts, EndpointMatch
from service.policy.service import PolicyService, smoke_test
from service.policy.source import BundleSource
from service.policy.store import BundleStore
from service.policy.testing import run_tests
from service.policy.textscan import find_enum_types
from tests.policy.conftest import POLICY_DIR, install, user

CRM = install("acme", "acme-crm", "cap:debug.logs")
DECLARED = EndpointMatch(True, "/items/:id")
UNDER_CAPS = DebugCounts(0, 5, 0, 3)
FIXTURE = Path(__file__).parent / "fixtures" / "time_rules"
DOCS = POLICY_DIR.parent / "docs" / "policies.md"

WED_10 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # Wednesday
SAT_10 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)  # Saturday
SUN_10 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)  # Sunday
WED_19 = datetime(2026, 12, 2, 19, 0, tzinfo=UTC)
FREEZE = datetime(2026, 12, 23, 10, 0, tzinfo=UTC)  # a Wednesday inside the year-end freeze


# -- A. roles that exist ----------------------------------------------------------------


def _misspell(text: str) -> str:
    old = 'principal in [ExtGate::Role::"editor", ExtGate::Role::"admin"]'
    assert old in text
    return text.replace(old, 'principal in [ExtGate::Role::"edtor", ExtGate::Role::"admin"]')


def test_misspelt_role_fails_validation_naming_file_line_and_role(edit: Callable[..., BundleSource]) -> None:
    """Regression: `ExtGate::Role::"edtor"` used to validate ("ok") and silently admit nobody."""
    rbac = _misspell((POLICY_DIR / "rbac.cedar").read_text())
    bundle, problems = check(edit({"rbac.cedar": rbac}))
    assert bundle is None and len(problems) == 1
    line = next(i for i, text in enumerate(rbac.splitlines(), 1) if '"edtor"' in text)
    assert str(problems[0]) == (
        f'rbac.cedar:{line}: [rbac.write] unknown role "edtor" '
        "(ExtGate::Role is an enumeration: viewer, editor, admin, operator, platform-admin)"
    )


def test_cli_validate_rejects_a_misspelt_role(policy_copy: Path) -> None:
    rbac = policy_copy / "rbac.cedar"
    rbac.write_text(_misspell(rbac.read_text()))
    result = CliRunner().invoke(app, ["validate", str(policy_copy)])
    assert result.exit_code == 1
    expected = r'rbac\.cedar:\d+: \[rbac\.write\] unknown role "edtor" \(ExtGate::Role is an enumeration: viewer,'
    assert re.search(expected, result.output), result.output


def test_misspelt_role_in_a_scope_points_at_its_line(edit: Callable[..., BundleSource]) -> None:
    text = (
        '@id("x.ok")\n@reason("fine")\npermit (principal in ExtGate::Role::"admin", action, resource);\n\n'
        '@id("x.typo")\n@reason("typo")\npermit (\n  principal in ExtGate::Role::"Admin",\n  action,\n  resource\n);\n'
    )
    _, problems = check(edit({"x.cedar": text}))
    assert [(p.file, p.line, p.policy_id) for p in problems] == [("x.cedar", 8, "x.typo")]
    assert problems[0].message.startswith('unknown role "Admin" (ExtGate::Role is an enumeration: ')


def test_shipped_role_enumeration_equals_known_roles() -> None:
    """Tokens carry roles from KNOWN_ROLES; the schema must declare exactly those."""
    roles = find_enum_types((POLICY_DIR / "extgate.cedarschema").read_text())["ExtGate::Role"]
    assert len(roles) == len(set(roles)) and set(roles) == KNOWN_ROLES


def test_find_enum_types_reads_namespaces_and_skips_comments() -> None:
    text = (
        '// entity Fake enum ["x"];\n'
        'namespace A { entity R enum ["a", "b"]; entity T = { s: String }; }\n'
        'namespace B::C {\n  type Rec = { f: Long };\n  entity S, U enum ["c"];\n}\n'
        'entity Top enum ["t"];\n'
    )
    assert find_enum_types(text) == {"A::R": ("a", "b"), "B::C::S": ("c",), "B::C::U": ("c",), "Top": ("t",)}


def test_unknown_token_role_is_dropped_not_a_crash(engine: PolicyEngine) -> None:
    """A role outside the enumeration is dropped: it grants nothing and breaks nothing."""
    editor_plus = user("e", "acme", "editor", "guest")
    entities = request_entities(editor_plus, install=CRM)
    assert {e["uid"]["id"] for e in entities if e["uid"]["type"] == ROLE_TYPE} == {"editor"}
    write = engine.decide_invoke(editor_plus, CRM, "POST", DECLARED, now=WED_10)
    assert write.allowed and write.policy_ids == ("rbac.write",) and not write.errors

    guest = user("g", "acme", "guest", "auditor")
    for decision in (
        engine.decide_invoke(guest, CRM, "GET", DECLARED, now=WED_10),
        engine.decide_debug_view(guest, CRM, UNDER_CAPS, "ticket 4711: outage", now=WED_10),
        engine.decide_admin(guest, "install.read", tenant_id="acme"),
    ):
        assert not decision.allowed and not decision.errors, decision


def test_bundle_missing_a_known_role_denies_and_is_rejected(edit: Callable[..., BundleSource]) -> None:
    """Enumeration narrower than KNOWN_ROLES: decisions for a holder of the missing role
    deny with an error (fail closed, no exception), and the reload smoke test refuses it."""
    schema = (POLICY_DIR / "extgate.cedarschema").read_text()
    narrowed = schema.replace('"admin", "operator", "platform-admin"]', '"admin", "platform-admin"]')
    assert narrowed != schema
    rbac = (POLICY_DIR / "rbac.cedar").read_text()
    source = BundleSource({"extgate.cedarschema": narrowed, "rbac.cedar": rbac})
    engine = PolicyEngine(compile_bundle(source))
    decision = engine.decide_invoke(user("o", "acme", "operator", "viewer"), CRM, "GET", DECLARED, now=WED_10)
    assert not decision.allowed and decision.errors and 'ExtGate::Role::"operator"' in decision.errors[0]
    assert engine.decide_invoke(user("v", "acme", "viewer"), CRM, "GET", DECLARED, now=WED_10).allowed
    assert any("do not fit the schema" in p.message for p in smoke_test(engine))


# -- B. time in the context ---------------------------------------------------------------


def test_time_record_is_utc_to_the_minute_with_iso_weekday() -> None:
    assert time_context(datetime(2026, 12, 5, 10, 7, 42, 999_999, tzinfo=UTC)) == {
        "datetime": {"__extn": {"fn": "datetime", "arg": "2026-12-05T10:07:00Z"}},
        "hour": 10,
        "minute": 7,
        "dayOfWeek": 6,
    }
    assert time_context(SUN_10)["dayOfWeek"] == 7
    assert time_context(SUN_10 + timedelta(days=1))["dayOfWeek"] == 1  # Monday
    # Another zone is converted; a naive time is taken as UTC.
    cet = datetime(2026, 12, 7, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert time_context(cet) == time_context(datetime(2026, 12, 6, 23, 30, tzinfo=UTC))
    assert time_context(datetime(2026, 12, 2, 10, 0)) == time_context(WED_10)
    assert epoch_minute(WED_10 + timedelta(seconds=59)) == epoch_minute(WED_10) == int(WED_10.timestamp()) // 60


def test_contexts_carry_time_from_the_clock() -> None:
    assert invoke_context("post", DECLARED, "/items/1", now=SAT_10)["time"] == time_context(SAT_10)
    assert debug_context(UNDER_CAPS, None, now=SAT_10)["time"] == time_context(SAT_10)
    assert default_context("write", now=SAT_10)["time"] == time_context(SAT_10)
    assert default_context("debug.view", now=SAT_10)["time"] == time_context(SAT_10)
    assert default_context("install.read") == {}
    # Without a clock: the current time, to the minute.
    before = epoch_minute()
    arg = invoke_context("GET", DECLARED)["time"]["datetime"]["__extn"]["arg"]
    stamp = epoch_minute(datetime.fromisoformat(arg))
    assert before <= stamp <= epoch_minute() and arg.endswith(":00Z")


@pytest.fixture(scope="module")
def time_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped policies plus the documented time rules and their tests."""
    target = tmp_path_factory.mktemp("time-rules") / "policies"
    shutil.copytree(POLICY_DIR, target)
    shutil.copy(FIXTURE / "time.cedar", target / "time.cedar")
    shutil.copy(FIXTURE / "tests" / "time.json", target / "tests" / "time.json")
    return target


@pytest.fixture(scope="module")
def timed(time_bundle_dir: Path) -> PolicyEngine:
    return PolicyEngine(compile_bundle(BundleSource.from_dir(time_bundle_dir)))


def test_time_rules_fixture_is_formatted_and_fully_tested(time_bundle_dir: Path, timed: PolicyEngine) -> None:
    text = (FIXTURE / "time.cedar").read_text()
    assert format_text(text) == text
    report = run_tests(timed.bundle, timed)
    assert report.ok and report.coverage == 1.0, report.to_dict()


def test_documented_time_rules_are_the_fixture() -> None:
    """docs/policies.md "Time-based rules" shows exactly the policies tested here."""
    doc = DOCS.read_text()
    section = doc.split("### Time-based rules\n", 1)[1].split("\n## ", 1)[0]
    shown = re.findall(r"```cedar\n(.*?)```", section, re.S)
    fixture = "".join(line for line in (FIXTURE / "time.cedar").read_text().splitlines(keepends=True)
                        if not line.startswith("//"))
    assert len(shown) == 3 and "\n".join(shown) == fixture


@pytest.mark.parametrize(
    ("now", "method", "allowed", "policy_ids"),
    [
        (WED_10, "POST", True, ("rbac.write",)),
        (SAT_10, "POST", False, ("time.no-weekend-writes",)),
        (SUN_10, "DELETE", False, ("time.no-weekend-writes",)),
        (WED_19, "PUT", False, ("time.writes-in-office-hours",)),
        (datetime(2026, 12, 2, 7, 59, 59, tzinfo=UTC), "POST", False, ("time.writes-in-office-hours",)),
        (datetime(2026, 12, 2, 8, 0, tzinfo=UTC), "POST", True, ("rbac.write",)),
        (datetime(2026, 12, 2, 17, 59, 59, tzinfo=UTC), "POST", True, ("rbac.write",)),
        (datetime(2026, 12, 2, 18, 0, tzinfo=UTC), "POST", False, ("time.writes-in-office-hours",)),
        (FREEZE, "PATCH", False, ("time.year-end-freeze",)),
        (datetime(2026, 12, 20, 23, 59, tzinfo=UTC), "POST", False, ("time.no-weekend-writes",
                                                                    "time.writes-in-office-hours")),
        (datetime(2027, 1, 4, 8, 0, tzinfo=UTC), "POST", True, ("rbac.write",)),  # Monday after the freeze
        (SAT_10, "GET", True, ("rbac.read",)),  # reads are unaffected
        (datetime(2026, 12, 5, 23, 30, tzinfo=UTC), "HEAD", True, ("rbac.read",)),
        (FREEZE, "GET", True, ("rbac.read",)),
    ],
)
def test_time_rules_against_the_engine(
    timed: PolicyEngine, now: datetime, method: str, allowed: bool, policy_ids: tuple[str, ...]
) -> None:
    decision = timed.decide_invoke(user("e", "acme", "editor"), CRM, method, DECLARED, path="/items/1", now=now)
    assert (decision.allowed, decision.policy_ids, decision.errors) == (allowed, policy_ids, ())


def test_memo_keys_on_the_minute(timed: PolicyEngine) -> None:
    engine = PolicyEngine(timed.bundle)
    editor = user("e", "acme", "editor")
    first = engine.decide_invoke(editor, CRM, "POST", DECLARED, now=WED_10 + timedelta(seconds=5))
    again = engine.decide_invoke(editor, CRM, "POST", DECLARED, now=WED_10 + timedelta(seconds=55))
    assert first.allowed and again is first and len(engine._invoke_memo) == 1  # same minute: remembered
    # Another minute is another input: evaluated, never answered from an earlier minute.
    late = engine.decide_invoke(editor, CRM, "POST", DECLARED, now=datetime(2026, 12, 2, 18, 0, tzinfo=UTC))
    assert not late.allowed and late.policy_ids == ("time.writes-in-office-hours",)
    assert len(engine._invoke_memo) == 2
    assert engine.decide_invoke(editor, CRM, "POST", DECLARED, now=WED_10) is first


def test_debug_view_context_carries_time(shipped_source: BundleSource) -> None:
    sundays = (
        '@id("time.no-debug-on-sunday")\n@reason("No live logs on Sundays.")\n'
        'forbid (principal, action == ExtGate::Action::"debug.view", resource)\n'
        "when { context.time.dayOfWeek == 7 };\n"
    )
    engine = PolicyEngine(compile_bundle(BundleSource({**shipped_source.files, "sunday.cedar": sundays})))
    operator = user("o", "acme", "operator")
    assert engine.decide_debug_view(operator, CRM, UNDER_CAPS, now=WED_10).allowed
    sunday = engine.decide_debug_view(operator, CRM, UNDER_CAPS, now=SUN_10)
    assert not sunday.allowed and sunday.policy_ids == ("time.no-debug-on-sunday",)


def test_service_and_deny_all_engine_take_the_clock(time_bundle_dir: Path, tmp_path: Path) -> None:
    assert not DenyAllEngine().decide_invoke(user("e", "acme", "editor"), CRM, "GET", DECLARED, now=WED_10).allowed
    assert not DenyAllEngine().decide_debug_view(user("o", "acme", "operator"), CRM, UNDER_CAPS, now=WED_10).allowed
    svc = PolicyService(time_bundle_dir, store=BundleStore(tmp_path / "state"))
    svc.start()
    editor = user("e", "acme", "editor")
    assert svc.decide_invoke(editor, CRM, "POST", DECLARED, now=WED_10).allowed
    assert svc.decide_invoke(editor, CRM, "POST", DECLARED, now=SAT_10).policy_ids == ("time.no-weekend-writes",)
    assert svc.decide_debug_view(user("o", "acme", "operator"), CRM, UNDER_CAPS, now=SAT_10).allowed


def test_explain_takes_time_as_an_instant(timed: PolicyEngine) -> None:
    saturday = explain_request(timed, "acme-editor", "write", "acme-crm", {"time": "2026-12-05T10:00:00Z"})
    assert saturday.context["time"] == time_context(SAT_10)
    assert [p.id for p in saturday.determining] == ["time.no-weekend-writes"]
    record = time_context(WED_10)
    wednesday = explain_request(timed, "acme-editor", "write", "acme-crm", {"time": record})
    assert wednesday.decision.allowed and wednesday.context["time"] == record
    with pytest.raises(ValueError, match="not an ISO 8601"):
        explain_request(timed, "acme-editor", "write", "acme-crm", {"time": "Saturday"})
