"""Loading and validating bundles: ids, reasons, parse and schema errors, revisions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.policy.bundle import Bundle, check, compile_bundle
from service.policy.source import BundleError, BundleSource, compute_revision
from service.policy.textscan import split_statements

GOOD = """
@id("x.permit")
@reason("r")
permit (principal, action == ExtGate::Action::"read", resource);
"""


def test_shipped_bundle_is_valid(shipped_bundle: Bundle) -> None:
    assert len(shipped_bundle.policies) >= 20
    concerns = {p.file for p in shipped_bundle.policies.values()}
    assert concerns == {"tenancy.cedar", "rbac.cedar", "endpoints.cedar", "debug.cedar", "admin.cedar"}
    for policy in shipped_bundle.policies.values():
        assert policy.reason, policy.id
        assert policy.line and policy.line > 0
        assert policy.id.split(".")[0] in {"tenancy", "rbac", "endpoint", "debug", "admin"}


def test_missing_id_is_rejected_with_file_and_line(edit: Callable[..., BundleSource]) -> None:
    text = GOOD + '\n@reason("no id")\nforbid (principal, action, resource);\n'
    _, problems = check(edit({"extra.cedar": text}))
    assert [(p.file, p.line) for p in problems] == [("extra.cedar", 6)]
    assert "no @id" in problems[0].message


def test_missing_reason_is_rejected(edit: Callable[..., BundleSource]) -> None:
    _, problems = check(edit({"extra.cedar": '@id("x.y")\npermit (principal, action, resource);\n'}))
    assert len(problems) == 1 and problems[0].policy_id == "x.y" and "@reason" in problems[0].message


def test_duplicate_id_names_both_places(edit: Callable[..., BundleSource]) -> None:
    dup = '\n\n@id("rbac.read")\n@reason("again")\nforbid (principal, action, resource);\n'
    _, problems = check(edit({"zz.cedar": dup}))
    assert len(problems) == 1
    problem = problems[0]
    assert problem.file == "zz.cedar" and problem.line == 3 and problem.policy_id == "rbac.read"
    assert "duplicate @id" in problem.message and "rbac.cedar:" in problem.message


def test_parse_error_names_the_line(edit: Callable[..., BundleSource]) -> None:
    text = (
        GOOD
        + '\n// a comment; with a semicolon\n@id("bad")\n@reason("x")\npermit (principal, action, resource) when { };\n'
    )
    _, problems = check(edit({"broken.cedar": text}))
    assert len(problems) == 1
    assert problems[0].file == "broken.cedar" and problems[0].line == 7
    assert "does not parse" in problems[0].message


def test_schema_violation_names_policy_and_line(edit: Callable[..., BundleSource]) -> None:
    text = GOOD + (
        '\n@id("typo.attr")\n@reason("typo")\n'
        'forbid (principal, action == ExtGate::Action::"debug.view", resource)\n'
        'when { resource.capabilites.contains("cap:debug.logs") };\n'
    )
    _, problems = check(edit({"typo.cedar": text}))
    assert len(problems) == 1
    p = problems[0]
    assert (p.file, p.policy_id, p.line) == ("typo.cedar", "typo.attr", 6)
    assert "capabilites" in p.message


def test_schema_error_is_reported(edit: Callable[..., BundleSource]) -> None:
    bad = "namespace ExtGate { entity Tenant = { a: Strng }; }"
    _, problems = check(edit({"extgate.cedarschema": bad}))
    assert problems and problems[0].file == "extgate.cedarschema" and "Strng" in problems[0].message


def test_no_schema_or_policies(edit: Callable[..., BundleSource]) -> None:
    with pytest.raises(BundleError, match="no schema"):
        compile_bundle(edit({"extgate.cedarschema": None}))
    with pytest.raises(BundleError, match="no policy files"):
        compile_bundle(BundleSource({"s.cedarschema": "namespace ExtGate { entity A; }"}))


def test_templates_are_rejected(edit: Callable[..., BundleSource]) -> None:
    text = '@id("t.x")\n@reason("t")\npermit (principal == ?principal, action, resource);\n'
    _, problems = check(edit({"tpl.cedar": text}))
    assert any("templates" in p.message for p in problems)


def test_revision_covers_schema_and_policies_not_tests(
    shipped_source: BundleSource, edit: Callable[..., BundleSource]
) -> None:
    assert shipped_source.revision.startswith("sha256:") and len(shipped_source.revision) == 71
    assert edit({"tests/extra.json": "[]"}).revision == shipped_source.revision
    assert edit({"rbac.cedar": shipped_source.files["rbac.cedar"] + "\n"}).revision != shipped_source.revision
    assert compute_revision({"a.cedar": "ab", "b.cedar": "c"}) != compute_revision({"a.cedar": "a", "b.cedar": "bc"})


def test_statement_splitter_ignores_strings_and_comments() -> None:
    text = (
        '// x; y\n@id("a;b")\npermit (principal, action, resource)\nwhen { "s;" == "s;" };\n'
        "\n  forbid (principal, action, resource);"
    )
    statements = split_statements(text)
    assert [s.line for s in statements] == [2, 6]
