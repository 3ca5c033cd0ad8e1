"""Explanations: why a request was allowed or denied, and for a deny, "why not".

For a deny that no `forbid` determined, each `permit` that could apply to the action
is split into probes: its principal scope, its resource scope, and every top-level
`&&` part of each `when` (an `unless` is one probe). All probes run in one Cedar call
on the same request and entities; a probe that is not satisfied names the condition
that failed. Permits are listed closest first (fewest failed conditions).
Explanations reveal policy structure: serve them to policy readers only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import cedarpy

from service.debug.config import DebugSessionSettings
from service.policy import cedar_call
from service.policy.bundle import applies
from service.policy.engine import PolicyEngine, time_context
from service.policy.model import ACTION_TYPE, Decision, EntityRef, PolicyInfo

_ALL = {"op": "All"}
_ERROR_ID_RE = re.compile(r"policy `([^`]+)`")
_WHEN_RE = re.compile(r"\)\s*(?:when|unless)\s*\{(.*)\}\s*;?\s*$", re.S)


@dataclass(frozen=True)
class Check:
    kind: str  # "principal scope" | "resource scope" | "when" | "unless"
    text: str
    status: str  # "satisfied" | "not satisfied" | "error"
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "condition": self.text, "status": self.status, "error": self.error}


@dataclass(frozen=True)
class Candidate:
    policy: PolicyInfo
    checks: tuple[Check, ...]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status != "satisfied"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy_id": self.policy.id,
            "reason": self.policy.reason,
            "location": self.policy.location,
            "failed": [c.to_dict() for c in self.failed],
            "satisfied": [c.to_dict() for c in self.checks if c.status == "satisfied"],
        }


@dataclass(frozen=True)
class Explanation:
    decision: Decision
    principal: EntityRef
    action: str
    resource: EntityRef
    context: dict[str, Any]
    determining: tuple[PolicyInfo, ...]
    candidates: tuple[Candidate, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "request": {
                "principal": str(self.principal),
                "action": self.action,
                "resource": str(self.resource),
                "context": self.context,
            },
            **self.decision.to_dict(),
            "determining": [
                {"policy_id": p.id, "effect": p.effect, "reason": p.reason, "location": p.location}
                for p in self.determining
            ],
            "why_not": [c.to_dict() for c in self.candidates],
        }

    def render(self) -> str:
        d = self.decision
        lines = [
            f"{'ALLOW' if d.allowed else 'DENY'}  {self.principal} {self.action} {self.resource}",
            f"revision {d.revision}",
        ]
        for p in self.determining:
            lines.append(f"  {p.effect} {p.id} ({p.location}): {p.reason}")
        for err in d.errors:
            lines.append(f"  error: {err}")
        if not d.allowed and not self.determining and not d.errors:
            lines.append("  no policy permits this request (default deny)")
        if self.candidates:
            lines.append("why not — permits that could apply, closest first:")
            for cand in self.candidates:
                p = cand.policy
                lines.append(f"  {p.id} ({p.location}): {p.reason}")
                for check in cand.failed:
                    suffix = f" [{check.error}]" if check.error else ""
                    lines.append(f"    {check.status}: {check.kind} {check.text}{suffix}")
        return "\n".join(lines)


def _scope_text(var: str, scope: dict[str, Any]) -> str:
    def uid(e: dict[str, Any]) -> str:
        return str(EntityRef(str(e.get("type")), str(e.get("id"))))

    op = scope.get("op")
    if op == "is":
        tail = f" in {uid(scope['in']['entity'])}" if "in" in scope and "entity" in scope["in"] else ""
        return f"{var} is {scope.get('entity_type')}{tail}"
    if "entity" in scope:
        return f"{var} {op} {uid(scope['entity'])}"
    if "entities" in scope:
        return f"{var} {op} [{', '.join(uid(e) for e in scope['entities'])}]"
    return f"{var} {op} ?"


def _conjuncts(body: dict[str, Any]) -> list[dict[str, Any]]:
    if set(body) == {"&&"}:
        return _conjuncts(body["&&"]["left"]) + _conjuncts(body["&&"]["right"])
    return [body]


def _render_condition(kind: str, body: dict[str, Any]) -> str:
    policy = {
        "effect": "permit",
        "principal": _ALL,
        "action": _ALL,
        "resource": _ALL,
        "conditions": [{"kind": kind, "body": body}],
    }
    doc = {"staticPolicies": {"p": policy}, "templates": {}, "templateLinks": []}
    text = cedarpy.policies_from_json_str(json.dumps(doc))
    match = _WHEN_RE.search(text)
    return " ".join((match.group(1) if match else text).split())


def _probes(policy: PolicyInfo) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(probe id, kind, text, probe EST) for each part of a permit."""
    est = policy.est
    out: list[tuple[str, str, str, dict[str, Any]]] = []
    base = {"effect": "permit", "principal": _ALL, "action": _ALL, "resource": _ALL, "conditions": []}
    for var in ("principal", "resource"):
        scope = est.get(var, _ALL)
        if scope.get("op") != "All":
            out.append((f"{policy.id}#{var}", f"{var} scope", _scope_text(var, scope), {**base, var: scope}))
    for ci, cond in enumerate(est.get("conditions", [])):
        kind = cond["kind"]
        parts = _conjuncts(cond["body"]) if kind == "when" else [cond["body"]]
        for pi, part in enumerate(parts):
            probe = {**base, "conditions": [{"kind": kind, "body": part}]}
            out.append((f"{policy.id}#{ci}.{pi}", kind, _render_condition(kind, part), probe))
    return out


def explain(
    engine: PolicyEngine,
    principal: EntityRef,
    action: str,
    resource: EntityRef,
    context: dict[str, Any],
    entities: cedarpy.Entities,
) -> Explanation:
    decision = engine.decide(principal, action, resource, context, entities)
    policies = engine.bundle.policies
    determining = tuple(policies[p] for p in decision.policy_ids if p in policies)
    if decision.allowed or any(p.effect == "forbid" for p in determining):
        return Explanation(decision, principal, action, resource, context, determining)
    who = (principal.type, principal.id)
    permits = [
        p for p in policies.values() if p.effect == "permit" and applies(p.est, action, resource.type, resource.id, who)
    ]
    probes = {pid: (policy, kind, text, est) for policy in permits for pid, kind, text, est in _probes(policy)}
    satisfied: set[str] = set()
    errors: dict[str, str] = {}
    if probes:
        doc = {"staticPolicies": {pid: v[3] for pid, v in probes.items()}, "templates": {}, "templateLinks": []}
        raw = cedar_call.authorize(
            {
                "principal": principal.to_json(),
                "action": {"type": ACTION_TYPE, "id": action},
                "resource": resource.to_json(),
                "context": json.dumps(context),
            },
            cedarpy.PolicySet.from_json_str(json.dumps(doc)),
            entities,
            engine.bundle.schema,
        )
        satisfied = set(raw.reasons)
        for err in raw.errors:
            match = _ERROR_ID_RE.search(err)
            if match:
                errors[match.group(1)] = err.split(": ", 1)[-1]
    candidates = []
    for policy in permits:
        checks = []
        for pid, (owner, kind, text, _est) in probes.items():
            if owner is not policy:
                continue
            if pid in errors:
                checks.append(Check(kind, text, "error", errors[pid]))
            else:
                checks.append(Check(kind, text, "satisfied" if pid in satisfied else "not satisfied"))
        candidates.append(Candidate(policy, tuple(checks)))
    candidates.sort(key=lambda c: (len(c.failed), c.policy.id))
    return Explanation(decision, principal, action, resource, context, determining, tuple(candidates))


# The limits a debug session is decided with when the caller gives none: the service's defaults.
_DEBUG_DEFAULTS = DebugSessionSettings.model_construct()


def default_context(action: str, *, now: datetime | None = None) -> dict[str, Any]:
    """A complete context for `action`, so a person asking only states what differs.

    `time` is `now` (default: the current time), as the gateway would decide it."""
    if action in ("read", "write"):
        method = "GET" if action == "read" else "POST"
        return {"method": method, "path": "/", "endpointDeclared": True, "endpointTemplate": "/",
                "time": time_context(now)}
    if action == "debug.view":
        return {
            "tenantSessions": 0,
            "tenantSessionLimit": _DEBUG_DEFAULTS.max_sessions_per_tenant,
            "streamSessions": 0,
            "streamSessionLimit": _DEBUG_DEFAULTS.max_viewers_per_stream,
            "justification": "",
            "justificationLength": 0,
            "time": time_context(now),
        }
    return {}


def _given_time(value: str) -> dict[str, Any]:
    """`"time": "2026-12-05T10:00:00Z"` stands for the whole record at that instant."""
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"context time {value!r} is not an ISO 8601 date and time") from None
    return time_context(at)


def explain_request(
    engine: PolicyEngine,
    principal: Any,
    action: Any,
    resource: Any,
    context: dict[str, Any] | None = None,
    entities: list[dict[str, Any]] | None = None,
) -> Explanation:
    """Explain a request given as people type it (`acme-viewer`, `read`, `acme-crm`).

    Missing context keys get defaults (`time`: now; a `time` given as an ISO 8601 string,
    e.g. "2026-12-05T10:00:00Z", stands for the whole record at that instant); without
    `entities`, every entities file of the bundle's tests is used. Raises ValueError
    (UidError, EntitiesError) on bad input.
    """
    from service.policy.testing import load_test_documents
    from service.policy.uids import parse_action, parse_uid

    p = parse_uid(principal, default_type="User")
    a = parse_action(action)
    r = parse_uid(resource, default_type="Install")
    given = context or {}
    ctx = {**default_context(a), **given}
    if isinstance(given.get("time"), str) and "time" in ctx:
        ctx["time"] = _given_time(given["time"])
    if "justification" in given and "justificationLength" not in given:
        ctx["justificationLength"] = len(str(given["justification"]))
    if entities is None:
        _tests, files, _problems = load_test_documents(engine.bundle)
        entities = [e for doc in files.values() for e in doc]
    return explain(engine, p, a, r, ctx, engine.entities(entities))
