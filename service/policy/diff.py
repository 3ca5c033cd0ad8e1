"""Permission-matrix diff: who gains or loses which access between two bundles.

The matrix is every (principal, action, resource, circumstance) cell over
  * a generated population: tenants t1 and t2 plus the platform tenant, one user per
    role (and one without a role), installs that are enabled with and without
    cap:debug.logs and disabled; declared and undeclared endpoints for each method
    kind; debug sessions under and at the caps, with and without a justification;
    every admin action on each tenant and on the platform;
  * the users, installs and tenants of the new bundle's test entities.
Both bundles decide every cell; cells whose allow/deny differ are reported.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from service.auth.principal import KNOWN_ROLES, Principal
from service.authz import AdminAction
from service.policy.engine import EntitiesError, PolicyEngine, debug_context, invoke_context
from service.policy.model import (
    DEBUG_VIEW,
    INSTALL_TYPE,
    PLATFORM_ID,
    PLATFORM_TYPE,
    READ,
    TENANT_TYPE,
    USER_TYPE,
    WRITE,
    DebugCounts,
    Decision,
    EndpointMatch,
    EntityRef,
    InstallFacts,
)
from service.policy.testing import load_test_documents

JUSTIFICATION = "incident INC-0001: customer reports errors"
INVOKE_VARIANTS: tuple[tuple[str, bool], ...] = (
    ("GET", True),
    ("HEAD", True),
    ("GET", False),
    ("POST", True),
    ("DELETE", True),
    ("POST", False),
)
DEBUG_VARIANTS: tuple[tuple[str, DebugCounts, str], ...] = (
    ("under the caps", DebugCounts(0, 5, 0, 3), ""),
    ("under the caps, with a justification", DebugCounts(0, 5, 0, 3), JUSTIFICATION),
    ("tenant cap reached", DebugCounts(5, 5, 0, 3), JUSTIFICATION),
    ("stream cap reached", DebugCounts(0, 5, 3, 3), JUSTIFICATION),
)
ADMIN_ACTIONS = tuple(a.value for a in AdminAction)


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
class MatrixDiff:
    old_revision: str
    new_revision: str
    cells: int
    changes: tuple[Change, ...]

    @property
    def gained(self) -> list[Change]:
        return [c for c in self.changes if c.gained]

    @property
    def lost(self) -> list[Change]:
        return [c for c in self.changes if not c.gained]

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_revision": self.old_revision,
            "new_revision": self.new_revision,
            "cells": self.cells,
            "gained": len(self.gained),
            "lost": len(self.lost),
            "changes": [c.to_dict() for c in self.changes],
        }

    def render(self) -> str:
        lines = [
            f"permission matrix: {self.cells} cells, {len(self.gained)} gained, {len(self.lost)} lost",
            f"  old {self.old_revision}",
            f"  new {self.new_revision}",
        ]
        for title, items in (("GAINED (deny -> allow)", self.gained), ("LOST (allow -> deny)", self.lost)):
            if not items:
                continue
            lines.append(title)
            for ch in items:
                c = ch.cell
                via = ch.after.policy_ids if ch.gained else ch.before.policy_ids
                now = ", ".join(ch.after.policy_ids) or "default deny"
                lines.append(
                    f"  {c.who}  {c.action}  {c.what}  [{c.circumstance}]"
                    f"  was {', '.join(via) if not ch.gained else 'denied'}; now {now}"
                )
        return "\n".join(lines)


Decider = Callable[[PolicyEngine], Decision]


def _generated() -> Iterator[tuple[Cell, Decider]]:
    tenants = ("t1", "t2")
    role_sets: list[frozenset[str]] = [frozenset()] + [frozenset({r}) for r in sorted(KNOWN_ROLES)]
    principals = [
        Principal(subject=f"{'+'.join(sorted(rs)) or 'norole'}@{t}", tenant=t, roles=rs)
        for t in (*tenants, "platform")
        for rs in role_sets
    ]
    installs = []
    for t in tenants:
        installs.append(InstallFacts(t, f"{t}-debug", "ext", "pub.ext", frozenset({"cap:debug.logs"}), True))
        installs.append(InstallFacts(t, f"{t}-plain", "ext", "pub.ext", frozenset(), True))
        installs.append(InstallFacts(t, f"{t}-disabled", "ext", "pub.ext", frozenset({"cap:debug.logs"}), False))
    for p in principals:
        who = f"{'+'.join(sorted(p.roles)) or 'no role'} of {p.tenant}"
        for inst in installs:
            what = f"install {inst.install_id}"
            for method, declared in INVOKE_VARIANTS:
                circ = f"{method} {'declared' if declared else 'undeclared'} endpoint"
                action = READ if method in ("GET", "HEAD") else WRITE
                match = EndpointMatch(declared, "/items/:id" if declared else None)

                def invoke(
                    e: PolicyEngine,
                    p: Principal = p,
                    i: InstallFacts = inst,
                    m: str = method,
                    em: EndpointMatch = match,
                ) -> Decision:
                    return e.decide_invoke(p, i, m, em, path="/items/1")

                yield Cell(who, action, what, circ), invoke
            for circ, counts, just in DEBUG_VARIANTS:

                def debug(
                    e: PolicyEngine, p: Principal = p, i: InstallFacts = inst, c: DebugCounts = counts, j: str = just
                ) -> Decision:
                    return e.decide_debug_view(p, i, c, j)

                yield Cell(who, DEBUG_VIEW, what, circ), debug
        for action in ADMIN_ACTIONS:
            for tenant in (*tenants, None):
                what = f"tenant {tenant}" if tenant else "platform"

                def admin(e: PolicyEngine, p: Principal = p, a: str = action, t: str | None = tenant) -> Decision:
                    return e.decide_admin(p, a, tenant_id=t)

                yield Cell(who, action, what, "-"), admin


def _from_test_entities(new: PolicyEngine) -> Iterator[tuple[Cell, Decider]]:
    _tests, entity_files, _problems = load_test_documents(new.bundle)
    for name, doc in entity_files.items():
        text = json.dumps(doc)
        handles: dict[int, Any] = {}

        def entities_for(e: PolicyEngine, text: str = text, handles: dict[int, Any] = handles) -> Any:
            if id(e) not in handles:
                try:
                    handles[id(e)] = e.entities(text)
                except EntitiesError:
                    handles[id(e)] = None
            return handles[id(e)]

        uids = [EntityRef(i["uid"]["type"], i["uid"]["id"]) for i in doc]
        users = [u for u in uids if u.type == USER_TYPE]
        installs = [u for u in uids if u.type == INSTALL_TYPE]
        targets = [u for u in uids if u.type == TENANT_TYPE] + [EntityRef(PLATFORM_TYPE, PLATFORM_ID)]
        cases: list[tuple[EntityRef, str, EntityRef, str, dict[str, Any]]] = []
        for user in users:
            for inst in installs:
                for method, declared in INVOKE_VARIANTS:
                    ctx = invoke_context(method, EndpointMatch(declared, "/items/:id"), "/items/1")
                    circ = f"{method} {'declared' if declared else 'undeclared'} endpoint"
                    cases.append((user, READ if method in ("GET", "HEAD") else WRITE, inst, circ, ctx))
                for circ, counts, just in DEBUG_VARIANTS:
                    cases.append((user, DEBUG_VIEW, inst, circ, debug_context(counts, just)))
            for target in targets:
                for action in ADMIN_ACTIONS:
                    cases.append((user, action, target, "-", {}))
        for user, action, res, circ, ctx in cases:

            def decide(
                e: PolicyEngine, u: EntityRef = user, a: str = action, r: EntityRef = res, c: dict[str, Any] = ctx
            ) -> Decision:
                handle = entities_for(e)
                if handle is None:
                    return Decision(False, a, (), (), e.revision, ("test entities do not fit the schema",))
                return e.decide(u, a, r, c, handle)

            yield Cell(f"{user.id} ({name})", action, str(res), circ), decide


def matrix_diff(old: PolicyEngine, new: PolicyEngine) -> MatrixDiff:
    changes: list[Change] = []
    cells = 0
    for source in (_generated(), _from_test_entities(new)):
        for cell, decide in source:
            cells += 1
            before, after = decide(old), decide(new)
            if before.allowed != after.allowed:
                changes.append(Change(cell, before, after))
    return MatrixDiff(old.revision, new.revision, cells, tuple(changes))
