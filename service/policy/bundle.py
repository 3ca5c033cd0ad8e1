"""Compile a bundle's text into reusable cedarpy handles, or report every problem.

Checks, in order: the schema parses; every policy file parses; no templates; every
policy has a non-empty `@id` (unique across files) and a `@reason`; every policy
validates against the schema (strict mode). Problems name the file, the line and the
policy id wherever they can.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cedarpy

from service.policy.model import ACTION_TYPE, INSTALL_TYPE, PolicyInfo
from service.policy.source import BundleError, BundleSource, Problem
from service.policy.textscan import find_enum_types, find_id_line, find_reference_line, split_statements


def _first_line(message: str) -> str:
    return str(message).strip().splitlines()[0] if str(message).strip() else "error"


def parse_schema(source: BundleSource) -> tuple[cedarpy.Schema | None, list[Problem]]:
    names = source.schema_files
    if not names:
        return None, [Problem("<bundle>", "no schema file (*.cedarschema) found")]
    problems: list[Problem] = []
    for name in names:
        try:
            cedarpy.Schema.from_str(source.files[name])
        except ValueError as exc:
            problems.append(Problem(name, f"schema does not parse: {_first_line(str(exc))}"))
    if problems:
        return None, problems
    combined = "\n".join(source.files[n] for n in names)
    try:
        return cedarpy.Schema.from_str(combined), []
    except ValueError as exc:  # e.g. two files declare the same type
        return None, [Problem(", ".join(names), f"schema files conflict: {_first_line(str(exc))}")]


def _locate_parse_error(name: str, text: str) -> Problem:
    for statement in split_statements(text):
        if not statement.text.strip().strip(";").strip() and ";" in statement.text:
            continue
        try:
            cedarpy.policies_to_json_str(statement.text)
        except ValueError as exc:
            return Problem(name, f"does not parse: {_first_line(str(exc))}", statement.line)
    try:
        cedarpy.policies_to_json_str(text)
    except ValueError as exc:
        return Problem(name, f"does not parse: {_first_line(str(exc))}")
    return Problem(name, "does not parse")


def parse_policy_file(name: str, text: str) -> tuple[list[PolicyInfo], list[Problem]]:
    """Policies of one file in source order, with `@id`/`@reason` checks."""
    try:
        est = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError:
        return [], [_locate_parse_error(name, text)]
    problems: list[Problem] = []
    statements = [s for s in split_statements(text) if s.text.strip().rstrip(";").strip()]
    if est.get("templates"):
        problems.append(Problem(name, "policy templates (?principal / ?resource) are not supported"))
    infos: list[PolicyInfo] = []
    static: dict[str, Any] = est.get("staticPolicies", {})
    for index, (positional, policy) in enumerate(
        sorted(static.items(), key=lambda kv: int(kv[0].removeprefix("policy")))
    ):
        del positional
        annotations: dict[str, str] = {k: str(v) for k, v in (policy.get("annotations") or {}).items()}
        pid = annotations.get("id", "").strip()
        line = find_id_line(text, pid) if pid else None
        if line is None and index < len(statements):
            line = statements[index].line
        if not pid:
            problems.append(Problem(name, 'policy has no @id("...") annotation', line))
            continue
        reason = annotations.get("reason", "").strip()
        if not reason:
            problems.append(Problem(name, 'policy has no @reason("...") annotation', line, pid))
        infos.append(
            PolicyInfo(
                id=pid,
                effect=str(policy["effect"]),
                file=name,
                line=line,
                reason=reason,
                annotations=annotations,
                est=policy,
            )
        )
    return infos, problems


# Cedar's words for a reference to an id an enumerated entity type does not declare.
_ENUM_ERROR_RE = re.compile(
    r'entity `(?P<type>[^`]+?)::"(?P<eid>(?:[^"\\]|\\.)*)"` is of an enumerated entity type'
)


def _enum_problem(
    name: str, text: str, pid: str | None, message: str, enums: Mapping[str, tuple[str, ...]]
) -> Problem | None:
    """`rbac.cedar:12: [rbac.write] unknown role "edtor" (ExtGate::Role is an enumeration: viewer, ...)`:
    the line that names the undeclared id, not only the policy's."""
    match = _ENUM_ERROR_RE.search(message)
    if match is None:
        return None
    etype, eid = match.group("type"), match.group("eid")
    what = "role" if etype.split("::")[-1] == "Role" else etype
    valid = enums.get(etype)
    listing = f": {', '.join(valid)}" if valid else ""
    line = (find_reference_line(text, pid, etype, eid) or find_id_line(text, pid)) if pid else None
    return Problem(name, f'unknown {what} "{eid}" ({etype} is an enumeration{listing})', line, pid)


def schema_enums(source: BundleSource) -> dict[str, tuple[str, ...]]:
    """Enumerated entity types of the bundle's schema files (for messages only)."""
    enums: dict[str, tuple[str, ...]] = {}
    for schema_name in source.schema_files:
        enums.update(find_enum_types(source.files[schema_name]))
    return enums


def validate_file(
    name: str, text: str, schema: cedarpy.Schema, enums: Mapping[str, tuple[str, ...]] | None = None
) -> list[Problem]:
    """Problems of one policy file against the schema. `enums` (type -> declared ids) words
    the message for an undeclared id of an enumerated type, such as a misspelt role."""
    result = cedarpy.validate_policies(text, schema)
    if result.validation_passed:
        return []
    by_positional = result.id_annotations_by_policy_id
    problems: list[Problem] = []
    for error in result.errors:
        pid = by_positional.get(error.policy_id) or None
        problem = _enum_problem(name, text, pid, error.error, enums or {})
        if problem is None:
            problem = Problem(name, error.error, find_id_line(text, pid) if pid else None, pid)
        if problem not in problems:
            problems.append(problem)
    return problems


# (action, resource type, resource id if a policy names it, principal if a policy names it,
#  slug: a named one, "" for any other, None when not known)
SliceKey = tuple[str, str, str | None, tuple[str, str] | None, str | None]


@dataclass(frozen=True)
class Bundle:
    """A compiled, validated bundle. Immutable; shared by every request until swapped."""

    source: BundleSource
    schema: cedarpy.Schema
    policies: dict[str, PolicyInfo]
    loaded_at: float = field(default_factory=time.time)
    _slices: dict[SliceKey, cedarpy.PolicySet] = field(
        default_factory=dict, repr=False, compare=False
    )
    _scoped: frozenset[tuple[str, str]] = field(default=frozenset(), repr=False, compare=False)
    _scoped_principals: frozenset[tuple[str, str]] = field(default=frozenset(), repr=False, compare=False)
    _scoped_slugs: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def revision(self) -> str:
        return self.source.revision

    def policy_set(self, ids: Iterable[str] | None = None) -> cedarpy.PolicySet:
        chosen = self.policies if ids is None else {i: self.policies[i] for i in ids}
        return build_policy_set(chosen.values())

    def _slice_key(
        self, action: str, resource: tuple[str, str], principal: tuple[str, str] | None, slug: str | None
    ) -> SliceKey:
        rid = resource[1] if resource in self._scoped else None
        pkey = principal if principal in self._scoped_principals else None
        # Known slug: named by a policy, or "" for every slug no policy names. None: unknown.
        skey = None if slug is None else (slug if slug in self._scoped_slugs else "")
        return (action, resource[0], rid, pkey, skey)

    def slice_for(
        self, action: str, resource_type: str, resource_id: str, principal: tuple[str, str] | None = None,
        slug: str | None = None,
    ) -> cedarpy.PolicySet:
        """The policies that can apply to (action, resource, principal): built once, then reused.

        `principal` is (type, id); None means "a principal no policy names by id". `slug` is
        the resource's `slug` attribute when the caller built the entity itself (None: not
        known, so slug-guarded policies are all kept)."""
        key = self._slice_key(action, (resource_type, resource_id), principal, slug)
        found = self._slices.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._slices.get(key)
            if found is None:
                found = self.policy_set(self._ids_for(key))
                self._slices[key] = found
            return found

    def slice_ids(
        self, action: str, resource_type: str, resource_id: str, principal: tuple[str, str] | None = None,
        slug: str | None = None,
    ) -> list[str]:
        return self._ids_for(self._slice_key(action, (resource_type, resource_id), principal, slug))

    def _ids_for(self, key: SliceKey) -> list[str]:
        action, rtype, rid, principal, slug = key
        return [p.id for p in self.policies.values()
                if applies(p.est, action, rtype, rid, principal) and slug_may_match(p.est, rtype, slug)]


def build_policy_set(policies: Iterable[PolicyInfo]) -> cedarpy.PolicySet:
    """A PolicySet keyed by `@id`, so Cedar's reasons come back as our ids."""
    doc = {"staticPolicies": {p.id: p.est for p in policies}, "templates": {}, "templateLinks": []}
    return cedarpy.PolicySet.from_json_str(json.dumps(doc))


def _entity_matches(entity: dict[str, Any], etype: str, eid: str | None) -> bool:
    return entity.get("type") == etype and (eid is None or entity.get("id") == eid)


def slug_guard(est: dict[str, Any]) -> str | None:
    """The literal of a policy whose conditions start with `resource.slug == "<literal>"`
    and whose resource scope is Install (`is` or `==`), else None.

    Such a policy cannot apply to an install with another slug, and leaving it out of that
    slice changes no decision: the schema requires `slug` on every Install, so the guard
    evaluates without error, and Cedar evaluates the conditions left to right, joined by
    `&&`, so nothing after a false guard runs (an error there could not turn into a deny).
    """
    res = est.get("resource", {})
    if res.get("op") == "is":
        rtype = res.get("entity_type")
    elif res.get("op") == "==":
        rtype = res.get("entity", {}).get("type")
    else:
        return None
    if rtype != INSTALL_TYPE or "in" in res:
        return None
    conditions = est.get("conditions") or []
    if not conditions or conditions[0].get("kind") != "when":
        return None
    expr = conditions[0].get("body", {})
    while isinstance(expr, dict) and "&&" in expr:
        expr = expr["&&"].get("left", {})  # the first conjunct is evaluated first
    eq = expr.get("==") if isinstance(expr, dict) else None
    if not isinstance(eq, dict):
        return None
    for attr, lit in ((eq.get("left"), eq.get("right")), (eq.get("right"), eq.get("left"))):
        if (isinstance(attr, dict) and isinstance(lit, dict) and attr.get(".", {}).get("attr") == "slug"
                and attr["."].get("left") == {"Var": "resource"} and isinstance(lit.get("Value"), str)):
            return str(lit["Value"])
    return None


def slug_may_match(est: dict[str, Any], resource_type: str, slug: str | None) -> bool:
    """False only when the policy is slug-guarded and the (known) slug is another one."""
    if slug is None or resource_type != INSTALL_TYPE:
        return True
    guard = slug_guard(est)
    return guard is None or guard == slug


def applies(
    est: dict[str, Any],
    action: str,
    resource_type: str,
    resource_id: str | None,
    principal: tuple[str, str] | None = None,
) -> bool:
    """Whether a policy's scope can match the request. Conservative: when unsure, yes.

    `resource == X` policies are left out of the generic slice (resource_id None) and put
    in the slice of X only; likewise `principal == P` policies (principal None means a
    principal that no policy names). `action in <group>`, `resource in <entity>` and
    `principal in <entity>` always apply.
    """
    act = est.get("action", {})
    op = act.get("op")
    if op == "==" and not _entity_matches(act.get("entity", {}), ACTION_TYPE, action):
        return False
    if op == "in" and "entities" in act and not any(_entity_matches(e, ACTION_TYPE, action) for e in act["entities"]):
        return False
    prin = est.get("principal", {})
    if prin.get("op") == "==" and "entity" in prin:
        if principal is None or not _entity_matches(prin["entity"], principal[0], principal[1]):
            return False
    elif prin.get("op") == "is" and principal is not None and prin.get("entity_type") != principal[0]:
        return False
    res = est.get("resource", {})
    op = res.get("op")
    if op == "==":
        entity = res.get("entity", {})
        return resource_id is not None and _entity_matches(entity, resource_type, resource_id)
    return not (op == "is" and res.get("entity_type") != resource_type)


def _scoped_uids(policies: Iterable[PolicyInfo], var: str) -> frozenset[tuple[str, str]]:
    scoped = set()
    for p in policies:
        scope = p.est.get(var, {})
        if scope.get("op") == "==" and "entity" in scope:
            scoped.add((str(scope["entity"].get("type")), str(scope["entity"].get("id"))))
    return frozenset(scoped)


def check(source: BundleSource) -> tuple[Bundle | None, list[Problem]]:
    """Compile `source`; return the bundle, or None and the problems found."""
    problems: list[Problem] = []
    schema, schema_problems = parse_schema(source)
    problems.extend(schema_problems)
    if not source.policy_files:
        problems.append(Problem("<bundle>", "no policy files (*.cedar) found"))
    infos: dict[str, PolicyInfo] = {}
    enums = schema_enums(source) if schema is not None else {}
    for name in source.policy_files:
        text = source.files[name]
        file_infos, file_problems = parse_policy_file(name, text)
        problems.extend(file_problems)
        for info in file_infos:
            if info.id in infos:
                first = infos[info.id]
                problems.append(Problem(name, f"duplicate @id (first defined at {first.location})", info.line, info.id))
            else:
                infos[info.id] = info
        if schema is not None and not file_problems:
            problems.extend(validate_file(name, text, schema, enums))
    if problems or schema is None:
        return None, problems
    try:
        build_policy_set(infos.values())
    except ValueError as exc:  # defensive: the EST round trip should never fail
        return None, [Problem("<bundle>", f"policies could not be loaded: {_first_line(str(exc))}")]
    policies = infos.values()
    bundle = Bundle(
        source,
        schema,
        infos,
        _scoped=_scoped_uids(policies, "resource"),
        _scoped_principals=_scoped_uids(policies, "principal"),
        _scoped_slugs=frozenset(g for g in (slug_guard(p.est) for p in policies) if g is not None),
    )
    return bundle, []


def compile_bundle(source: BundleSource) -> Bundle:
    bundle, problems = check(source)
    if bundle is None:
        raise BundleError(problems)
    return bundle
