"""The shipped policy tests (policies/tests/*.json) pass and cover every policy and file."""

from __future__ import annotations

import json

from service.policy.bundle import Bundle
from service.policy.source import BundleSource
from service.policy.testing import load_test_documents, run_tests


def test_shipped_policy_tests_pass_with_full_coverage(shipped_bundle: Bundle) -> None:
    report = run_tests(shipped_bundle)
    assert report.ok, [f"{r.label}: {r.message}" for r in report.failed] + [str(p) for p in report.problems]
    assert len(report.results) >= 50
    assert report.uncovered == []
    assert report.uncovered_files(shipped_bundle) == []


def test_one_test_file_per_policy_file(shipped_bundle: Bundle) -> None:
    tests, entity_files, problems = load_test_documents(shipped_bundle)
    assert not problems and list(entity_files) == ["tests/entities.json"]
    stems = {name.removeprefix("tests/").removesuffix(".json") for name in tests}
    assert stems == {f.removesuffix(".cedar") for f in shipped_bundle.source.policy_files}


def test_test_files_use_the_cedar_cli_format(shipped_source: BundleSource) -> None:
    """Portable to `cedar run-tests`: exactly the CLI's keys, a shared entities file."""
    for name in shipped_source.test_files:
        doc = json.loads(shipped_source.files[name])
        if name.endswith("entities.json"):
            continue
        for case in doc:
            assert set(case) <= {"name", "request", "entities", "decision", "reason", "num_errors"}
            assert {"request", "entities", "decision", "reason", "num_errors"} <= set(case)
            assert case["decision"] in ("allow", "deny")
            assert set(case["request"]) == {"principal", "action", "resource", "context"}


def test_failing_case_is_reported_precisely(shipped_bundle: Bundle) -> None:
    files = dict(shipped_bundle.source.files)
    cases = json.loads(files["tests/rbac.json"])
    cases[2]["decision"] = "allow"  # "viewer cannot write"
    cases[0]["reason"] = ["rbac.write"]
    files["tests/rbac.json"] = json.dumps(cases)
    from service.policy.bundle import compile_bundle

    report = run_tests(compile_bundle(BundleSource(files)))
    failed = {r.index: r for r in report.failed}
    assert set(failed) == {0, 2}
    assert "missing reason(s): rbac.write" in failed[0].message
    assert "expected allow, got deny" in failed[2].message and failed[2].file == "tests/rbac.json"


def test_bad_test_inputs_fail_cleanly(shipped_bundle: Bundle) -> None:
    files = dict(shipped_bundle.source.files)
    files["tests/odd.json"] = json.dumps(
        [
            {
                "request": {"principal": "nope", "action": "read", "resource": "x"},
                "entities": [],
                "decision": "deny",
                "reason": [],
                "num_errors": 0,
            },
            {
                "name": "missing file",
                "request": {
                    "principal": 'ExtGate::User::"u"',
                    "action": "read",
                    "resource": 'ExtGate::Install::"i"',
                    "context": {},
                },
                "entities": "missing.json",
                "decision": "deny",
                "reason": [],
                "num_errors": 0,
            },
        ]
    )
    from service.policy.bundle import compile_bundle

    report = run_tests(compile_bundle(BundleSource(files)))
    messages = [r.message for r in report.failed]
    assert len(messages) == 2 and "not an entity reference" in messages[0] and "missing.json" in messages[1]
