"""The Python endpoint matcher (equal segment counts, `:param` = one non-empty segment,
first declaration wins, HEAD matched as GET, malformed declarations ignored)."""

from __future__ import annotations

import pytest

from service.gateway.matcher import EndpointTable, compile_endpoints, match_endpoint

DECLARED = [
    {"method": "GET", "path": "/agreements", "handler": "list"},
    {"method": "GET", "path": "/agreements/:id", "handler": "get"},
    {"method": "DELETE", "path": "/agreements/:id", "handler": "delete"},
    {"method": "GET", "path": "/agreements/special", "handler": "never"},  # shadowed by :id
    {"method": "get", "path": " /lower/ ", "handler": "lower"},
    {"method": "TRACE", "path": "/trace", "handler": "bad-method"},
    {"method": "GET", "path": "", "handler": "no-path"},
    {"method": "GET", "path": "/no-handler", "handler": ""},
    {"method": "GET", "path": "/", "handler": "root"},
    "not-a-dict",
]
EPS = compile_endpoints(DECLARED)


def m(method: str, path: str) -> tuple[str, str] | None:
    hit = match_endpoint(EPS, method, path)
    return (hit.template, hit.handler) if hit else None


def test_literal_and_param() -> None:
    assert m("GET", "/agreements") == ("/agreements", "list")
    assert m("GET", "agreements/") == ("/agreements", "list")
    assert m("GET", "/agreements/abc-123") == ("/agreements/:id", "get")
    assert m("DELETE", "/agreements/abc") == ("/agreements/:id", "delete")


def test_first_match_wins() -> None:
    assert m("GET", "/agreements/special") == ("/agreements/:id", "get")


def test_no_match_cases() -> None:
    assert m("POST", "/agreements/abc") is None  # method
    assert m("GET", "/agreements/abc/extra") is None  # segment count
    assert m("GET", "/Agreements") is None  # literals are case-sensitive
    assert m("GET", "/agreements//") == ("/agreements", "list")  # trailing slashes trimmed
    assert m("GET", "/x/") is None


def test_param_needs_a_non_empty_segment() -> None:
    eps = compile_endpoints([{"method": "GET", "path": "/a/:id/b", "handler": "h"}])
    assert match_endpoint(eps, "GET", "/a//b") is None
    assert match_endpoint(eps, "GET", "/a/1/b") is not None


@pytest.mark.parametrize("path", ["/a/../b", "/a/./b", "/a/..\\x/b", "/a/x\x00/b", "/a/x\n/b", "/a/\x7f/b"])
def test_traversal_and_control_characters_match_nothing(path: str) -> None:
    eps = compile_endpoints([{"method": "GET", "path": "/a/:id/b", "handler": "h"},
                             {"method": "GET", "path": "/a/:x/:y/b", "handler": "h2"}])
    assert match_endpoint(eps, "GET", path) is None
    assert match_endpoint(eps, "GET", "/a/..x/b") is not None  # dots inside a segment are fine


def test_head_is_matched_as_get_and_methods_normalised() -> None:
    assert m("HEAD", "/agreements") == ("/agreements", "list")
    assert m(" get ", "/lower") == ("/lower", "lower")


def test_malformed_declarations_are_ignored() -> None:
    assert m("TRACE", "/trace") is None
    assert m("GET", "/no-handler") is None
    assert m("GET", "/") == ("/", "root")
    assert compile_endpoints("not a list") == ()
    assert compile_endpoints(None) == ()


def test_table_caches_by_version() -> None:
    table = EndpointTable(max_versions=2)
    first = table.get("v1", DECLARED)
    assert table.get("v1", []) is first  # versions are immutable: the cached parse is reused
    table.get("v2", [])
    table.get("v3", [])
    assert table.get("v1", []) == ()  # evicted, re-parsed from what was passed
