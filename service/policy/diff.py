"""`extgate policy diff`: which policies changed, and who gains or loses which access.

Two reports:

* **Policy changes**, always: every `@id` added, removed or changed (its EST differs,
  which includes its annotations such as `@reason`), with a unified diff of its text.
* **The permission matrix**: both bundles decide every cell of a population built from
  the literals the old and new policies mention (see `service.policy.population`):
  for each action whose applicable policies differ (every action when the schema
  changed), the product of
    - principals: user ids named by a policy (else one), tenant, role set (all subsets of
      the roles the action's policies name), userType;
    - resources: installs (tenant, slug, extension, capabilities, enabled, ids a policy
      names), tenants and the platform; plus the real installs when given;
    - contexts, built from the action's context shape in the schema (method, endpoint,
      path, debug counts, justification, the `time` record, any other attribute by type);
  an attribute that no policy applying to the action references holds one default value
  (it cannot change a decision). The users, installs and tenants of the new bundle's
  test entities are decided against the same contexts.

Cells whose allow/deny differ are reported; a product over the cap is sampled (and said so).
"""

from __future__ import annotations

import difflib
import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import cedarpy

from service.auth.principal import KNOWN_ROLES, Principal
from service.policy.changes import compare_policies
from service.policy.engine import EVALUATION_ERROR_REASON, EntitiesError, PolicyEngine
from service.policy.entities import request_entities
from service.policy.model import (
    EVALUATION_ERROR_ID,
    INSTALL_TYPE,
    PLATFORM_ID,
    PLATFORM_TYPE,
    READ,
    SAFE_METHODS,
    TENANT_TYPE,
    USER_TYPE,
    WRITE,
    Decision,
    EntityRef,
    InstallFacts,
    PolicyInfo,
)
from service.policy.population import (
    DEFAULT_TENANTS,
    CType,
    Literals,
    SchemaShape,
    action_resource_types,
    datetime_domain,
    numeric_domain,
    policy_applies_to_action,
    role_sets,
    role_universe,
    scan_policy,
    set_domain,
    string_domain,
    time_record,
)
from service.policy.testing import load_test_documents
from service.policy.textscan import split_statements

#: The most cells decided for one action; a larger product is sampled (and reported).
CELL_CAP = 250_000
#: Changed cells listed per section in the text output (all of them are in --json).
RENDER_LIMIT = 200
JUSTIFICATION = "incident INC-0001: customer reports errors"
DEFAULT_USER = "user"
NO_CHANGE_TEXT = "policies changed, no permission changed for the population"
_METHOD_RE = re.compile(r"^[A-Z][A-Z-]*$")
_ABSENT = object()


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    who: str
    action: str
    what: str
    circumstance: str


@dataclass(frozen=True)
class Change:
    cell: Cell
    before: Decision
    after: Decision

    @property
    def gained(self) -> bool:
        return self.after.allowed and not self.before.allowed

    def to_dict(self) -> dict[str, Any]:
        c = self.cell
        return {
            "change": "gained" if self.gained else "lost",
            "who": c.who,
            "action": c.action,
            "resource": c.what,
            "circumstance": c.circumstance,
            "before": list(self.before.policy_ids),
            "after": list(self.after.policy_ids),
        }


@dataclass(frozen=True)
class PolicyChange:
    id: str
    change: str  # added | removed | changed
    diff: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "change": self.change, "diff": self.diff}


@dataclass(frozen=True)
class MatrixDiff:
    old_revision: str
    new_revision: str
    cells: int
    changes: tuple[Change, ...]
    policy_changes: tuple[PolicyChange, ...] = ()
    population: dict[str, Any] = field(default_factory=dict)
    truncated: tuple[dict[str, Any], ...] = ()
    schema_changed: bool = False
    real_installs: int | None = None
    real_installs_note: str = "not requested"

    @property
    def gained(self) -> list[Change]:
        return [c for c in self.changes if c.gained]

    @property
    def lost(self) -> list[Change]:
        return [c for c in self.changes if not c.gained]

    @property
    def changed(self) -> bool:
        """Any policy or any cell changed (the CLI exits 1)."""
        return bool(self.changes or self.policy_changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_revision": self.old_revision,
            "new_revision": self.new_revision,
            "cells": self.cells,
            "gained": len(self.gained),
            "lost": len(self.lost),
            "changes": [c.to_dict() for c in self.changes],
            "policy_changes": [p.to_dict() for p in self.policy_changes],
            "schema_changed": self.schema_changed,
            "population": self.population,
            "truncated": list(self.truncated),
            "real_installs": self.real_installs,
            "real_installs_note": self.real_installs_note,
        }

    def render(self) -> str:
        lines = [
            f"permission matrix: {self.cells} cells, {len(self.gained)} gained, {len(self.lost)} lost",
            f"  old {self.old_revision}",
            f"  new {self.new_revision}",
        ]
        if self.schema_changed:
            lines.append("schema changed: every action was evaluated")
        if self.policy_changes:
            counts = {k: sum(p.change == k for p in self.policy_changes) for k in ("added", "removed", "changed")}
            summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
            lines.append(f"policy changes: {len(self.policy_changes)} ({summary})")
            for pc in self.policy_changes:
                lines.append(f"  {pc.change.upper()} {pc.id}")
                lines += [f"    {line}" for line in pc.diff.splitlines()]
        else:
            lines.append("policy changes: none")
        lines += self._population_lines()
        for title, items in (("GAINED (deny -> allow)", self.gained), ("LOST (allow -> deny)", self.lost)):
            if not items:
                continue
            lines.append(title)
            for ch in items[:RENDER_LIMIT]:
                c = ch.cell
                via = ch.after.policy_ids if ch.gained else ch.before.policy_ids
                now = ", ".join(ch.after.policy_ids) or "default deny"
                lines.append(
                    f"  {c.who}  {c.action}  {c.what}  [{c.circumstance}]"
                    f"  was {', '.join(via) if not ch.gained else 'denied'}; now {now}"
                )
            if len(items) > RENDER_LIMIT:
                lines.append(f"  ... and {len(items) - RENDER_LIMIT} more (see --json)")
        if self.policy_changes and not self.changes:
            lines.append(NO_CHANGE_TEXT)
        elif not self.changed:
            lines.append("no policy changed, no permission changed")
        return "\n".join(lines)

    def _population_lines(self) -> list[str]:
        pop = self.population
        actions = pop.get("actions", {})
        lines = []
        if actions:
            lines.append("population:")
            for name, info in actions.items():
                dims = ", ".join(f"{k} {v}" for k, v in info["dimensions"].items())
                lines.append(f"  {name}: {info['cells']} cells ({dims})")
        skipped = pop.get("not_evaluated", [])
        if skipped:
            lines.append(f"  not evaluated (no applicable policy changed): {', '.join(skipped)}")
        lines.append(f"  test entities: {pop.get('test_entity_cells', 0)} cells")
        if self.real_installs is None:
            lines.append(f"  real installs: none included ({self.real_installs_note})")
        else:
            lines.append(f"  real installs: {self.real_installs} included ({self.real_installs_note})")
        for t in self.truncated:
            lines.append(f"population truncated: {t['evaluated']} of {t['cells']} cells for {t['action']} (sampled)")
        return lines


# --------------------------------------------------------------------------------------
# Policy-level changes
# --------------------------------------------------------------------------------------

_ID_RE = re.compile(r'@id\(\s*"((?:[^"\\]|\\.)*)"\s*\)')


def _policy_texts(engine: PolicyEngine) -> dict[str, str]:
    """Source text of every policy, by `@id` (the statement in its file)."""
    out: dict[str, str] = {}
    source = engine.bundle.source
    for name in source.policy_files:
        for statement in split_statements(source.files[name]):
            m = _ID_RE.search(statement.text)
            if m:
                out.setdefault(m.group(1).replace('\\"', '"').replace("\\\\", "\\"), statement.text.strip())
    return out


def _render_policy(info: PolicyInfo, texts: dict[str, str]) -> str:
    found = texts.get(info.id)
    if found is not None:
        return found
    doc = {"staticPolicies": {info.id: info.est}, "templates": {}, "templateLinks": []}
    try:
        return str(cedarpy.policies_from_json_str(json.dumps(doc))).strip()
    except ValueError:
        return json.dumps(info.est, indent=2, sort_keys=True)


def _meaning(est: dict[str, Any]) -> str:
    """A policy's effect, scopes and conditions, without its annotations (`@id`, `@reason`)."""
    return json.dumps({k: v for k, v in est.items() if k != "annotations"}, sort_keys=True)


def policy_changes(old: PolicyEngine, new: PolicyEngine) -> list[PolicyChange]:
    """Added, removed and changed `@id`s (`service.policy.changes`), each with a unified diff
    of its statement text."""
    before, after = old.bundle.policies, new.bundle.policies
    found = compare_policies(before, after)
    old_texts, new_texts = _policy_texts(old), _policy_texts(new)
    out: list[PolicyChange] = []
    kinds = {**{i: "added" for i in found.added}, **{i: "removed" for i in found.removed},
             **{i: "changed" for i in found.changed}}
    for pid in sorted(kinds):
        o, n = before.get(pid), after.get(pid)
        a = _render_policy(o, old_texts).splitlines() if o else []
        b = _render_policy(n, new_texts).splitlines() if n else []
        text = "\n".join(difflib.unified_diff(
            a, b, fromfile=f"a/{o.file}" if o else "/dev/null", tofile=f"b/{n.file}" if n else "/dev/null",
            lineterm=""))
        out.append(PolicyChange(pid, kinds[pid], text))
    return out


# --------------------------------------------------------------------------------------
# The population
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrincipalSpec:
    subject: str
    tenant: str
    roles: frozenset[str]
    user_type: str
    label: str

    def principal(self) -> Principal:
        return Principal(subject=self.subject, tenant=self.tenant, roles=self.roles, user_type=self.user_type)


@dataclass(frozen=True)
class ResourceSpec:
    ref: EntityRef
    label: str
    install: InstallFacts | None = None
    tenant: str | None = None  # the Tenant resource's id


@dataclass(frozen=True)
class ContextSpec:
    values: dict[str, Any]
    label: str


@dataclass
class ActionPopulation:
    action: str
    principals: list[PrincipalSpec]
    resources: list[ResourceSpec]
    contexts: list[ContextSpec]
    dimensions: dict[str, int]

    @property
    def size(self) -> int:
        return len(self.principals) * len(self.resources) * len(self.contexts)


def _schema_text(engine: PolicyEngine) -> str:
    src = engine.bundle.source
    return "\n".join(src.files[n] for n in src.schema_files)


def _applicable(engine: PolicyEngine, action: str, rtypes: tuple[str, ...]) -> list[PolicyInfo]:
    return [p for p in engine.bundle.policies.values() if policy_applies_to_action(p.est, action, rtypes)]


def _merge_ctype(a: CType | None, b: CType | None) -> CType:
    if a is None:
        return b if b is not None else ("Record", {})
    if b is None or a[0] != "Record" or b[0] != "Record":
        return a
    attrs = dict(b[1])
    for name, (t, opt) in a[1].items():
        attrs[name] = (_merge_ctype(t, attrs[name][0] if name in attrs else None), opt)
    return ("Record", attrs)


def _default_for(ctype: CType) -> Any:
    kind = ctype[0]
    if kind == "Long":
        return 0
    if kind == "String":
        return ""
    if kind == "Bool":
        return False
    if kind == "Set":
        return []
    if kind == "Record":
        return {k: _default_for(t) for k, (t, opt) in ctype[1].items() if not opt}
    if kind == "Ext" and ctype[1] == "datetime":
        return time_record(datetime_domain(Literals())[0])["datetime"]
    if kind == "Ext" and ctype[1] == "duration":
        return {"__extn": {"fn": "duration", "arg": "0ms"}}
    if kind == "Ext" and ctype[1] == "decimal":
        return {"__extn": {"fn": "decimal", "arg": "0.0"}}
    if kind == "Ext" and ctype[1] == "ipaddr":
        return {"__extn": {"fn": "ip", "arg": "127.0.0.1"}}
    if kind == "Entity":
        return {"__entity": {"type": ctype[1], "id": "unknown"}}
    return None


def _project(value: Any, ctype: CType | None) -> Any:
    """`value` reduced to the attributes `ctype` declares (a record of the other schema)."""
    if ctype is None or ctype[0] != "Record" or not isinstance(value, dict) or "__extn" in value:
        return value
    out = {}
    for name, (t, opt) in ctype[1].items():
        if name in value and value[name] is not _ABSENT:
            out[name] = _project(value[name], t)
        elif not opt:
            out[name] = _default_for(t)
    return out


ContextDim = list[tuple[dict[str, Any], str]]  # (partial context, label part)


def _context_dims(action: str, attrs: dict[str, tuple[CType, bool]], lit: Literals) -> list[ContextDim]:
    dims: list[ContextDim] = []
    handled: set[str] = set()
    names = set(attrs)
    if action in (READ, WRITE) and "method" in names and attrs["method"][0][0] == "String":
        handled.add("method")
        dims.append([({"method": m}, m) for m in _methods(action, lit)])
    if {"endpointDeclared", "endpointTemplate"} <= names:
        handled |= {"endpointDeclared", "endpointTemplate"}
        declared_refd = lit.refs("context.endpointDeclared")
        templates = (string_domain(lit, "context.endpointTemplate", "/items/:id")
                     if lit.refs("context.endpointTemplate") else ["/items/:id"])
        templates = [t for t in templates if t] or ["/items/:id"]
        options: ContextDim = [({"endpointDeclared": True, "endpointTemplate": t},
                                f"declared endpoint {t}" if len(templates) > 1 else "declared endpoint")
                               for t in templates]
        if declared_refd or lit.refs("context.endpointTemplate"):
            options.append(({"endpointDeclared": False, "endpointTemplate": ""}, "undeclared endpoint"))
        dims.append(options)
    if {"justification", "justificationLength"} <= names:
        handled |= {"justification", "justificationLength"}
        texts = [""]
        if lit.refs("context.justification"):
            texts += string_domain(lit, "context.justification", JUSTIFICATION)
        if lit.refs("context.justificationLength"):
            texts += ["j" * n for n in numeric_domain(lit, "context.justificationLength", 0) if 0 <= n <= 10_000]
        texts = list(dict.fromkeys(t.strip() for t in texts))
        dims.append([({"justification": t, "justificationLength": len(t)},
                      f"justification of {len(t)} chars" if t else "no justification") for t in texts])
    time_t = attrs.get("time", (None, False))[0]
    if time_t is not None and time_t[0] == "Record":
        handled.add("time")
        fields = time_t[1]
        instants = datetime_domain(lit)
        options = []
        for when in instants:
            rec = time_record(when)
            full = {"hour": rec["hour"], "minute": when.minute, "dayOfWeek": rec["dayOfWeek"],
                    "datetime": rec["datetime"], "second": when.second}
            options.append(({"time": _project(full, ("Record", {k: v for k, v in fields.items()}))},
                            f"at {when.strftime('%a %Y-%m-%dT%H:%M:%SZ')}"))
        dims.append(options)
    for name, (ctype, optional) in attrs.items():
        if name in handled:
            continue
        path = f"context.{name}"
        refd = lit.refs(path)
        values: list[Any]
        if ctype[0] == "Long":
            values = numeric_domain(lit, path, _LONG_DEFAULTS.get(name, 0)) if refd else [_LONG_DEFAULTS.get(name, 0)]
        elif ctype[0] == "String":
            default = _STRING_DEFAULTS.get(name, "")
            values = string_domain(lit, path, default) if refd else [default]
        elif ctype[0] == "Bool":
            values = [True, False] if refd else [False]
        elif ctype[0] == "Set" and ctype[1][0] == "String":
            values = [sorted(s) for s in set_domain(lit, path)] if refd else [[]]
        else:
            values = [_default_for(ctype)]
        if optional:
            values = [*values, _ABSENT] if refd else [_ABSENT]
        dims.append([({name: v}, f"{name}={'absent' if v is _ABSENT else json.dumps(v)}") for v in values])
    return dims


_LONG_DEFAULTS = {"tenantSessions": 0, "tenantSessionLimit": 5, "streamSessions": 0, "streamSessionLimit": 3}
_STRING_DEFAULTS = {"path": "/items/1", "method": "GET"}


def _methods(action: str, lit: Literals) -> list[str]:
    """HTTP methods of the action: GET and HEAD for read; for write the methods policies
    name, POST, and one no policy names (context.method is always upper case)."""
    if action == READ:
        return sorted(SAFE_METHODS)
    if not lit.refs("context.method"):
        return ["POST"]
    named = {m.upper() for m in string_domain(lit, "context.method", "POST") if isinstance(m, str)}
    named = {m for m in named if _METHOD_RE.match(m) and m not in SAFE_METHODS}
    unnamed = next(m for m in ("OPTIONS", "TRACE", "PROPFIND", "MKCOL", "X-OTHER") if m not in named)
    return sorted(named | {"POST", unnamed})


def _tenant_domain(lit: Literals) -> list[str]:
    return list(dict.fromkeys([*DEFAULT_TENANTS, *sorted(lit.tenants)]))


def _principals(
    lit: Literals, roles_universe: tuple[str, ...], dims: dict[str, int], extra_tenants: Iterable[str] = ()
) -> list[PrincipalSpec]:
    """`extra_tenants`: the tenants of the real installs decided, so their own users appear."""
    users = [DEFAULT_USER, *sorted(lit.users)]
    tenants = (list(dict.fromkeys([*_tenant_domain(lit), *extra_tenants]))
               if lit.refs("principal.tenant") or "principal" in lit.whole else [DEFAULT_TENANTS[0]])
    roles = sorted(r for r in lit.roles if r in roles_universe)
    sets = role_sets(roles)
    user_types = (string_domain(lit, "principal.userType", "internal") + ["client"]
                  if lit.refs("principal.userType") else ["internal"])
    user_types = list(dict.fromkeys(user_types))
    dims.update({"users": len(users), "principal tenants": len(tenants), "role sets": len(sets),
                 "userTypes": len(user_types)})
    out = []
    for u in users:
        for t in tenants:
            for rs in sets:
                for ut in user_types:
                    label = f"{'+'.join(sorted(rs)) or 'no role'} of {t}"
                    if u != DEFAULT_USER:
                        label = f"{u}: {label}"
                    if len(user_types) > 1:
                        label += f" ({ut})"
                    out.append(PrincipalSpec(u, t, rs, ut, label))
    return out


def _install_label(i: InstallFacts, varied: dict[str, bool], real: bool = False) -> str:
    parts = []
    if varied.get("slug"):
        parts.append(f"slug {i.slug}")
    if varied.get("extension"):
        parts.append(f"extension {i.extension_id}")
    if varied.get("capabilities"):
        parts.append(f"caps [{', '.join(sorted(i.capabilities))}]" if i.capabilities else "no caps")
    if varied.get("enabled"):
        parts.append("enabled" if i.enabled else "disabled")
    if real:
        parts.append("real")
    extra = f" ({', '.join(parts)})" if parts else ""
    return f"install {i.install_id} of {i.tenant}{extra}"


def _resources(
    lit: Literals, rtypes: tuple[str, ...], real: list[InstallFacts], dims: dict[str, int]
) -> list[ResourceSpec]:
    out: list[ResourceSpec] = []
    tenants_all = _tenant_domain(lit)
    if INSTALL_TYPE in rtypes:
        named = sorted(i for t, i in lit.resources if t == INSTALL_TYPE)
        tenants = tenants_all if lit.refs("resource.tenant") or "resource" in lit.whole else [DEFAULT_TENANTS[0]]
        slugs = string_domain(lit, "resource.slug", "pub.ext") if lit.refs("resource.slug") else ["pub.ext"]
        exts = string_domain(lit, "resource.extension", "ext") if lit.refs("resource.extension") else ["ext"]
        caps = set_domain(lit, "resource.capabilities") if lit.refs("resource.capabilities") else [frozenset()]
        enabled = [True, False] if lit.refs("resource.enabled") else [True]
        varied = {"slug": len(slugs) > 1, "extension": len(exts) > 1, "capabilities": len(caps) > 1,
                  "enabled": len(enabled) > 1}
        dims.update({"install ids": len(named) + 1, "install tenants": len(tenants), "slugs": len(slugs),
                     "extensions": len(exts), "capability sets": len(caps), "enabled": len(enabled)})
        for t in tenants:
            for rid in [f"{t}-inst", *named]:
                for s in slugs:
                    for e in exts:
                        for c in caps:
                            for en in enabled:
                                facts = InstallFacts(t, rid, e, s, frozenset(c), en)
                                out.append(ResourceSpec(EntityRef(INSTALL_TYPE, rid), _install_label(facts, varied),
                                                        install=facts))
        seen: set[tuple[Any, ...]] = set()
        relevant = 0
        for facts in real:  # one real install per combination of what the policies can tell apart
            key = (facts.tenant if facts.tenant in lit.tenants else "*",
                   facts.install_id if facts.install_id in named else "*",
                   facts.slug if lit.refs("resource.slug") else "*",
                   facts.extension_id if lit.refs("resource.extension") else "*",
                   facts.capabilities if lit.refs("resource.capabilities") else "*",
                   facts.enabled if lit.refs("resource.enabled") else "*")
            if key in seen:
                continue
            seen.add(key)
            relevant += 1
            out.append(ResourceSpec(EntityRef(INSTALL_TYPE, facts.install_id),
                                    _install_label(facts, {**varied, "slug": True}, real=True), install=facts))
        if real:
            dims["real installs"] = relevant
    if TENANT_TYPE in rtypes:
        tenants = list(dict.fromkeys([*tenants_all, *sorted(i for t, i in lit.resources if t == TENANT_TYPE)]))
        dims["tenant resources"] = len(tenants)
        out += [ResourceSpec(EntityRef(TENANT_TYPE, t), f"tenant {t}", tenant=t) for t in tenants]
    if PLATFORM_TYPE in rtypes:
        dims["platform"] = 1
        out.append(ResourceSpec(EntityRef(PLATFORM_TYPE, PLATFORM_ID), "platform"))
    return out


def _contexts(action: str, attrs: dict[str, tuple[CType, bool]], lit: Literals,
              dims_out: dict[str, int]) -> list[ContextSpec]:
    dims = _context_dims(action, attrs, lit)
    combos: list[tuple[dict[str, Any], list[str]]] = [({}, [])]
    for dim in dims:
        combos = [({**ctx, **part}, [*labels, label] if len(dim) > 1 else labels)
                  for ctx, labels in combos for part, label in dim]
    dims_out["contexts"] = len(combos)
    return [ContextSpec(ctx, "; ".join(labels) or "-") for ctx, labels in combos]


# --------------------------------------------------------------------------------------
# Deciding
# --------------------------------------------------------------------------------------


class _Side:
    """One bundle: its engine, its context shape per action, cached entity handles."""

    def __init__(self, engine: PolicyEngine, shape: SchemaShape) -> None:
        self.engine = engine
        self.shape = shape
        self.ctx_cache: dict[tuple[str, int], str] = {}

    def context_json(self, action: str, index: int, ctx: ContextSpec) -> str:
        key = (action, index)
        found = self.ctx_cache.get(key)
        if found is None:
            ctype = self.shape.actions.get(action, ((), ("Record", {})))[1]
            found = self.ctx_cache[key] = json.dumps(_project(ctx.values, ctype))
        return found

    def handle(self, entities: list[dict[str, Any]] | str) -> tuple[Any, str | None]:
        try:
            return self.engine.entities(entities), None
        except EntitiesError as exc:
            return None, str(exc)

    def decide(self, principal: EntityRef, action: str, resource: EntityRef, context: str,
               handle: Any, error: str | None, slug: str | None) -> Decision:
        if handle is None:
            return Decision(False, action, (EVALUATION_ERROR_ID,), (EVALUATION_ERROR_REASON,),
                            self.engine.revision, (error or "entities do not fit the schema",))
        return self.engine.decide(principal, action, resource, context, handle, resource_slug=slug)


def _entities_for(p: PrincipalSpec, r: ResourceSpec) -> list[dict[str, Any]]:
    return request_entities(p.principal(), install=r.install, tenant=r.tenant)


def _evaluate(pop: ActionPopulation, old: _Side, new: _Side, share: bool, cap: int,
              changes: list[Change]) -> tuple[int, dict[str, Any] | None]:
    action = pop.action
    n_r, n_c = len(pop.resources), len(pop.contexts)
    total = pop.size
    if total <= cap:
        indices: Iterable[int] = range(total)
        truncated = None
    else:
        indices = sorted(random.Random(0).sample(range(total), cap))
        truncated = {"action": action, "evaluated": cap, "cells": total}
    last: tuple[int, int] | None = None
    handles: tuple[Any, str | None, Any, str | None] = (None, None, None, None)
    count = 0
    for idx in indices:
        pi, rest = divmod(idx, n_r * n_c)
        ri, ci = divmod(rest, n_c)
        p, r, c = pop.principals[pi], pop.resources[ri], pop.contexts[ci]
        if last != (pi, ri):
            last = (pi, ri)
            text = json.dumps(_entities_for(p, r))
            oh, oe = old.handle(text)
            nh, ne = (oh, oe) if share else new.handle(text)
            handles = (oh, oe, nh, ne)
        pref = EntityRef(USER_TYPE, p.subject)
        slug = r.install.slug if r.install is not None else None
        before = old.decide(pref, action, r.ref, old.context_json(action, ci, c), handles[0], handles[1], slug)
        after = new.decide(pref, action, r.ref, new.context_json(action, ci, c), handles[2], handles[3], slug)
        count += 1
        if before.allowed != after.allowed:
            changes.append(Change(Cell(p.label, action, r.label, c.label), before, after))
    return count, truncated


def _test_entity_cells(new_engine: PolicyEngine, pops: list[ActionPopulation], old: _Side, new: _Side,
                       changes: list[Change]) -> int:
    _tests, entity_files, _problems = load_test_documents(new_engine.bundle)
    count = 0
    for name, doc in entity_files.items():
        text = json.dumps(doc)
        oh, oe = old.handle(text)
        nh, ne = new.handle(text)
        uids = [(str(i["uid"]["type"]), str(i["uid"]["id"])) for i in doc if isinstance(i, dict) and "uid" in i]
        slugs = {str(i["uid"]["id"]): i.get("attrs", {}).get("slug") for i in doc
                 if isinstance(i, dict) and i.get("uid", {}).get("type") == INSTALL_TYPE}
        users = [EntityRef(t, i) for t, i in uids if t == USER_TYPE]
        for pop in pops:
            rtypes = {r.ref.type for r in pop.resources}
            targets = [EntityRef(t, i) for t, i in uids if t in rtypes]
            if PLATFORM_TYPE in rtypes and not any(t.type == PLATFORM_TYPE for t in targets):
                targets.append(EntityRef(PLATFORM_TYPE, PLATFORM_ID))
            for user in users:
                for target in targets:
                    slug = slugs.get(target.id) if target.type == INSTALL_TYPE else None
                    for ci, c in enumerate(pop.contexts):
                        before = old.decide(user, pop.action, target, old.context_json(pop.action, ci, c), oh, oe,
                                            slug if isinstance(slug, str) else None)
                        after = new.decide(user, pop.action, target, new.context_json(pop.action, ci, c), nh, ne,
                                           slug if isinstance(slug, str) else None)
                        count += 1
                        if before.allowed != after.allowed:
                            changes.append(Change(Cell(f"{user.id} ({name})", pop.action, str(target), c.label),
                                                  before, after))
    return count


def build_populations(
    old: PolicyEngine, new: PolicyEngine, installs: Iterable[InstallFacts] | None = None
) -> tuple[list[ActionPopulation], list[str], bool]:
    """(populations of the actions to evaluate, actions left out, schema changed)."""
    old_schema, new_schema = _schema_text(old), _schema_text(new)
    schema_changed = old_schema != new_schema
    old_shape, new_shape = SchemaShape.from_text(old_schema), SchemaShape.from_text(new_schema)
    every_role: set[str] = set()
    for engine in (old, new):
        for p in engine.bundle.policies.values():
            every_role |= scan_policy(p.est).roles
    universe = role_universe((new_schema, old_schema), every_role)
    # Tokens carry only KNOWN_ROLES (entities.py drops any other), so only those are varied.
    universe = tuple(r for r in universe if r in KNOWN_ROLES)
    real = list(installs or [])
    pops: list[ActionPopulation] = []
    skipped: list[str] = []
    for action in dict.fromkeys([*new_shape.actions, *old_shape.actions]):
        rtypes = tuple(dict.fromkeys([*action_resource_types(new_shape, action),
                                      *action_resource_types(old_shape, action)]))
        before = _applicable(old, action, rtypes)
        after = _applicable(new, action, rtypes)
        same = sorted(_meaning(p.est) for p in before) == sorted(_meaning(p.est) for p in after)
        if same and not schema_changed:
            skipped.append(action)
            continue
        lit = Literals()
        for p in (*before, *after):
            lit.update(scan_policy(p.est))
        dims: dict[str, int] = {}
        resources = _resources(lit, rtypes, real, dims)
        real_tenants = sorted({r.install.tenant for r in resources if r.install is not None and "real" in r.label})
        principals = _principals(lit, universe, dims, real_tenants)
        attrs_t = _merge_ctype(old_shape.actions.get(action, ((), None))[1],
                               new_shape.actions.get(action, ((), None))[1])
        contexts = _contexts(action, dict(attrs_t[1]) if attrs_t[0] == "Record" else {}, lit, dims)
        pops.append(ActionPopulation(action, principals, resources, contexts, dims))
    return pops, skipped, schema_changed


def matrix_diff(
    old: PolicyEngine,
    new: PolicyEngine,
    *,
    installs: Iterable[InstallFacts] | None = None,
    cap: int = CELL_CAP,
    real_installs_note: str | None = None,
) -> MatrixDiff:
    """Policy changes, and every cell of the literal-derived population whose allow/deny differs.

    `installs`: real installs (e.g. from the registry) to decide as resources too; None
    when not available."""
    installs_list = list(installs) if installs is not None else None
    pops, skipped, schema_changed = build_populations(old, new, installs_list)
    old_side = _Side(old, SchemaShape.from_text(_schema_text(old)))
    new_side = _Side(new, SchemaShape.from_text(_schema_text(new)))
    share = not schema_changed
    changes: list[Change] = []
    truncated: list[dict[str, Any]] = []
    cells = 0
    actions_info: dict[str, Any] = {}
    for pop in pops:
        n, trunc = _evaluate(pop, old_side, new_side, share, cap, changes)
        cells += n
        actions_info[pop.action] = {"cells": n, "of": pop.size, "dimensions": pop.dimensions}
        if trunc:
            truncated.append(trunc)
    test_cells = _test_entity_cells(new, pops, old_side, new_side, changes)
    cells += test_cells
    population = {"actions": actions_info, "not_evaluated": skipped, "test_entity_cells": test_cells}
    note = real_installs_note or ("not requested" if installs_list is None else "from the registry")
    return MatrixDiff(
        old.revision, new.revision, cells, tuple(changes), tuple(policy_changes(old, new)), population,
        tuple(truncated), schema_changed, len(installs_list) if installs_list is not None else None, note,
    )


def load_real_installs(settings: Any) -> tuple[list[InstallFacts] | None, str]:
    """Best effort: every install in the service database `settings` points at, as InstallFacts
    (capabilities: the granted ones; enabled: enabled and status "enabled"). (None, why) when
    there is no database or it cannot be read."""
    try:
        if settings.is_embedded_database and not (settings.data_dir / "extgate.db").exists():
            return None, "no service database"
        from sqlmodel import select

        from service.db.database import create_database
        from service.db.models import Extension, Install
    except Exception as exc:  # noqa: BLE001 - best effort
        return None, f"service database not available ({type(exc).__name__})"
    db = None
    try:
        db = create_database(settings.effective_database_url)
        with db.session() as session:
            rows = session.exec(
                select(Install, Extension).join(Extension, Extension.id == Install.extension_id)  # type: ignore[arg-type]
            ).all()
            facts = [
                InstallFacts(i.tenant_id, i.id, e.id, e.slug, frozenset(i.granted_capabilities or ()),
                             bool(i.enabled and i.status == "enabled"))
                for i, e in rows
            ]
        return facts, "from the service database"
    except Exception as exc:  # noqa: BLE001 - best effort: the diff works without them
        return None, f"service database not readable ({type(exc).__name__})"
    finally:
        if db is not None:
            db.dispose()
