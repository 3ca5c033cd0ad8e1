"""The population `extgate policy diff` decides: literal extraction and value domains.

Two parts:

* `SchemaShape`: a small reader of the Cedar schema text (`.cedarschema`) for what the
  diff needs: the actions, their resource types and context records (through `type`
  declarations), and the names of an enumerated `Role` entity type.
* `scan_policy` / `Literals`: a walk over each policy's EST (Cedar JSON policy format)
  that collects the attributes a policy references (`principal.tenant`,
  `context.time.hour`, ...), the roles, users, tenants and installs it names, and every
  literal, associated with the attribute it is compared against where the expression
  makes that clear (`resource.slug == "x"`, `["GET"].contains(context.method)`,
  `resource.capabilities.contains("cap:x")`, `context.path like "/a/*"`,
  `context.n >= 10`), else kept unassociated (offered to every attribute of its type).

From these, `domain_*` functions give the values one attribute takes in the population.
An attribute that no policy applying to an action references is held at one default
value: it cannot change a decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import combinations
from typing import Any

from service.auth.principal import KNOWN_ROLES
from service.policy.bundle import applies
from service.policy.model import (
    ACTION_TYPE,
    DEBUG_VIEW,
    INSTALL_TYPE,
    NAMESPACE,
    PLATFORM_TYPE,
    READ,
    ROLE_TYPE,
    TENANT_TYPE,
    USER_TYPE,
    WRITE,
)

# --------------------------------------------------------------------------------------
# Schema shape
# --------------------------------------------------------------------------------------

#: A type as the diff sees it: ("Long",) ("String",) ("Bool",) ("Ext", "datetime"),
#: ("Set", elem) ("Record", {name: (type, optional)}) ("Entity", "Ns::Name") ("Unknown", name)
CType = tuple[Any, ...]

_TOKEN = re.compile(r'\s+|//[^\n]*|"(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*|.')
_PRIMITIVES = {"Long": ("Long",), "String": ("String",), "Bool": ("Bool",), "Boolean": ("Bool",)}
_EXTENSIONS = {"datetime", "duration", "decimal", "ipaddr"}
_ENUM_ROLE = re.compile(r"entity\s+Role\s+enum\s*\[([^\]]*)\]")


def _tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text) if t.strip() and not t.startswith("//")]


def _unquote(tok: str) -> str:
    return tok[1:-1].encode().decode("unicode_escape") if tok.startswith('"') else tok


class _SchemaParser:
    """Recursive descent over the Cedar schema syntax; tolerant (skips what it does not need)."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.types: dict[str, Any] = {}  # name -> raw type (resolved lazily)
        self.actions: dict[str, tuple[list[str], Any]] = {}
        self.enums: dict[str, list[str]] = {}

    def peek(self) -> str:
        return self.toks[self.i] if self.i < len(self.toks) else ""

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if expected is not None and tok != expected:
            raise ValueError(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return tok

    def annotations(self) -> None:
        while self.peek() == "@":
            self.take("@")
            self.take()
            if self.peek() == "(":
                self.take("(")
                self.take()
                self.take(")")

    def parse(self) -> None:
        while self.i < len(self.toks):
            self.annotations()
            if self.peek() == "namespace":
                self.take()
                self.take()
                self.take("{")
                while self.peek() not in ("}", ""):
                    self.decl()
                self.take("}")
            else:
                self.decl()

    def names(self) -> list[str]:
        out = [_unquote(self.take())]
        while self.peek() == ",":
            self.take(",")
            out.append(_unquote(self.take()))
        return out

    def decl(self) -> None:
        self.annotations()
        kw = self.take()
        if kw == "type":
            name = self.take()
            self.take("=")
            self.types[name.split("::")[-1]] = self.type_()
            self.take(";")
        elif kw == "entity":
            names = self.names()
            if self.peek() == "enum":
                self.take()
                self.take("[")
                values = []
                while self.peek() != "]":
                    tok = self.take()
                    if tok != ",":
                        values.append(_unquote(tok))
                self.take("]")
                for n in names:
                    self.enums[n] = values
            self.skip_to_semicolon()
        elif kw == "action":
            names = self.names()
            resources: list[str] = []
            context: Any = ("Record", {})
            while self.peek() not in (";", ""):
                tok = self.take()
                if tok == "appliesTo":
                    self.take("{")
                    while self.peek() not in ("}", ""):
                        key = self.take()
                        if key == ",":
                            continue
                        self.take(":")
                        if key == "context":
                            context = self.type_()
                        else:
                            refs = self.entity_list()
                            if key == "resource":
                                resources = refs
                    self.take("}")
                elif tok == "in":
                    self.entity_list()
            self.take(";")
            for n in names:
                self.actions[n] = (resources, context)
        else:
            self.skip_to_semicolon()

    def skip_to_semicolon(self) -> None:
        depth = 0
        while self.peek():
            tok = self.take()
            if tok in "{[<(":
                depth += 1
            elif tok in "}]>)":
                depth -= 1
            elif tok == ";" and depth <= 0:
                return

    def entity_list(self) -> list[str]:
        if self.peek() == "[":
            self.take("[")
            out = []
            while self.peek() != "]":
                tok = self.take()
                if tok != ",":
                    out.append(_unquote(tok))
            self.take("]")
            return out
        return [_unquote(self.take())]

    def type_(self) -> Any:
        tok = self.peek()
        if tok == "{":
            self.take("{")
            attrs: dict[str, tuple[Any, bool]] = {}
            while self.peek() not in ("}", ""):
                self.annotations()
                if self.peek() == ",":
                    self.take(",")
                    continue
                name = _unquote(self.take())
                optional = False
                if self.peek() == "?":
                    self.take("?")
                    optional = True
                self.take(":")
                attrs[name] = (self.type_(), optional)
            self.take("}")
            return ("Record", attrs)
        name = self.take()
        if name == "Set":
            self.take("<")
            elem = self.type_()
            self.take(">")
            return ("Set", elem)
        return ("Name", name)


@dataclass
class SchemaShape:
    """What the diff reads from a schema: actions (resource types, context type) and role names."""

    actions: dict[str, tuple[tuple[str, ...], CType]] = field(default_factory=dict)
    role_enum: tuple[str, ...] | None = None
    parsed: bool = True

    @classmethod
    def from_text(cls, text: str, namespace: str = NAMESPACE) -> SchemaShape:
        enum_match = _ENUM_ROLE.search(text)
        role_enum = tuple(re.findall(r'"((?:[^"\\]|\\.)*)"', enum_match.group(1))) if enum_match else None
        parser = _SchemaParser(text)
        try:
            parser.parse()
        except (ValueError, IndexError):
            return cls(dict(_FALLBACK_ACTIONS), role_enum, parsed=False)
        entity_names: set[str] = set()

        def resolve(raw: Any, depth: int = 0) -> CType:
            if raw[0] == "Record":
                return ("Record", {k: (resolve(t, depth + 1), opt) for k, (t, opt) in raw[1].items()})
            if raw[0] == "Set":
                return ("Set", resolve(raw[1], depth + 1))
            name = str(raw[1]).removeprefix("__cedar::")
            short = name.split("::")[-1]
            if name in _PRIMITIVES:
                return _PRIMITIVES[name]
            if name in _EXTENSIONS:
                return ("Ext", name)
            if short in parser.types and depth < 20 and short not in entity_names:
                return resolve(parser.types[short], depth + 1)
            return ("Entity", name if "::" in name else f"{namespace}::{name}")

        actions = {
            name: (tuple(r if "::" in r else f"{namespace}::{r}" for r in res), resolve(ctx))
            for name, (res, ctx) in parser.actions.items()
        }
        if not actions:
            return cls(dict(_FALLBACK_ACTIONS), role_enum, parsed=False)
        return cls(actions, role_enum)

    def context_attrs(self, action: str) -> dict[str, tuple[CType, bool]]:
        ctx = self.actions.get(action, ((), ("Record", {})))[1]
        return dict(ctx[1]) if ctx[0] == "Record" else {}


_INVOKE_CTX: CType = ("Record", {
    "method": (("String",), False), "path": (("String",), False),
    "endpointDeclared": (("Bool",), False), "endpointTemplate": (("String",), False),
})
_DEBUG_CTX: CType = ("Record", {
    "tenantSessions": (("Long",), False), "tenantSessionLimit": (("Long",), False),
    "streamSessions": (("Long",), False), "streamSessionLimit": (("Long",), False),
    "justification": (("String",), False), "justificationLength": (("Long",), False),
})
_ADMIN_ACTIONS = ("extension.publish", "extension.read", "install.read", "install.manage", "install.config.write",
                  "install.secrets.write", "audit.read", "audit.export", "policy.read", "policy.manage")
#: Used when the schema text cannot be read (the shipped shape).
_FALLBACK_ACTIONS: dict[str, tuple[tuple[str, ...], CType]] = {
    READ: ((INSTALL_TYPE,), _INVOKE_CTX),
    WRITE: ((INSTALL_TYPE,), _INVOKE_CTX),
    DEBUG_VIEW: ((INSTALL_TYPE,), _DEBUG_CTX),
    **{a: ((TENANT_TYPE, PLATFORM_TYPE), ("Record", {})) for a in _ADMIN_ACTIONS},
}


# --------------------------------------------------------------------------------------
# Literal extraction from the EST
# --------------------------------------------------------------------------------------

_BINARY_CMP = ("==", "!=", "<", "<=", ">", ">=")
_ORDER = ("<", "<=", ">", ">=")
_KNOWN_KEYS = {"Value", "Var", "Slot", "Unknown", "!", "neg", "==", "!=", "in", "<", "<=", ">", ">=", "&&", "||",
               "+", "-", "*", "contains", "containsAll", "containsAny", "isEmpty", "getTag", "hasTag", ".", "has",
               "like", "is", "if-then-else", "Set", "Record"}


@dataclass(frozen=True)
class ExtLit:
    """An extension-function literal: datetime("..."), duration("..."), decimal, ip."""

    fn: str
    arg: str


@dataclass
class Literals:
    """What one or more policies reference and mention."""

    paths: set[str] = field(default_factory=set)  # "principal.tenant", "context.time.hour", ...
    assoc: dict[str, set[Any]] = field(default_factory=dict)  # path -> literal values compared with it
    numeric: dict[str, set[int]] = field(default_factory=dict)  # path -> ints compared by order (n-1, n, n+1)
    patterns: dict[str, list[list[Any]]] = field(default_factory=dict)  # path -> like patterns
    links: set[frozenset[str]] = field(default_factory=set)  # paths compared with each other
    strings: set[str] = field(default_factory=set)  # unassociated string literals
    ints: set[int] = field(default_factory=set)  # unassociated numbers
    exts: set[ExtLit] = field(default_factory=set)  # every extension literal (datetime, duration)
    roles: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    tenants: set[str] = field(default_factory=set)
    resources: set[tuple[str, str]] = field(default_factory=set)  # (type, id) named as resource
    whole: set[str] = field(default_factory=set)  # vars used as a whole record (principal/resource/context)

    def update(self, other: Literals) -> None:
        for name in ("paths", "links", "strings", "ints", "exts", "roles", "users", "tenants", "resources", "whole"):
            getattr(self, name).update(getattr(other, name))
        for name in ("assoc", "numeric"):
            mine, theirs = getattr(self, name), getattr(other, name)
            for k, v in theirs.items():
                mine.setdefault(k, set()).update(v)
        for k, pats in other.patterns.items():
            self.patterns.setdefault(k, []).extend(p for p in pats if p not in self.patterns.get(k, []))

    def refs(self, path: str) -> bool:
        """Whether `path` (or anything below it, or its whole variable) is referenced."""
        root = path.split(".", 1)[0]
        return (root == "context" and "context" in self.whole) or any(
            p == path or p.startswith(path + ".") for p in self.paths)


def _path(expr: Any) -> str | None:
    """"context.time.hour" for an attribute access chain on a variable; None otherwise."""
    if not isinstance(expr, dict):
        return None
    if "Var" in expr:
        return str(expr["Var"])
    if "." in expr and isinstance(expr["."], dict):
        base = _path(expr["."].get("left"))
        return f"{base}.{expr['.'].get('attr')}" if base else None
    for key, args in expr.items():  # a method call on an attribute: toTime, toDate, offset, ...
        if key not in _KNOWN_KEYS and isinstance(args, list) and args:
            return _path(args[0])
    return None


def _literal(expr: Any) -> Any:
    """The literal value of `expr` (str, int, bool, entity (type, id), ExtLit, frozenset), or None."""
    if not isinstance(expr, dict):
        return None
    if "Value" in expr:
        v = expr["Value"]
        if isinstance(v, dict) and "__entity" in v:
            return ("entity", v["__entity"].get("type"), v["__entity"].get("id"))
        if isinstance(v, dict) and "__extn" in v:
            return ExtLit(str(v["__extn"].get("fn")), str(v["__extn"].get("arg")))
        if isinstance(v, list):
            return None
        return v
    for fn in ("datetime", "duration", "decimal", "ip"):
        args = expr.get(fn)
        if isinstance(args, list) and len(args) == 1 and isinstance(args[0], dict) and "Value" in args[0]:
            return ExtLit(fn, str(args[0]["Value"]))
    return None


def _set_elements(expr: Any) -> list[Any] | None:
    if isinstance(expr, dict) and isinstance(expr.get("Set"), list):
        return [_literal(e) for e in expr["Set"]]
    if isinstance(expr, dict) and isinstance(expr.get("Value"), list):
        return [_literal({"Value": v}) for v in expr["Value"]]
    return None


class _Scanner:
    def __init__(self) -> None:
        self.lit = Literals()

    def note_literal(self, value: Any) -> None:
        lit = self.lit
        if isinstance(value, tuple) and value and value[0] == "entity":
            _, etype, eid = value
            if etype == ROLE_TYPE:
                lit.roles.add(str(eid))
            elif etype == USER_TYPE:
                lit.users.add(str(eid))
            elif etype == TENANT_TYPE:
                lit.tenants.add(str(eid))
            elif etype in (INSTALL_TYPE, PLATFORM_TYPE):
                lit.resources.add((str(etype), str(eid)))
        elif isinstance(value, ExtLit):
            lit.exts.add(value)
        elif isinstance(value, bool) or value is None:
            return
        elif isinstance(value, int):
            lit.ints.add(value)
        elif isinstance(value, str):
            lit.strings.add(value)

    def associate(self, path: str, value: Any, ordered: bool = False) -> None:
        self.note_literal(value)
        if value is None:
            return
        if ordered and isinstance(value, int) and not isinstance(value, bool):
            self.lit.numeric.setdefault(path, set()).add(value)
        self.lit.assoc.setdefault(path, set()).add(value)

    def walk(self, expr: Any) -> None:  # noqa: C901 - one branch per EST operator
        if isinstance(expr, list):
            for e in expr:
                self.walk(e)
            return
        if not isinstance(expr, dict):
            return
        lit = self.lit
        if "Var" in expr:
            lit.whole.add(str(expr["Var"]))
            return
        if "." in expr or "has" in expr:
            key = "." if "." in expr else "has"
            base = _path(expr[key].get("left"))
            if base:
                lit.paths.add(f"{base}.{expr[key].get('attr')}")
            else:
                self.walk(expr[key].get("left"))
            return
        if "Value" in expr:
            v = expr["Value"]
            if isinstance(v, list):
                for item in v:
                    self.note_literal(_literal({"Value": item}))
            else:
                self.note_literal(_literal(expr))
            return
        if "like" in expr:
            body = expr["like"]
            p = _path(body.get("left"))
            if p:
                lit.paths.add(p)
                pats = lit.patterns.setdefault(p, [])
                if body.get("pattern") not in pats:
                    pats.append(body.get("pattern"))
            else:
                self.walk(body.get("left"))
            return
        for op in _BINARY_CMP + ("in",):
            if op in expr:
                self.comparison(op, expr[op].get("left"), expr[op].get("right"))
                return
        for op in ("contains", "containsAll", "containsAny"):
            if op in expr:
                left, right = expr[op].get("left"), expr[op].get("right")
                lp, rp = _path(left), _path(right)
                lset, rset = _set_elements(left), _set_elements(right)
                if op == "contains" and lp and rp is None and _literal(right) is not None:
                    lit.paths.add(lp)
                    self.associate(lp, _literal(right))
                elif op == "contains" and rp and lset is not None:
                    lit.paths.add(rp)
                    for v in lset:
                        self.associate(rp, v)
                elif lp and rset is not None:
                    lit.paths.add(lp)
                    for v in rset:
                        self.associate(lp, v)
                elif rp and lset is not None:
                    lit.paths.add(rp)
                    for v in lset:
                        self.associate(rp, v)
                else:
                    self.walk(left)
                    self.walk(right)
                return
        for key, value in expr.items():
            if key == "Set":
                for e in value:
                    self.walk(e)
            elif key == "Record" or isinstance(value, dict):
                self.walk(list(value.values()))
            else:
                self.walk(value)

    def comparison(self, op: str, left: Any, right: Any) -> None:
        lp, rp = _path(left), _path(right)
        llit, rlit = _literal(left), _literal(right)
        ordered = op in _ORDER
        if op == "in":
            # `principal in Role::"x"` / `principal in [Role::"a", ...]`: the role names.
            elements = _set_elements(right)
            for v in (elements if elements is not None else [rlit]):
                self.note_literal(v)
            if lp and lp not in ("principal", "resource"):
                self.lit.paths.add(lp)
            if elements is None and rlit is None:
                self.walk(right)
            if lp is None:
                self.walk(left)
            return
        if lp and rp:
            for p in (lp, rp):
                if "." in p:
                    self.lit.paths.add(p)
            if "." in lp:  # also principal.tenant == resource
                self.lit.links.add(frozenset((lp, rp)))
            elif "." in rp:
                self.lit.links.add(frozenset((rp, lp)))
            return
        for side, v, other in ((lp, rlit, right), (rp, llit, left)):
            if side:
                if "." in side:
                    self.lit.paths.add(side)
                if v is not None:
                    self.associate(side, v, ordered)
                else:
                    self.walk(other)
                return
        self.walk(left)
        self.walk(right)


def scan_policy(est: dict[str, Any]) -> Literals:
    """Everything one policy references and mentions (scope and conditions)."""
    scanner = _Scanner()
    for var in ("principal", "resource"):
        scope = est.get(var, {})
        ent = scope.get("entity")
        if isinstance(ent, dict):
            scanner.note_literal(("entity", ent.get("type"), ent.get("id")))
            if scope.get("op") == "==" and ent.get("type") == TENANT_TYPE and var == "resource":
                scanner.lit.resources.add((TENANT_TYPE, str(ent.get("id"))))
    for cond in est.get("conditions") or []:
        scanner.walk(cond.get("body"))
    return scanner.lit


def context_attributes_read(policies: Iterable[dict[str, Any]]) -> frozenset[str] | None:
    """The top-level context attributes the policies (ESTs) read, or None when some policy
    uses `context` as a whole (then every attribute may matter). An attribute no policy
    reads cannot change a decision: the engine's decision memo and replay leave it out."""
    found = Literals()
    for est in policies:
        found.update(scan_policy(est))
    if "context" in found.whole:
        return None
    return frozenset(p.split(".")[1] for p in found.paths if p.startswith("context."))


def action_resource_types(shape: SchemaShape, action: str) -> tuple[str, ...]:
    found = shape.actions.get(action)
    return found[0] if found else (INSTALL_TYPE, TENANT_TYPE, PLATFORM_TYPE)


def policy_applies_to_action(est: dict[str, Any], action: str, resource_types: Iterable[str]) -> bool:
    """Whether the policy's scope can match some request for `action` (bundle.applies,
    with the ids the policy itself names, so `resource == X` / `principal == U` count)."""
    res, prin = est.get("resource", {}), est.get("principal", {})
    rid = res["entity"].get("id") if res.get("op") == "==" and isinstance(res.get("entity"), dict) else None
    pr = ((prin["entity"].get("type"), prin["entity"].get("id"))
          if prin.get("op") == "==" and isinstance(prin.get("entity"), dict) else None)
    types = list(resource_types)
    if res.get("op") == "==" and isinstance(res.get("entity"), dict):
        types = [t for t in types if t == res["entity"].get("type")]
    return any(applies(est, action, rt, rid, pr) for rt in types)


# --------------------------------------------------------------------------------------
# Value domains
# --------------------------------------------------------------------------------------

ROLE_SET_LIMIT = 64
DEFAULT_TENANTS = ("t1", "t2")
DEFAULT_DATETIME = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)  # a Friday, 10:00 UTC


def role_universe(schema_texts: Iterable[str], policy_roles: Iterable[str]) -> tuple[str, ...]:
    """Role names: the schema's `entity Role enum [...]` when it declares one, else the
    service's KNOWN_ROLES plus every role a policy names."""
    for text in schema_texts:
        m = _ENUM_ROLE.search(text)
        if m:
            return tuple(sorted(set(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))) | set(policy_roles)))
    return tuple(sorted(set(KNOWN_ROLES) | set(policy_roles)))


def role_sets(roles: Iterable[str]) -> list[frozenset[str]]:
    """Every subset when there are at most 64; else every set of at most 2 roles plus all roles."""
    names = sorted(set(roles))
    if 2 ** len(names) <= ROLE_SET_LIMIT:
        return [frozenset(c) for k in range(len(names) + 1) for c in combinations(names, k)]
    sets = [frozenset(c) for k in range(3) for c in combinations(names, k)]
    return [*sets, frozenset(names)]


def like_regex(pattern: list[Any]) -> re.Pattern[str]:
    parts = [".*" if el == "Wildcard" else re.escape(str(el.get("Literal", ""))) for el in pattern]
    return re.compile("".join(parts), re.DOTALL)


def like_samples(pattern: list[Any]) -> list[str]:
    """A string that matches the Cedar `like` pattern (wildcards empty, and filled), and one that does not."""
    empty = "".join("" if el == "Wildcard" else str(el.get("Literal", "")) for el in pattern)
    filled = "".join("x" if el == "Wildcard" else str(el.get("Literal", "")) for el in pattern)
    rx = like_regex(pattern)
    out = [empty, filled]
    for candidate in ("", "~", "~" + empty, empty + "~", empty[:-1], empty[1:], "zzz-unmatched"):
        if not rx.fullmatch(candidate):
            out.append(candidate)
            break
    return list(dict.fromkeys(out))


def numeric_values(values: Iterable[int], spread: int = 1) -> set[int]:
    out: set[int] = set()
    for n in values:
        out.update(range(n - spread, n + spread + 1))
    return out


def string_domain(lit: Literals, path: str, default: str) -> list[str]:
    """`default`, the literals compared with `path`, `like` samples and the unassociated strings."""
    values = [default]
    values += sorted(v for v in lit.assoc.get(path, ()) if isinstance(v, str))
    for pat in lit.patterns.get(path, []):
        values += like_samples(pat)
    values += sorted(_unassociated_strings(lit))
    # A value equal to none of the literals: `unless { x == "lit" }` and `x != "lit"` hold for it
    # (the default may itself be one of the literals).
    fresh, n = f"{default}.other", 0
    while fresh in values:
        n += 1
        fresh = f"{default}.other{n}"
    values.append(fresh)
    return list(dict.fromkeys(values))


def _unassociated_strings(lit: Literals) -> set[str]:
    used = {v for vs in lit.assoc.values() for v in vs if isinstance(v, str)}
    return {s for s in lit.strings if s not in used}


def numeric_domain(lit: Literals, path: str, default: int) -> list[int]:
    """For a Long attribute: n-1, n, n+1 for the literals it is compared with (else its
    default); when it is also compared with another attribute, 0 and 1 and n-2..n+2, so
    that every order of the two (less, equal, greater) appears on each side of a literal."""
    group = _group(lit, path)
    linked = len(group) > 1
    literals: set[int] = set()
    for p in group:
        literals.update(v for v in lit.assoc.get(p, ()) if isinstance(v, int) and not isinstance(v, bool))
    literals.update(_unassociated_ints(lit))
    values = numeric_values(literals, 2 if linked else 1)
    if linked:
        values |= {0, 1}
    elif not values:
        values = {default}
    return sorted(values)


def _unassociated_ints(lit: Literals) -> set[int]:
    used = {v for vs in lit.assoc.values() for v in vs if isinstance(v, int) and not isinstance(v, bool)}
    return {n for n in lit.ints if n not in used}


def _group(lit: Literals, path: str) -> set[str]:
    seen, todo = {path}, [path]
    while todo:
        p = todo.pop()
        for link in lit.links:
            if p in link:
                for q in link - seen:
                    seen.add(q)
                    todo.append(q)
    return seen


def set_domain(lit: Literals, path: str, default: frozenset[str] = frozenset()) -> list[frozenset[str]]:
    """Subsets of the strings `path` is tested for (plus unassociated strings): all subsets of
    up to 4 elements, else the empty set, each single element, all, and all but one."""
    elements = sorted({v for v in lit.assoc.get(path, ()) if isinstance(v, str)} | _unassociated_strings(lit))
    if len(elements) <= 4:
        sets = [frozenset(c) for k in range(len(elements) + 1) for c in combinations(elements, k)]
    else:
        every = frozenset(elements)
        sets = [frozenset(), *(frozenset({e}) for e in elements), every, *(every - {e} for e in elements)]
    return list(dict.fromkeys([default, *sets]))


def _parse_duration(text: str) -> timedelta | None:
    units = {"d": 86400_000, "h": 3600_000, "m": 60_000, "s": 1000, "ms": 1}
    parts = re.findall(r"(-?\d+)(ms|d|h|m|s)", text)
    if not parts:
        return None
    return timedelta(milliseconds=sum(int(n) * units[u] for n, u in parts))


def _parse_datetime(text: str) -> datetime | None:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    except ValueError:
        return None


def datetime_domain(lit: Literals, prefix: str = "context.time") -> list[datetime]:
    """Instants for the `time` record: the default; one at every literal-derived hour and
    weekday (hour x weekday when both are referenced); datetime literals and one second
    either side; durations (as times of day) and one second either side."""
    base = DEFAULT_DATETIME
    hours = {base.hour}
    days = {base.isoweekday()}
    if lit.refs(f"{prefix}.hour"):
        hours |= {h for h in numeric_domain(lit, f"{prefix}.hour", base.hour) if 0 <= h <= 23}
    if lit.refs(f"{prefix}.dayOfWeek"):
        days |= {d for d in numeric_domain(lit, f"{prefix}.dayOfWeek", base.isoweekday()) if 1 <= d <= 7}
    out = []
    monday = base - timedelta(days=base.isoweekday() - 1)
    for d in sorted(days):
        for h in sorted(hours):
            out.append((monday + timedelta(days=d - 1)).replace(hour=h))
    if lit.refs(f"{prefix}.datetime"):
        one = timedelta(seconds=1)
        for ext in sorted(lit.exts, key=lambda e: (e.fn, e.arg)):
            if ext.fn == "datetime":
                when = _parse_datetime(ext.arg)
                if when is not None:
                    out += [when - one, when, when + one]
            elif ext.fn == "duration":
                span = _parse_duration(ext.arg)
                if span is not None and timedelta(0) <= span <= timedelta(days=1):
                    midnight = base.replace(hour=0)
                    out += [midnight + span - one, midnight + span, midnight + span + one]
    return list(dict.fromkeys(out))


def datetime_json(when: datetime) -> dict[str, Any]:
    text = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"__extn": {"fn": "datetime", "arg": text}}


def time_record(when: datetime) -> dict[str, Any]:
    """The `time` context record the service sends: UTC hour, ISO weekday (1=Monday), the instant."""
    utc = when.astimezone(UTC)
    return {"hour": utc.hour, "dayOfWeek": utc.isoweekday(), "datetime": datetime_json(utc)}


def iter_product_size(sizes: Iterable[int]) -> int:
    total = 1
    for s in sizes:
        total *= max(s, 1)
    return total


def flatten_paths(prefix: str, ctype: CType) -> Iterator[tuple[str, CType]]:
    if ctype[0] == "Record":
        for name, (t, _opt) in ctype[1].items():
            yield from flatten_paths(f"{prefix}.{name}", t)
    else:
        yield prefix, ctype


__all__ = [
    "ACTION_TYPE", "ExtLit", "Literals", "SchemaShape", "action_resource_types", "datetime_domain", "datetime_json",
    "like_samples", "numeric_domain", "policy_applies_to_action", "role_sets", "role_universe", "scan_policy",
    "set_domain", "string_domain", "time_record",
]
