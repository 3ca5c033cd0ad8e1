"""Decisions: domain functions, fail-closed errors, slicing, caching, the raw-call path."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import cedarpy

from service.auth.principal import KNOWN_ROLES, Principal
from service.authz import AdminAction
from service.policy import cedar_call
from service.policy.bundle import Bundle, compile_bundle
from service.policy.diff import Cell
from service.policy.engine import MEMO_MAX_PATH, DenyAllEngine, PolicyEngine, time_context
from service.policy.entities import request_entities
from service.policy.model import (
    DEBUG_VIEW,
    ENDPOINT_RULE_ID,
    EVALUATION_ERROR_ID,
    INSTALL_TYPE,
    READ,
    SAFE_METHODS,
    USER_TYPE,
    WRITE,
    DebugCounts,
    Decision,
    EndpointMatch,
    EntityRef,
    InstallFacts,
)
from service.policy.source import BundleSource
from tests.policy.conftest import install, user

CRM = install("acme", "acme-crm", "cap:debug.logs")
DECLARED = EndpointMatch(True, "/items/:id")


# A fixed sample population through the engine's domain entry points (decide_invoke,
# decide_debug_view, decide_admin), to compare sliced and unsliced decisions.
JUSTIFICATION = "incident INC-0001: customer reports errors"
INVOKE_VARIANTS: tuple[tuple[str, bool], ...] = (
    ("GET", True), ("HEAD", True), ("GET", False), ("POST", True), ("DELETE", True), ("POST", False),
)
DEBUG_VARIANTS: tuple[tuple[str, DebugCounts, str], ...] = (
    ("under the caps", DebugCounts(0, 5, 0, 3), ""),
    ("under the caps, with a justification", DebugCounts(0, 5, 0, 3), JUSTIFICATION),
    ("tenant cap reached", DebugCounts(5, 5, 0, 3), JUSTIFICATION),
    ("stream cap reached", DebugCounts(0, 5, 3, 3), JUSTIFICATION),
)
Decider = Callable[[PolicyEngine], Decision]


def _generated() -> Iterator[tuple[Cell, Decider]]:
    """Tenants t1/t2 (and platform users), one user per role and one without, enabled,
    disabled and debug-enabled installs, the invoke and debug variants, every admin action."""
    tenants = ("t1", "t2")
    sets: list[frozenset[str]] = [frozenset()] + [frozenset({r}) for r in sorted(KNOWN_ROLES)]
    principals = [Principal(subject=f"{'+'.join(sorted(rs)) or 'norole'}@{t}", tenant=t, roles=rs)
                  for t in (*tenants, "platform") for rs in sets]
    installs = []
    for t in tenants:
        installs.append(InstallFacts(t, f"{t}-debug", "ext", "pub.ext", frozenset({"cap:debug.logs"}), True))
        installs.append(InstallFacts(t, f"{t}-plain", "ext", "pub.ext", frozenset(), True))
        installs.append(InstallFacts(t, f"{t}-disabled", "ext", "pub.ext", frozenset({"cap:debug.logs"}), False))
    admin_actions = tuple(a.value for a in AdminAction)
    for p in principals:
        who = f"{'+'.join(sorted(p.roles)) or 'no role'} of {p.tenant}"
        for inst in installs:
            what = f"install {inst.install_id}"
            for method, declared in INVOKE_VARIANTS:
                circ = f"{method} {'declared' if declared else 'undeclared'} endpoint"
                action = READ if method in SAFE_METHODS else WRITE
                match = EndpointMatch(declared, "/items/:id" if declared else None)

                def invoke(e: PolicyEngine, p: Principal = p, i: InstallFacts = inst, m: str = method,
                           em: EndpointMatch = match) -> Decision:
                    return e.decide_invoke(p, i, m, em, path="/items/1")

                yield Cell(who, action, what, circ), invoke
            for circ, counts, just in DEBUG_VARIANTS:

                def debug(e: PolicyEngine, p: Principal = p, i: InstallFacts = inst, c: DebugCounts = counts,
                          j: str = just) -> Decision:
                    return e.decide_debug_view(p, i, c, j)

                yield Cell(who, DEBUG_VIEW, what, circ), debug
        for action in admin_actions:
            for tenant in (*tenants, None):

                def admin(e: PolicyEngine, p: Principal = p, a: str = action, t: str | None = tenant) -> Decision:
                    return e.decide_admin(p, a, tenant_id=t)

                yield Cell(who, action, f"tenant {tenant}" if tenant else "platform", "-"), admin


UNDECLARED = EndpointMatch(False, None)
UNDER_CAPS = DebugCounts(0, 5, 0, 3)
NOON = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # a fixed clock where a test compares decisions


def test_invoke_read_write_by_role(engine: PolicyEngine) -> None:
    viewer, editor = user("v", "acme", "viewer"), user("e", "acme", "editor")
    assert engine.decide_invoke(viewer, CRM, "GET", DECLARED).policy_ids == ("rbac.read",)
    assert engine.decide_invoke(viewer, CRM, "head", DECLARED).action == "read"
    denied = engine.decide_invoke(viewer, CRM, "PATCH", DECLARED)
    assert not denied.allowed and denied.default_deny and not denied.endpoint_not_found
    allowed = engine.decide_invoke(editor, CRM, "PATCH", DECLARED)
    assert allowed.allowed and allowed.action == "write" and allowed.revision == engine.revision
    assert allowed.reasons and "Editors" in allowed.reasons[0]


def test_undeclared_endpoint_is_distinguishable(engine: PolicyEngine) -> None:
    decision = engine.decide_invoke(user("a", "acme", "admin"), CRM, "GET", UNDECLARED, path="/nope")
    assert not decision.allowed
    assert decision.policy_ids == (ENDPOINT_RULE_ID,) and decision.endpoint_not_found
    other_tenant = engine.decide_invoke(user("a", "globex", "admin"), CRM, "GET", UNDECLARED)
    assert not other_tenant.allowed and not other_tenant.endpoint_not_found  # 403, not 404


def test_debug_view_gating(engine: PolicyEngine) -> None:
    operator = user("o", "acme", "operator")
    assert engine.decide_debug_view(operator, CRM, UNDER_CAPS).policy_ids == ("debug.tenant-operator",)
    no_cap = install("acme", "plain")
    assert engine.decide_debug_view(operator, no_cap, UNDER_CAPS).policy_ids == ("debug.capability-required",)
    full = engine.decide_debug_view(operator, CRM, DebugCounts(5, 5, 0, 3))
    assert full.policy_ids == ("debug.tenant-session-cap",)
    stream_full = engine.decide_debug_view(operator, CRM, DebugCounts(0, 5, 3, 3))
    assert stream_full.policy_ids == ("debug.stream-session-cap",)
    root = user("root", "platform", "platform-admin")
    assert not engine.decide_debug_view(root, CRM, UNDER_CAPS, "   ").allowed
    assert engine.decide_debug_view(root, CRM, UNDER_CAPS, "  ticket 4711: outage  ").allowed


def test_admin_decisions(engine: PolicyEngine) -> None:
    admin = user("a", "acme", "admin")
    assert engine.decide_admin(admin, "install.secrets.write", tenant_id="acme").allowed
    assert engine.decide_admin(admin, "install.secrets.write", tenant_id="globex").policy_ids == (
        "tenancy.admin-same-tenant",
    )
    assert not engine.decide_admin(admin, "policy.manage", tenant_id=None).allowed
    assert engine.decide_admin(user("r", "platform", "platform-admin"), "policy.manage", tenant_id=None).allowed


def _overflow_bundle(edit: Callable[..., BundleSource]) -> Bundle:
    """A schema-valid forbid that errors at runtime (Long overflow)."""
    extra = (
        '@id("debug.total-cap")\n@reason("at most 100 sessions in total")\n'
        'forbid (principal, action == ExtGate::Action::"debug.view", resource)\n'
        "when { context.tenantSessionLimit + context.streamSessionLimit > 100 };\n"
    )
    return compile_bundle(edit({"zz-extra.cedar": extra, "tests/debug.json": None}))


def test_erroring_forbid_does_not_fail_open(edit: Callable[..., BundleSource]) -> None:
    """Regression: Cedar skips a forbid whose evaluation errors, so the raw answer is Allow."""
    bundle = _overflow_bundle(edit)
    engine = PolicyEngine(bundle)
    operator = user("o", "acme", "operator")
    huge = DebugCounts(0, 2**63 - 1, 0, 3)  # the sum overflows: the forbid errors
    # What Cedar itself says: Allow, with an error from the skipped forbid.
    entities = engine.entities(request_entities(operator, install=CRM))
    raw = cedarpy.is_authorized(
        {
            "principal": {"type": USER_TYPE, "id": "o"},
            "action": {"type": "ExtGate::Action", "id": "debug.view"},
            "resource": {"type": INSTALL_TYPE, "id": CRM.install_id},
            "context": {
                "tenantSessions": huge.tenant_sessions,
                "tenantSessionLimit": huge.tenant_limit,
                "streamSessions": 0,
                "streamSessionLimit": 3,
                "justification": "",
                "justificationLength": 0,
                "time": time_context(),
            },
        },
        bundle.policy_set(),
        entities,
        bundle.schema,
    )
    assert raw.allowed and raw.diagnostics.errors  # the trap
    decision = engine.decide_debug_view(operator, CRM, huge)
    assert not decision.allowed
    assert decision.errors and decision.policy_ids == (EVALUATION_ERROR_ID,)
    assert not decision.endpoint_not_found


def test_missing_entity_error_is_deny(engine: PolicyEngine) -> None:
    """A principal absent from the entities makes tenancy forbids error: still a deny."""
    entities = engine.entities(
        [
            {
                "uid": {"type": INSTALL_TYPE, "id": "i"},
                "attrs": {
                    "tenant": {"__entity": {"type": "ExtGate::Tenant", "id": "acme"}},
                    "extension": "e",
                    "slug": "p.e",
                    "capabilities": [],
                    "enabled": True,
                },
                "parents": [],
            }
        ]
    )
    ctx = {"method": "GET", "path": "/", "endpointDeclared": True, "endpointTemplate": "/", "time": time_context()}
    decision = engine.decide(EntityRef(USER_TYPE, "ghost"), "read", EntityRef(INSTALL_TYPE, "i"), ctx, entities)
    assert not decision.allowed and decision.errors


def test_invalid_context_is_deny(engine: PolicyEngine) -> None:
    entities = engine.entities([])
    decision = engine.decide(
        EntityRef(USER_TYPE, "u"), "read", EntityRef(INSTALL_TYPE, "i"), {"method": "GET"}, entities
    )
    assert not decision.allowed and decision.errors and "endpointDeclared" in decision.errors[0]


def test_slices_decide_like_the_full_set(engine: PolicyEngine) -> None:
    """Over the whole generated matrix, sliced and unsliced evaluation agree exactly."""
    full = engine.full_policy_set
    original = engine.bundle.slice_for
    seen = 0
    for _cell, decide in _generated():
        sliced = decide(engine)
        object.__setattr__(engine.bundle, "slice_for", lambda *a, **k: full)
        try:
            unsliced = decide(engine)
        finally:
            object.__delattr__(engine.bundle, "slice_for")
        assert (sliced.allowed, sliced.policy_ids) == (unsliced.allowed, unsliced.policy_ids), _cell
        seen += 1
    assert seen > 1000 and engine.bundle.slice_for == original


def test_slices_are_smaller_and_resource_scoped(edit: Callable[..., BundleSource]) -> None:
    extra = (
        '@id("special.block")\n@reason("one install is frozen")\n'
        'forbid (principal, action, resource == ExtGate::Install::"frozen");\n'
    )
    bundle = compile_bundle(edit({"special.cedar": extra}))
    generic = bundle.slice_ids("read", INSTALL_TYPE, "other")
    frozen = bundle.slice_ids("read", INSTALL_TYPE, "frozen")
    assert "special.block" not in generic and "special.block" in frozen
    assert len(generic) < len(bundle.policies) / 2
    assert "admin.policy-manage" not in generic
    engine = PolicyEngine(bundle)
    editor = user("e", "acme", "editor")
    assert not engine.decide_invoke(editor, install("acme", "frozen"), "GET", DECLARED).allowed
    assert engine.decide_invoke(editor, install("acme", "other"), "GET", DECLARED).allowed


SLUG_GUARDED = """
@id("slug.first")
@reason("guard first: indexed")
forbid (principal, action, resource is ExtGate::Install)
when { resource.slug == "blocked.one" && principal.tenant == resource.tenant };

@id("slug.literal-left")
@reason("literal on the left: indexed")
forbid (principal, action == ExtGate::Action::"write", resource is ExtGate::Install)
when { "blocked.two" == resource.slug };

@id("slug.second")
@reason("guard second: not indexed")
forbid (principal, action, resource is ExtGate::Install)
when { resource.enabled && resource.slug == "blocked.three" };

@id("slug.unscoped")
@reason("resource not scoped to Install: not indexed")
forbid (principal, action == ExtGate::Action::"read", resource)
when { resource is ExtGate::Install && resource.slug == "blocked.four" };

@id("slug.unless-first")
@reason("an unless clause first: not indexed")
forbid (principal, action, resource is ExtGate::Install)
unless { principal.tenant == ExtGate::Tenant::"nobody" }
when { resource.slug == "blocked.five" };

@id("slug.permit")
@reason("a permit guarded on a slug")
permit (principal, action == ExtGate::Action::"write", resource is ExtGate::Install)
when { resource.slug == "open.six" && principal.tenant == resource.tenant };
"""


def test_slug_guarded_policies_are_sliced_by_slug(edit: Callable[..., BundleSource]) -> None:
    from service.policy.bundle import slug_guard

    bundle = compile_bundle(edit({"slugs.cedar": SLUG_GUARDED}))
    guards = {pid: slug_guard(p.est) for pid, p in bundle.policies.items() if pid.startswith("slug.")}
    assert guards == {"slug.first": "blocked.one", "slug.literal-left": "blocked.two", "slug.second": None,
                      "slug.unscoped": None, "slug.unless-first": None, "slug.permit": "open.six"}
    other = bundle.slice_ids("write", INSTALL_TYPE, "i", slug="some.other")
    assert {"slug.first", "slug.literal-left", "slug.permit"}.isdisjoint(other)
    assert {"slug.second", "slug.unless-first"} <= set(other)  # not provably irrelevant: kept
    assert "slug.first" in bundle.slice_ids("write", INSTALL_TYPE, "i", slug="blocked.one")
    assert "slug.permit" in bundle.slice_ids("write", INSTALL_TYPE, "i", slug="open.six")
    unknown = bundle.slice_ids("write", INSTALL_TYPE, "i")  # slug not known: everything that may apply
    assert {"slug.first", "slug.literal-left", "slug.permit"} <= set(unknown)

    # Sliced and unsliced evaluation agree for every slug, role and method.
    engine = PolicyEngine(bundle)
    full = engine.full_policy_set
    slugs = ["blocked.one", "blocked.two", "blocked.three", "blocked.four", "blocked.five", "open.six", "pub.ext"]
    checked = 0
    for slug in slugs:
        facts = InstallFacts("acme", "acme-" + slug, "ext-1", slug, frozenset({"cap:debug.logs"}), True)
        for who in (user("v", "acme", "viewer"), user("e", "acme", "editor"), user("x", "globex", "editor")):
            for method in ("GET", "POST"):
                sliced = engine.decide_invoke(who, facts, method, DECLARED)
                object.__setattr__(engine.bundle, "slice_for", lambda *a, **k: full)
                try:
                    unsliced = engine.decide_invoke(who, facts, method, DECLARED)
                finally:
                    object.__delattr__(engine.bundle, "slice_for")
                assert (sliced.allowed, sliced.policy_ids) == (unsliced.allowed, unsliced.policy_ids), (slug, who)
                checked += 1
    assert checked == 42
    # and the guards decide what they say
    editor = user("e", "acme", "editor")
    blocked = InstallFacts("acme", "b1", "ext-1", "blocked.one", frozenset(), True)
    assert engine.decide_invoke(editor, blocked, "GET", DECLARED).policy_ids == ("slug.first",)
    viewer_on_open = InstallFacts("acme", "o6", "ext-1", "open.six", frozenset(), True)
    assert engine.decide_invoke(user("v", "acme", "viewer"), viewer_on_open, "POST", DECLARED).allowed


def test_principal_scoped_policies_only_in_their_principals_slice(edit: Callable[..., BundleSource]) -> None:
    extra = (
        '@id("grant.bob")\n@reason("bob may write")\n'
        'permit (principal == ExtGate::User::"bob", action == ExtGate::Action::"write", resource is ExtGate::Install)\n'
        "when { principal.tenant == resource.tenant };\n"
    )
    bundle = compile_bundle(edit({"grants.cedar": extra}))
    assert "grant.bob" in bundle.slice_ids("write", INSTALL_TYPE, "i", (USER_TYPE, "bob"))
    assert "grant.bob" not in bundle.slice_ids("write", INSTALL_TYPE, "i", (USER_TYPE, "alice"))
    engine = PolicyEngine(bundle)
    assert engine.decide_invoke(user("bob", "acme", "viewer"), CRM, "POST", DECLARED).policy_ids == ("grant.bob",)
    assert not engine.decide_invoke(user("alice", "acme", "viewer"), CRM, "POST", DECLARED).allowed


def test_entities_are_cached_per_facts(engine: PolicyEngine) -> None:
    engine._cache._data.clear()
    viewer = user("cache-v", "acme", "viewer")
    engine.decide_invoke(viewer, CRM, "GET", DECLARED)
    engine.decide_invoke(viewer, CRM, "HEAD", DECLARED)
    assert len(engine._cache) == 1
    revoked = install("acme", "acme-crm")  # same install, capability revoked: new facts, new entry
    engine.decide_debug_view(user("o", "acme", "operator"), revoked, UNDER_CAPS)
    assert len(engine._cache) == 2


def test_memoised_invoke_decisions_equal_fresh_evaluation(shipped_bundle: Bundle) -> None:
    engine = PolicyEngine(shipped_bundle)
    principals = [
        user("p", "acme", "viewer"), user("p", "acme", "editor"), user("p", "acme", "admin"),
        user("p", "acme", "operator"), user("p", "acme"), user("p", "acme", "editor", user_type="client"),
        user("p", "globex", "admin"),
    ]
    installs = [CRM, install("acme", "acme-crm"), install("acme", "acme-crm", enabled=False),
                install("globex", "globex-crm")]
    endpoints = [DECLARED, EndpointMatch(True, "/other"), UNDECLARED]
    for _ in range(2):  # the first pass fills the memo, the second answers from it
        for principal in principals:
            for facts in installs:
                for method in ("GET", "head", "POST", "DELETE"):
                    for endpoint in endpoints:
                        for path in ("/items/1", "/"):
                            got = engine.decide_invoke(principal, facts, method, endpoint, path=path, now=NOON)
                            fresh = engine._decide_invoke(principal, facts, method, endpoint, path, NOON)
                            assert got == fresh, (principal, facts, method, endpoint, path)
    assert 0 < len(engine._invoke_memo) <= 7 * 4 * 4 * 3 * 2


def test_invoke_memo_keys_on_every_input(shipped_bundle: Bundle) -> None:
    engine = PolicyEngine(shipped_bundle)
    # Same subject, new token with other roles: a fresh decision, not the remembered one.
    assert not engine.decide_invoke(user("sam", "acme", "viewer"), CRM, "PATCH", DECLARED).allowed
    assert engine.decide_invoke(user("sam", "acme", "editor"), CRM, "PATCH", DECLARED).allowed
    # Same install, now disabled: new facts.
    assert engine.decide_invoke(user("sam", "acme", "viewer"), CRM, "GET", DECLARED).allowed
    disabled = install("acme", "acme-crm", "cap:debug.logs", enabled=False)
    assert not engine.decide_invoke(user("sam", "acme", "viewer"), disabled, "GET", DECLARED).allowed
    # Declared vs undeclared endpoint on the same path.
    undeclared = engine.decide_invoke(user("sam", "acme", "viewer"), CRM, "GET", UNDECLARED, path="/items/1")
    assert undeclared.endpoint_not_found


def test_invoke_memo_is_bounded_and_skips_long_paths(shipped_bundle: Bundle) -> None:
    engine = PolicyEngine(shipped_bundle, decision_memo_size=8)
    viewer = user("v", "acme", "viewer")
    for i in range(20):
        assert engine.decide_invoke(user(f"v{i}", "acme", "viewer"), CRM, "GET", DECLARED, path="/items/1").allowed
    assert len(engine._invoke_memo) == 8
    long_path = "/items/" + "x" * (MEMO_MAX_PATH + 1)
    engine._invoke_memo._data.clear()
    assert engine.decide_invoke(viewer, CRM, "GET", DECLARED, path=long_path).allowed
    assert len(engine._invoke_memo) == 0


def test_invoke_memo_leaves_out_what_no_policy_reads(edit: Callable[..., BundleSource]) -> None:
    """No shipped policy reads context.path or context.time: one memo entry serves every
    path and minute, yet each decision records its own request's path and time. A bundle
    that reads them keys on them."""
    at = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    viewer = user("v", "acme", "viewer")
    shipped = PolicyEngine(compile_bundle(edit({})))
    first = shipped.decide_invoke(viewer, CRM, "GET", DECLARED, path="/items/1", now=at)
    later = shipped.decide_invoke(viewer, CRM, "GET", DECLARED, path="/items/2", now=at.replace(hour=23))
    assert len(shipped._invoke_memo) == 1 and later.allowed == first.allowed
    assert first.inputs is not None and later.inputs is not None
    assert first.inputs.context["path"] == "/items/1" and later.inputs.context["path"] == "/items/2"
    assert later.inputs.context["time"]["hour"] == 23 and first.inputs.context["time"]["hour"] == 10

    admin_paths = edit({"zz_admin.cedar": (
        '@id("admin-paths")\n@reason("No admin paths.")\n'
        'forbid (principal, action, resource) when { context has path && context.path like "/admin*" };\n')})
    reading = PolicyEngine(compile_bundle(admin_paths))
    assert reading.decide_invoke(viewer, CRM, "GET", DECLARED, path="/items/1", now=at).allowed
    assert not reading.decide_invoke(viewer, CRM, "GET", DECLARED, path="/admin/x", now=at).allowed
    assert len(reading._invoke_memo) == 2


def test_a_new_bundle_never_sees_the_old_bundles_answers(edit: Callable[..., BundleSource]) -> None:
    shipped = PolicyEngine(compile_bundle(edit({})))
    editor = user("e", "acme", "editor")
    assert shipped.decide_invoke(editor, CRM, "PATCH", DECLARED).allowed
    forbidding = PolicyEngine(compile_bundle(edit({"zz_freeze.cedar": (
        '@id("freeze.writes")\n@reason("Writes are frozen.")\n'
        "forbid (principal, action == ExtGate::Action::\"write\", resource);\n"
    )})))
    decision = forbidding.decide_invoke(editor, CRM, "PATCH", DECLARED)
    assert not decision.allowed and decision.policy_ids == ("freeze.writes",)
    assert shipped.decide_invoke(editor, CRM, "PATCH", DECLARED).allowed  # each engine, its own bundle


def test_fast_and_public_call_paths_agree(engine: PolicyEngine) -> None:
    operator = user("o", "acme", "operator", "viewer")
    entities = engine.entities(request_entities(operator, install=CRM))
    for action, ctx in [
        ("read", {"method": "GET", "path": "/", "endpointDeclared": True, "endpointTemplate": "/",
                  "time": time_context()}),
        ("write", {"method": "POST", "path": "/", "endpointDeclared": False, "endpointTemplate": "",
                   "time": time_context()}),
        ("read", {"method": "GET"}),
    ]:
        req = {
            "principal": {"type": USER_TYPE, "id": "o"},
            "action": {"type": "ExtGate::Action", "id": action},
            "resource": {"type": INSTALL_TYPE, "id": CRM.install_id},
        }
        req["context"] = json.dumps(ctx)
        args = (req, engine.full_policy_set, entities, engine.bundle.schema)
        fast, public = cedar_call.authorize(*args), cedar_call.authorize_public(*args)
        assert (fast.decision, sorted(fast.reasons), len(fast.errors)) == (
            public.decision,
            sorted(public.reasons),
            len(public.errors),
        )


def test_deny_all_engine() -> None:
    engine = DenyAllEngine()
    decision = engine.decide_invoke(user("a", "acme", "admin"), CRM, "GET", DECLARED)
    assert not decision.allowed and decision.errors and decision.revision == "none"
    assert not engine.decide_admin(user("r", "p", "platform-admin"), "policy.manage", tenant_id=None).allowed
