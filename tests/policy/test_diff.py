"""`extgate policy diff`: policy-level changes and the literal-derived permission matrix."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from service.auth.principal import Principal
from service.cli.policy import app
from service.policy.bundle import check, compile_bundle
from service.policy.diff import NO_CHANGE_TEXT, matrix_diff
from service.policy.engine import EntitiesError, PolicyEngine
from service.policy.entities import request_entities
from service.policy.model import (
    INSTALL_TYPE,
    PLATFORM_ID,
    PLATFORM_TYPE,
    TENANT_TYPE,
    USER_TYPE,
    EntityRef,
    InstallFacts,
)
from service.policy.population import SchemaShape, role_sets, role_universe
from service.policy.source import BundleSource
from service.policy.textscan import split_statements

runner = CliRunner()

HELLO = "acme.com.acme.hello"
FREEZE = f'''
@id("freeze.hello-writes")
@reason("Writes to the hello extension are frozen.")
forbid (principal, action == ExtGate::Action::"write", resource is ExtGate::Install) \
when {{ resource.slug == "{HELLO}" }};
'''


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(tmp_path / "data"))


def _engine(source: BundleSource) -> PolicyEngine:
    return PolicyEngine(compile_bundle(source))


def _has_time(source: BundleSource) -> bool:
    text = "\n".join(source.files[n] for n in source.schema_files)
    return "time" in SchemaShape.from_text(text).context_attrs("write")


# -- the reproduction of issue 15 item 3 ----------------------------------------------


def test_freeze_edit_is_reported_as_lost_writes(
    engine: PolicyEngine, shipped_source: BundleSource, edit: Callable[..., BundleSource]
) -> None:
    new = _engine(edit({"rbac.cedar": shipped_source.files["rbac.cedar"] + FREEZE}))
    result = matrix_diff(engine, new)
    assert result.lost and not result.gained
    assert {c.cell.action for c in result.lost} == {"write"}
    assert all(c.after.policy_ids == ("freeze.hello-writes",) for c in result.lost)
    generated = [c for c in result.lost if "entities.json)" not in c.cell.who]
    assert generated and all(HELLO in c.cell.what for c in generated)
    roles = {c.cell.who.split(" of ")[0] for c in generated}
    assert roles == {"editor", "admin", "admin+editor"}
    assert [(p.id, p.change) for p in result.policy_changes] == [("freeze.hello-writes", "added")]
    assert '+forbid (principal, action == ExtGate::Action::"write"' in result.policy_changes[0].diff
    assert result.changed and "LOST (allow -> deny)" in result.render()
    assert result.population["actions"].keys() == {"write"}


def test_a_negated_literal_reaches_values_other_than_the_literal(
    engine: PolicyEngine, shipped_source: BundleSource, edit: Callable[..., BundleSource]
) -> None:
    """Found by the property test: `unless { resource.slug == "pub.ext" }` grants every
    other slug; the population must contain a slug that equals no literal."""
    opened = ('\n@id("random.edit")\n@reason("random edit")\npermit (principal, action == ExtGate::Action::"read", '
              'resource)\nunless { (resource.slug == "pub.ext") };\n')
    bare = {k: v for k, v in shipped_source.files.items() if not k.startswith("tests/")}  # no test entities
    old = _engine(BundleSource(bare))
    new = _engine(BundleSource({**bare, "rbac.cedar": bare["rbac.cedar"] + opened}))
    result = matrix_diff(old, new)
    assert result.gained and all(c.cell.action == "read" for c in result.gained)
    assert all("pub.ext" not in c.cell.what or "pub.ext.other" in c.cell.what for c in result.gained)


def test_freeze_edit_through_the_cli(policy_copy: Path, tmp_path: Path) -> None:
    new = tmp_path / "new"
    import shutil

    shutil.copytree(policy_copy, new)
    (new / "rbac.cedar").write_text((new / "rbac.cedar").read_text() + FREEZE)
    result = runner.invoke(app, ["diff", "--against", str(policy_copy), str(new)])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "0 gained" in out and "ADDED freeze.hello-writes" in out and "LOST (allow -> deny)" in out
    lost = [line for line in out.splitlines() if line.startswith("  ") and "now freeze.hello-writes" in line]
    assert lost and all(HELLO in line and "  write  " in line for line in lost)
    assert any(line.lstrip().startswith("editor of") for line in lost)
    assert any(line.lstrip().startswith("admin of") for line in lost)
    assert "real installs: none included (no service database)" in out
    data = json.loads(runner.invoke(app, ["diff", "--against", str(policy_copy), str(new), "--json"]).output)
    assert data["lost"] > 0 and data["gained"] == 0 and data["truncated"] == []
    assert data["policy_changes"][0]["id"] == "freeze.hello-writes" and data["policy_changes"][0]["change"] == "added"
    # the default, the literal, and one that matches neither
    assert data["population"]["actions"]["write"]["dimensions"]["slugs"] == 3


def test_reason_only_change_is_a_policy_change_without_permission_change(policy_copy: Path, tmp_path: Path) -> None:
    import shutil

    new = tmp_path / "new"
    shutil.copytree(policy_copy, new)
    rbac = (new / "rbac.cedar").read_text()
    old_reason = "Editors and admins of the install's tenant may call its write endpoints."
    assert old_reason in rbac
    (new / "rbac.cedar").write_text(rbac.replace(old_reason, "Editors and admins (same tenant) may write."))
    result = runner.invoke(app, ["diff", "--against", str(policy_copy), str(new)])
    assert result.exit_code == 1, result.output
    assert NO_CHANGE_TEXT in result.output and "CHANGED rbac.write" in result.output
    assert "-@reason(\"Editors and admins of the install's tenant" in result.output
    data = json.loads(runner.invoke(app, ["diff", "--against", str(policy_copy), str(new), "--json"]).output)
    assert data["changes"] == [] and [p["change"] for p in data["policy_changes"]] == ["changed"]


def test_identical_bundles_exit_0(policy_copy: Path) -> None:
    result = runner.invoke(app, ["diff", "--against", str(policy_copy), str(policy_copy)])
    assert result.exit_code == 0, result.output
    assert "policy changes: none" in result.output and "0 gained, 0 lost" in result.output


def test_flipped_and_removed_policies_are_listed(
    engine: PolicyEngine, shipped_source: BundleSource, edit: Callable[..., BundleSource]
) -> None:
    text = shipped_source.files["endpoints.cedar"]
    new = _engine(edit({"endpoints.cedar": text.replace("forbid (", "permit (", 1)}))
    result = matrix_diff(engine, new)
    assert [(p.id, p.change) for p in result.policy_changes] == [("endpoint.undeclared", "changed")]
    assert "-forbid (" in result.policy_changes[0].diff and "+permit (" in result.policy_changes[0].diff
    assert result.gained and {c.cell.action for c in result.changes} == {"read", "write"}
    admin = shipped_source.files["admin.cedar"]
    statement = next(s.text for s in split_statements(admin) if '@id("admin.policy-manage")' in s.text)
    result = matrix_diff(engine, _engine(edit({"admin.cedar": admin.replace(statement, "")})))
    assert [(p.id, p.change) for p in result.policy_changes] == [("admin.policy-manage", "removed")]
    assert result.lost and {c.cell.action for c in result.lost} == {"policy.manage"}
    assert all("platform-admin" in c.cell.who or "entities.json)" in c.cell.who for c in result.lost)


def test_real_installs_are_decided_too(
    engine: PolicyEngine, shipped_source: BundleSource, edit: Callable[..., BundleSource]
) -> None:
    new = _engine(edit({"rbac.cedar": shipped_source.files["rbac.cedar"] + FREEZE}))
    real = [InstallFacts("acme", "acme-hello-1", "e-1", HELLO, frozenset(), True),
            InstallFacts("acme", "acme-crm-1", "e-2", "acme.com.acme.crm", frozenset(), True)]
    result = matrix_diff(engine, new, installs=real)
    assert result.real_installs == 2
    hits = {c.cell.what for c in result.lost if "real" in c.cell.what}
    assert hits == {f"install acme-hello-1 of acme (slug {HELLO}, enabled, real)"}
    assert "real installs: 2 included" in result.render()


def test_truncation_is_reported(
    engine: PolicyEngine, shipped_source: BundleSource, edit: Callable[..., BundleSource]
) -> None:
    new = _engine(edit({"rbac.cedar": shipped_source.files["rbac.cedar"] + FREEZE}))
    result = matrix_diff(engine, new, cap=100)
    (trunc,) = result.truncated
    assert trunc["action"] == "write" and trunc["evaluated"] == 100 and trunc["cells"] > 100
    assert f"population truncated: 100 of {trunc['cells']} cells" in result.render()


def test_time_conditions_are_covered(
    engine: PolicyEngine, shipped_source: BundleSource, edit: Callable[..., BundleSource]
) -> None:
    if not _has_time(shipped_source):
        pytest.skip("the schema has no time record")
    policy = '''
@id("freeze.after-hours")
@reason("No writes after 18:00 UTC or on Sundays.")
forbid (principal, action == ExtGate::Action::"write", resource)
when { context.time.hour >= 18 || context.time.dayOfWeek == 7 };
'''
    new = _engine(edit({"rbac.cedar": shipped_source.files["rbac.cedar"] + policy}))
    result = matrix_diff(engine, new)
    circumstances = {c.cell.circumstance.split("at ")[-1] for c in result.lost}
    assert any("T18:" in c for c in circumstances) and any(c.startswith("Sun") for c in circumstances)
    assert not any("T17:" in c and not c.startswith("Sun") for c in circumstances)


def test_role_universe_reads_an_enum() -> None:
    text = 'namespace ExtGate { entity Role enum ["viewer", "editor"]; }'
    assert role_universe([text], []) == ("editor", "viewer")
    assert "operator" in role_universe(["namespace ExtGate { entity Role; }"], [])
    assert len(role_sets(["a", "b", "c"])) == 8
    many = role_sets([f"r{i}" for i in range(7)])
    assert len(many) == 1 + 7 + 21 + 1


# -- property: the cell diff finds every difference an independent random population finds


ROLES = ("viewer", "editor", "admin", "operator", "platform-admin")
TENANTS = ("t1", "t2", "acme")
SLUGS = (HELLO, "pub.ext", "globex.io.tool")
CAPS = ("cap:debug.logs", "cap:storage.kv")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ADMIN = ("install.read", "install.manage", "audit.read", "policy.read", "extension.publish")


def _conditions(kind: str, has_time: bool) -> st.SearchStrategy[str]:
    common = [
        st.sampled_from(ROLES).map(lambda r: f'principal in ExtGate::Role::"{r}"'),
        st.sampled_from(("internal", "client")).map(lambda u: f'principal.userType == "{u}"'),
    ]
    if kind == "admin":
        return st.one_of(*common, st.just("resource is ExtGate::Tenant && principal.tenant == resource"),
                         st.sampled_from(TENANTS).map(lambda t: f'principal.tenant == ExtGate::Tenant::"{t}"'))
    install = [
        st.sampled_from(SLUGS).map(lambda s: f'resource.slug == "{s}"'),
        st.sampled_from(("==", "!=")).map(lambda op: f"principal.tenant {op} resource.tenant"),
        st.sampled_from(TENANTS).map(lambda t: f'resource.tenant == ExtGate::Tenant::"{t}"'),
        st.sampled_from(CAPS).map(lambda c: f'resource.capabilities.contains("{c}")'),
        st.just("resource.enabled"),
    ]
    if has_time:
        install += [
            st.tuples(st.sampled_from(("<", ">=", "==")), st.integers(0, 23)).map(
                lambda t: f"context.time.hour {t[0]} {t[1]}"),
            st.tuples(st.sampled_from(("<", ">=", "==")), st.integers(1, 7)).map(
                lambda t: f"context.time.dayOfWeek {t[0]} {t[1]}"),
        ]
    if kind == "invoke":
        install += [
            st.lists(st.sampled_from(METHODS), min_size=1, max_size=3, unique=True).map(
                lambda ms: f"[{', '.join(json.dumps(m) for m in ms)}].contains(context.method)"),
            st.sampled_from(("context.endpointDeclared", "!context.endpointDeclared")),
            st.sampled_from(('context.endpointTemplate == "/items/:id"', 'context.path like "/admin/*"')),
        ]
    else:
        install += [
            st.tuples(st.sampled_from(("tenantSessions", "streamSessions", "tenantSessionLimit")),
                      st.sampled_from(("<", ">", ">=")), st.integers(0, 6)).map(
                lambda t: f"context.{t[0]} {t[1]} {t[2]}"),
            st.just("context.streamSessions < context.streamSessionLimit"),
            st.integers(0, 15).map(lambda n: f"context.justificationLength >= {n}"),
        ]
    return st.one_of(*common, *install)


@st.composite
def _edits(draw: st.DrawFn, shipped: BundleSource, ids: list[str], has_time: bool) -> dict[str, str]:
    kind = draw(st.sampled_from(("add", "add", "add", "remove", "flip")))
    if kind == "add":
        action_kind = draw(st.sampled_from(("invoke", "debug", "admin")))
        action = {"invoke": draw(st.sampled_from(("read", "write"))), "debug": "debug.view",
                  "admin": draw(st.sampled_from(ADMIN))}[action_kind]
        conds = draw(st.lists(_conditions(action_kind, has_time), min_size=1, max_size=2))
        effect = draw(st.sampled_from(("permit", "forbid")))
        negate = draw(st.booleans())
        body = " && ".join(f"({c})" for c in conds)
        policy = (f'\n@id("prop.random")\n@reason("random edit")\n{effect} (principal, '
                  f'action == ExtGate::Action::"{action}", resource)\n{"unless" if negate else "when"} {{ {body} }};\n')
        return {"rbac.cedar": shipped.files["rbac.cedar"] + policy}
    pid = draw(st.sampled_from(ids))
    for name in shipped.policy_files:
        text = shipped.files[name]
        for statement in split_statements(text):
            if f'@id("{pid}")' not in statement.text:
                continue
            if kind == "remove":
                return {name: text.replace(statement.text, "")}
            flipped = re.sub(r"\b(permit|forbid)(\s*\()",
                             lambda m: ("forbid" if m.group(1) == "permit" else "permit") + m.group(2),
                             statement.text, count=1)
            return {name: text.replace(statement.text, flipped)}
    raise AssertionError(pid)


def _random_requests(rng: random.Random, n: int, has_time: bool) -> list[tuple[Any, ...]]:
    """Random requests drawn from the same kinds of values, independently of the diff's population."""
    out = []
    start = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday
    for i in range(n):
        principal = Principal(f"u{i}", rng.choice(TENANTS), frozenset(r for r in ROLES if rng.random() < 0.3),
                              rng.choice(("internal", "client")))
        when = start + timedelta(minutes=rng.randrange(14 * 24 * 60))
        time = {"datetime": {"__extn": {"fn": "datetime", "arg": when.strftime("%Y-%m-%dT%H:%M:00Z")}},
                "hour": when.hour, "minute": when.minute, "dayOfWeek": when.isoweekday()}
        kind = rng.choice(("invoke", "invoke", "debug", "admin"))
        if kind == "admin":
            tenant = rng.choice((*TENANTS, None))
            ref = EntityRef(TENANT_TYPE, tenant) if tenant else EntityRef(PLATFORM_TYPE, PLATFORM_ID)
            out.append((principal, rng.choice(ADMIN), ref, {}, request_entities(principal, tenant=tenant), None))
            continue
        install = InstallFacts(rng.choice(TENANTS), f"i{i}", "ext", rng.choice(SLUGS),
                               frozenset(c for c in CAPS if rng.random() < 0.5), rng.random() < 0.8)
        ents = request_entities(principal, install=install)
        ref = EntityRef(INSTALL_TYPE, install.install_id)
        if kind == "invoke":
            method = rng.choice(METHODS)
            declared = rng.random() < 0.7
            ctx: dict[str, Any] = {
                "method": method, "path": rng.choice(("/items/1", "/admin/x", "/")),
                "endpointDeclared": declared, "endpointTemplate": "/items/:id" if declared else ""}
            action = "read" if method in ("GET", "HEAD") else "write"
        else:
            text = "j" * rng.randrange(0, 16)
            ctx = {"tenantSessions": rng.randrange(0, 8), "tenantSessionLimit": rng.randrange(0, 8),
                   "streamSessions": rng.randrange(0, 8), "streamSessionLimit": rng.randrange(0, 8),
                   "justification": text, "justificationLength": len(text)}
            action = "debug.view"
        if has_time:
            ctx["time"] = time
        out.append((principal, action, ref, ctx, ents, install.slug))
    return out


def _decide(engine: PolicyEngine, request: tuple[Any, ...]) -> bool:
    principal, action, ref, ctx, ents, slug = request
    try:
        handle = engine.entities(ents)
    except EntitiesError:
        return False
    return engine.decide(EntityRef(USER_TYPE, principal.subject), action, ref, ctx, handle,
                         resource_slug=slug).allowed


def test_cell_diff_finds_what_a_random_population_finds(shipped_source: BundleSource) -> None:
    # Without the test entities: the literal-derived population alone must find every difference.
    shipped_source = BundleSource({n: t for n, t in shipped_source.files.items() if not n.startswith("tests/")})
    engine = _engine(shipped_source)
    has_time = _has_time(shipped_source)
    ids = sorted(engine.bundle.policies)
    requests = _random_requests(random.Random(15), 300, has_time)
    base = [_decide(engine, r) for r in requests]

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_edits(shipped_source, ids, has_time))
    def prop(changes: dict[str, str]) -> None:
        merged = dict(shipped_source.files)
        merged.update(changes)
        bundle, problems = check(BundleSource(merged))
        assert bundle is not None, problems
        new = PolicyEngine(bundle)
        differs = [r for r, before in zip(requests, base, strict=True) if _decide(new, r) != before]
        result = matrix_diff(engine, new)
        assert result.policy_changes
        if differs:
            assert result.changes, f"random requests decide differently but the diff found nothing: {differs[:3]}"

    prop()
