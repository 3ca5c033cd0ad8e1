"""Policy tests as files, in the Cedar CLI `run-tests` JSON format, with coverage.

A test file is a JSON list of cases:
  {"name": "...", "request": {"principal": "ExtGate::User::\"u\"", "action": ..., "resource": ...,
   "context": {...}}, "entities": [...] | "entities.json", "decision": "allow" | "deny",
   "reason": ["policy.id", ...], "num_errors": 0}
`entities` may name a JSON file next to the test file (shared base entities), exactly as
the Cedar CLI allows; `reason` must be a subset of the determining policies. Files in
`tests/` whose items have a "uid" are entity files, not tests.

Cases run through the service's engine (slices, error => deny), so a test exercises the
decision the gateway would make.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import cedarpy

from service.policy.bundle import Bundle
from service.policy.engine import EntitiesError, PolicyEngine
from service.policy.source import TESTS_DIR, Problem
from service.policy.uids import UidError, parse_action, parse_uid


@dataclass(frozen=True)
class CaseResult:
    file: str
    index: int
    name: str
    passed: bool
    message: str = ""
    determining: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.file}#{self.index + 1} {self.name}".rstrip()


@dataclass
class PolicyTestReport:
    results: list[CaseResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)
    policies: dict[str, str] = field(default_factory=dict)  # id -> location

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.problems

    @property
    def uncovered(self) -> list[str]:
        """Policies that were never the determining policy of any test."""
        return [pid for pid in self.policies if self.hits[pid] == 0]

    @property
    def coverage(self) -> float:
        return 1.0 if not self.policies else 1 - len(self.uncovered) / len(self.policies)

    def uncovered_files(self, bundle: Bundle) -> list[str]:
        covered = {bundle.policies[p].file for p in self.policies if self.hits[p]}
        return [f for f in bundle.source.policy_files if f not in covered]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": sum(r.passed for r in self.results),
            "failed": [{"test": r.label, "message": r.message} for r in self.failed],
            "problems": [p.to_dict() for p in self.problems],
            "coverage": round(self.coverage, 4),
            "uncovered": [{"policy_id": p, "location": self.policies[p]} for p in self.uncovered],
        }


def _is_entities_doc(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "uid" in i for i in items)


def load_test_documents(bundle: Bundle) -> tuple[dict[str, list[Any]], dict[str, list[Any]], list[Problem]]:
    """(test files, entity files, problems) of the bundle's tests/ folder."""
    tests: dict[str, list[Any]] = {}
    entity_files: dict[str, list[Any]] = {}
    problems: list[Problem] = []
    for name in bundle.source.test_files:
        try:
            doc = json.loads(bundle.source.files[name])
        except json.JSONDecodeError as exc:
            problems.append(Problem(name, f"not valid JSON: {exc.msg}", exc.lineno))
            continue
        if not isinstance(doc, list):
            problems.append(Problem(name, "a test file must be a JSON list of test cases"))
        elif _is_entities_doc(doc):
            entity_files[name] = doc
        else:
            tests[name] = doc
    return tests, entity_files, problems


class _EntityLoader:
    def __init__(self, engine: PolicyEngine, entity_files: dict[str, list[Any]]) -> None:
        self.engine = engine
        self.files = entity_files
        self.cache: dict[str, cedarpy.Entities] = {}

    def load(self, spec: Any) -> cedarpy.Entities:
        if isinstance(spec, str):
            name = f"{TESTS_DIR}/{spec}"
            if name not in self.files:
                raise EntitiesError(f"entities file {spec!r} not found next to the test file")
            if name not in self.cache:
                self.cache[name] = self.engine.entities(self.files[name])
            return self.cache[name]
        if isinstance(spec, list):
            return self.engine.entities(spec)
        raise EntitiesError('"entities" must be a list of entities or the name of an entities file')


def run_case(engine: PolicyEngine, loader: _EntityLoader, file: str, index: int, case: Any) -> CaseResult:
    if not isinstance(case, dict):
        return CaseResult(file, index, "", False, "a test case must be a JSON object")
    name = str(case.get("name", ""))
    try:
        request = case["request"]
        expected = str(case["decision"]).lower()
        if expected not in ("allow", "deny"):
            raise ValueError('"decision" must be "allow" or "deny"')
        principal = parse_uid(request["principal"])
        action = parse_action(request["action"])
        resource = parse_uid(request["resource"])
        context = request.get("context") or {}
        entities = loader.load(case.get("entities", []))
    except (KeyError, TypeError) as exc:
        return CaseResult(file, index, name, False, f"malformed test case: missing or invalid {exc}")
    except (ValueError, UidError, EntitiesError) as exc:
        return CaseResult(file, index, name, False, str(exc))
    decision = engine.decide(principal, action, resource, context, entities)
    actual = "allow" if decision.allowed else "deny"
    determining = tuple(p for p in decision.policy_ids if p in engine.bundle.policies)
    messages = []
    if actual != expected:
        why = ", ".join(decision.policy_ids) or "no policy applied (default deny)"
        messages.append(f"expected {expected}, got {actual} ({why})")
    else:
        missing = [r for r in case.get("reason", []) if r not in decision.policy_ids]
        if missing:
            got = ", ".join(decision.policy_ids) or "none"
            messages.append(f"missing reason(s): {', '.join(missing)} (determining: {got})")
    expected_errors = int(case.get("num_errors", 0))
    if len(decision.errors) != expected_errors:
        detail = f": {'; '.join(decision.errors)}" if decision.errors else ""
        messages.append(f"expected {expected_errors} error(s), got {len(decision.errors)}{detail}")
    return CaseResult(file, index, name, not messages, "; ".join(messages), determining)


def run_tests(bundle: Bundle, engine: PolicyEngine | None = None) -> PolicyTestReport:
    engine = engine or PolicyEngine(bundle)
    tests, entity_files, problems = load_test_documents(bundle)
    report = PolicyTestReport(problems=problems, policies={p.id: p.location for p in bundle.policies.values()})
    if not tests and not problems:
        report.problems.append(Problem(f"{TESTS_DIR}/", "no policy tests found"))
    loader = _EntityLoader(engine, entity_files)
    for file, cases in tests.items():
        for index, case in enumerate(cases):
            result = run_case(engine, loader, file, index, case)
            report.results.append(result)
            report.hits.update(result.determining)
    return report
