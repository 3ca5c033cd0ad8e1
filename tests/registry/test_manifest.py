"""Manifest v2 validation: every rule, with the exact field path of its error."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.contract.capabilities import KNOWN_CAPABILITIES
from service.registry.manifest import (
    MAX_MANIFEST_BYTES,
    Endpoint,
    FieldError,
    Manifest,
    ManifestError,
    parse_manifest,
    slug_for,
)


def doc(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "com.acme.tickets",
        "publisher": "Acme Corp",
        "version": "1.2.3",
        "runtime": "wasm-js@1",
        "capabilities": ["cap:http.fetch", "cap:secrets.get"],
        "ui": {"type": "iframe", "entry": "ui/index.html", "hooks": {"appMenu": {"label": "Tickets"}}},
        "api": {
            "endpoints": [
                {"method": "GET", "path": "/tickets", "handler": "handlers.list"},
                {"method": "POST", "path": "/tickets/:id", "handler": "handlers.update"},
            ]
        },
    }
    for key, value in overrides.items():
        if value is _DROP:
            base.pop(key, None)
        else:
            base[key] = value
    return base


_DROP = object()


def errors_of(data: Any) -> list[FieldError]:
    with pytest.raises(ManifestError) as info:
        parse_manifest(data)
    return info.value.errors


def paths_of(data: Any) -> list[str]:
    return [e.path for e in errors_of(data)]


def endpoints(*eps: Any) -> dict[str, Any]:
    return {"endpoints": list(eps)}


# --------------------------------------------------------------------------- valid documents


def test_valid_manifest_parses_and_normalises() -> None:
    m = parse_manifest(json.dumps(doc()).encode())
    assert isinstance(m, Manifest)
    assert m.name == "com.acme.tickets"
    assert m.publisher == "Acme Corp"
    assert m.version == "1.2.3"
    assert m.runtime == "wasm-js@1"
    assert m.capabilities == ("cap:http.fetch", "cap:secrets.get")
    assert m.ui == {"type": "iframe", "entry": "ui/index.html", "hooks": {"appMenu": {"label": "Tickets"}}}
    assert m.endpoints == (
        Endpoint("GET", "/tickets", "handlers.list"),
        Endpoint("POST", "/tickets/:id", "handlers.update"),
    )
    assert m.precompiled is None and m.assets == () and m.sbom is None
    assert m.slug == "acme-corp.com.acme.tickets"


def test_accepts_str_bytes_and_dict() -> None:
    d = doc()
    assert parse_manifest(d) == parse_manifest(json.dumps(d)) == parse_manifest(json.dumps(d).encode())


def test_utf8_bom_is_accepted() -> None:
    assert parse_manifest(b"\xef\xbb\xbf" + json.dumps(doc()).encode()).name == "com.acme.tickets"


def test_unknown_top_level_keys_are_kept_in_raw_but_ignored() -> None:
    m = parse_manifest(doc(entry="dist/main.js", events=["x"], description="hello"))
    assert m.raw["description"] == "hello"
    assert "description" not in m.normalized()
    assert m.normalized()["api"]["endpoints"][0] == {"method": "GET", "path": "/tickets", "handler": "handlers.list"}


def test_dict_input_is_copied_not_aliased() -> None:
    d = doc()
    m = parse_manifest(d)
    d["name"] = "changed.name"
    assert m.raw["name"] == "com.acme.tickets"


def test_ui_is_optional_for_api_only_extensions() -> None:
    m = parse_manifest(doc(ui=_DROP))
    assert m.ui is None


def test_api_is_optional_when_ui_is_present() -> None:
    m = parse_manifest(doc(api=_DROP))
    assert m.endpoints == ()


def test_neither_ui_nor_api_is_an_error() -> None:
    errs = errors_of(doc(ui=_DROP, api=_DROP))
    assert [e.path for e in errs] == ["api.endpoints"]
    assert "at least one endpoint or a ui" in errs[0].reason


def test_all_errors_are_reported_at_once() -> None:
    paths = paths_of(
        doc(
            name="Bad",
            publisher="",
            version="1.0",
            runtime="node@18",
            capabilities=["cap:nope"],
            ui={"type": "react"},
            api=endpoints({"method": "TRACE", "path": "x", "handler": ""}),
        )
    )
    assert paths == [
        "name",
        "publisher",
        "version",
        "runtime",
        "capabilities[0]",
        "ui.type",
        "ui.entry",
        "api.endpoints[0].method",
        "api.endpoints[0].path",
        "api.endpoints[0].handler",
    ]


def test_error_message_lists_paths() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(doc(version="1.0", name="x"))
    assert "name:" in str(info.value) and "version:" in str(info.value)
    assert info.value.to_dict()[0]["path"] == "name"
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- document level


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "is not valid JSON"),
        (b"", "is not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got array"),
        (b'"text"', "must be a JSON object, got string"),
        (b"null", "must be a JSON object, got null"),
        (b"\xff\xfe{}", "is not valid UTF-8"),
        (b'{"name": NaN}', "is not valid JSON"),
        (b'{"name": "a.b", "name": "c.d"}', "duplicate JSON keys"),
        (b"[" * 5000 + b"]" * 5000, ""),
    ],
)
def test_document_level_errors(data: bytes, reason: str) -> None:
    errs = errors_of(data)
    assert len(errs) == 1 and errs[0].path == ""
    assert reason in errs[0].reason


def test_too_large_manifest() -> None:
    big = doc(description="x" * MAX_MANIFEST_BYTES)
    for data in (json.dumps(big).encode(), json.dumps(big), big):
        errs = errors_of(data)
        assert errs == [FieldError("", "is larger than 256 KiB")]


def test_deeply_nested_manifest_is_rejected() -> None:
    nested: Any = "x"
    for _ in range(40):
        nested = {"a": nested}
    errs = errors_of(doc(extra=nested))
    assert errs[0].path == "" and "nests deeper" in errs[0].reason


def test_non_json_python_values_are_rejected() -> None:
    errs = errors_of(doc(extra={1, 2}))
    assert errs[0].path == "" and "JSON-serialisable" in errs[0].reason


def test_wrong_input_type() -> None:
    assert paths_of(42) == [""]


# --------------------------------------------------------------------------- name / publisher


@pytest.mark.parametrize("name", ["com.acme", "com.acme.tickets", "a.b", "io.x-y.z9", "0.1"])
def test_valid_names(name: str) -> None:
    assert parse_manifest(doc(name=name)).name == name


@pytest.mark.parametrize(
    "name",
    ["tickets", "Com.Acme", "com..acme", ".com.acme", "com.acme.", "com.-acme", "com.acme-", "com acme", "", "c_o.m"],
)
def test_invalid_names(name: str) -> None:
    errs = errors_of(doc(name=name))
    assert [e.path for e in errs] == ["name"]
    assert "reverse-domain" in errs[0].reason


def test_name_missing_and_wrong_type() -> None:
    assert errors_of(doc(name=_DROP)) == [FieldError("name", "is required")]
    assert errors_of(doc(name=5)) == [FieldError("name", "must be a string, got number")]
    assert errors_of(doc(name="a." + "b" * 200))[0].reason.startswith("must be at most")


@pytest.mark.parametrize(
    ("publisher", "path_reason"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        (None, "must be a string, got null"),
        ("日本", "must contain at least one letter or digit"),
        ("a\nb", "control characters"),
    ],
)
def test_invalid_publisher(publisher: Any, path_reason: str) -> None:
    errs = errors_of(doc(publisher=publisher))
    assert [e.path for e in errs] == ["publisher"]
    assert path_reason in errs[0].reason


def test_publisher_required() -> None:
    assert errors_of(doc(publisher=_DROP)) == [FieldError("publisher", "is required")]


def test_publisher_is_trimmed() -> None:
    assert parse_manifest(doc(publisher="  acme ")).publisher == "acme"


@pytest.mark.parametrize(
    ("publisher", "name", "slug"),
    [
        ("acme", "com.acme.tickets", "acme.com.acme.tickets"),
        ("Acme Corp", "com.acme.tickets", "acme-corp.com.acme.tickets"),
        ("  ACME, Inc.  ", "io.x.y", "acme-inc.io.x.y"),
        ("Café Ünïcode", "a.b", "cafe-unicode.a.b"),
        ("a--b__c", "a.b", "a-b-c.a.b"),
    ],
)
def test_slug_for(publisher: str, name: str, slug: str) -> None:
    assert slug_for(publisher, name) == slug


def test_slug_for_rejects_empty_slug() -> None:
    with pytest.raises(ValueError):
        slug_for("!!!", "a.b")


# --------------------------------------------------------------------------- version / runtime


@pytest.mark.parametrize(
    "version",
    [
        "0.0.0",
        "1.2.3",
        "10.20.30",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0+build.5",
        "1.0.0-rc.1+sha.abc",
        "1.0.0-0A.is.legal",
    ],
)
def test_valid_versions(version: str) -> None:
    assert parse_manifest(doc(version=version)).version == version


@pytest.mark.parametrize(
    "version",
    ["1.0", "1", "1.0.*", "v1.0.0", "01.0.0", "1.0.0-", "1.0.0-01", "1.0.0+", " 1.0.0", "1.0.0 ", "1.2.3.4", ""],
)
def test_invalid_versions(version: str) -> None:
    errs = errors_of(doc(version=version))
    assert [e.path for e in errs] == ["version"]
    assert "SemVer" in errs[0].reason


def test_version_required_and_typed() -> None:
    assert errors_of(doc(version=_DROP)) == [FieldError("version", "is required")]
    assert errors_of(doc(version=1.0)) == [FieldError("version", "must be a string, got number")]


@pytest.mark.parametrize("runtime", ["wasm-js@1", "wasm-py@1", "wasm-rust@1", "wasm-tinygo@2", "wasm-c-sharp@10"])
def test_valid_runtimes(runtime: str) -> None:
    assert parse_manifest(doc(runtime=runtime)).runtime == runtime


@pytest.mark.parametrize(
    "runtime",
    [
        "js",
        "wasm-js",
        "wasm-js@",
        "wasm-js@0",
        "wasm-js@1.0",
        "WASM-JS@1",
        "node@18",
        "wasm-@1",
        "wasm-js@01",
        "wasm-1js@1",
        "",
    ],
)
def test_invalid_runtimes(runtime: str) -> None:
    errs = errors_of(doc(runtime=runtime))
    assert [e.path for e in errs] == ["runtime"]
    assert "wasm-<language>@<major>" in errs[0].reason


def test_runtime_required() -> None:
    assert errors_of(doc(runtime=_DROP)) == [FieldError("runtime", "is required")]


# --------------------------------------------------------------------------- capabilities


def test_capabilities_default_empty_and_normalised() -> None:
    assert parse_manifest(doc(capabilities=_DROP)).capabilities == ()
    assert parse_manifest(doc(capabilities=None)).capabilities == ()
    m = parse_manifest(doc(capabilities=[" CAP:Storage.KV ", "cap:storage.kv", "cap:debug.logs"]))
    assert m.capabilities == ("cap:debug.logs", "cap:storage.kv")


def test_every_known_capability_is_accepted() -> None:
    m = parse_manifest(doc(capabilities=sorted(KNOWN_CAPABILITIES)))
    assert set(m.capabilities) == KNOWN_CAPABILITIES


def test_unknown_capabilities_are_named() -> None:
    errs = errors_of(doc(capabilities=["cap:http.fetch", "cap:fs.write", "http.fetch"]))
    assert [e.path for e in errs] == ["capabilities[1]", "capabilities[2]"]
    assert "'cap:fs.write'" in errs[0].reason and "unknown capability" in errs[0].reason
    assert "'http.fetch'" in errs[1].reason


def test_capabilities_types() -> None:
    assert errors_of(doc(capabilities="cap:http.fetch")) == [
        FieldError("capabilities", "must be an array of capability names, got string")
    ]
    assert paths_of(doc(capabilities=["cap:http.fetch", 3])) == ["capabilities[1]"]


# --------------------------------------------------------------------------- ui


def test_ui_shape_errors() -> None:
    assert errors_of(doc(ui="iframe")) == [FieldError("ui", "must be an object, got string")]
    assert paths_of(doc(ui={"type": "iframe"})) == ["ui.entry"]
    assert paths_of(doc(ui={"entry": "ui/index.html"})) == ["ui.type"]
    errs = errors_of(doc(ui={"type": "react", "entry": "ui/index.html"}))
    assert errs == [FieldError("ui.type", "must be \"iframe\", got 'react'")]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("", "must not be empty"),
        ("/ui/index.html", "absolute"),
        ("ui/../secret", "'..'"),
        ("index.html", "under ui/"),
        ("dist/main.wasm", "under ui/"),
        ("ui\\index.html", "'/'"),
        ("ui//index.html", "empty"),
    ],
)
def test_ui_entry_rules(entry: str, reason: str) -> None:
    errs = errors_of(doc(ui={"type": "iframe", "entry": entry}))
    assert [e.path for e in errs] == ["ui.entry"]
    assert reason in errs[0].reason


def test_ui_entry_dot_slash_is_stripped() -> None:
    assert parse_manifest(doc(ui={"type": "iframe", "entry": "./ui/index.html"})).ui == {
        "type": "iframe",
        "entry": "ui/index.html",
    }


def test_ui_hooks() -> None:
    ok = {"type": "iframe", "entry": "ui/a.html", "hooks": {"clientPortalMenu": {"label": "Portal"}, "custom": 1}}
    assert parse_manifest(doc(ui=ok)).ui is not None
    assert errors_of(doc(ui={"type": "iframe", "entry": "ui/a.html", "hooks": []})) == [
        FieldError("ui.hooks", "must be an object, got array")
    ]
    assert paths_of(doc(ui={"type": "iframe", "entry": "ui/a.html", "hooks": {"appMenu": {}}})) == [
        "ui.hooks.appMenu.label"
    ]
    assert paths_of(doc(ui={"type": "iframe", "entry": "ui/a.html", "hooks": {"appMenu": {"label": " "}}})) == [
        "ui.hooks.appMenu.label"
    ]
    assert paths_of(doc(ui={"type": "iframe", "entry": "ui/a.html", "hooks": {"clientPortalMenu": "x"}})) == [
        "ui.hooks.clientPortalMenu"
    ]


# --------------------------------------------------------------------------- api.endpoints


def test_api_shape_errors() -> None:
    assert errors_of(doc(api=[])) == [FieldError("api", "must be an object, got array")]
    assert paths_of(doc(api={})) == ["api.endpoints"]
    assert errors_of(doc(api={"endpoints": {}})) == [FieldError("api.endpoints", "must be an array, got object")]
    assert paths_of(doc(api={"endpoints": []})) == ["api.endpoints"]
    assert paths_of(doc(api=endpoints({"method": "GET", "path": "/a", "handler": "h"}, "GET /b"))) == [
        "api.endpoints[1]"
    ]


def test_endpoint_fields_required() -> None:
    errs = errors_of(doc(api=endpoints({})))
    assert errs == [
        FieldError("api.endpoints[0].method", "is required"),
        FieldError("api.endpoints[0].path", "is required"),
        FieldError("api.endpoints[0].handler", "is required"),
    ]


def test_method_normalised_to_upper_case() -> None:
    m = parse_manifest(doc(api=endpoints({"method": "patch", "path": "/a", "handler": "h"})))
    assert m.endpoints[0].method == "PATCH"


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "TRACE", "CONNECT", "", "G ET"])
def test_bad_methods(method: str) -> None:
    errs = errors_of(
        doc(
            api=endpoints(
                {"method": "GET", "path": "/a", "handler": "h"}, {"method": method, "path": "/a", "handler": "h"}
            )
        )
    )
    assert [e.path for e in errs] == ["api.endpoints[1].method"]
    assert "must be one of GET, POST, PUT, PATCH, DELETE" in errs[0].reason


def test_head_method_explains() -> None:
    errs = errors_of(doc(api=endpoints({"method": "HEAD", "path": "/a", "handler": "h"})))
    assert "answered by the GET endpoint" in errs[0].reason


@pytest.mark.parametrize(
    ("path", "normalised"),
    [
        ("/", "/"),
        ("/tickets", "/tickets"),
        ("//tickets//:id", "/tickets/:id"),
        ("/tickets/", "/tickets"),
        ("/a/:id/b/:sub_id", "/a/:id/b/:sub_id"),
        ("/v1/things.json", "/v1/things.json"),
        ("/users/@me", "/users/@me"),
        ("/a/b:batch", "/a/b:batch"),
        ("/~x/a-b_c", "/~x/a-b_c"),
    ],
)
def test_valid_paths(path: str, normalised: str) -> None:
    m = parse_manifest(doc(api=endpoints({"method": "GET", "path": path, "handler": "h"})))
    assert m.endpoints[0].path == normalised


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("tickets", "must start with '/'"),
        ("", "must start with '/'"),
        ("/a/../b", "'..'"),
        ("/a/./b", "'.'"),
        ("/a b", "spaces"),
        ("/a/*", "wildcards"),
        ("/a/*rest", "wildcards"),
        ("/a/:", "parameter segment"),
        ("/a/:1d", "parameter segment"),
        ("/a/:id-x", "parameter segment"),
        ("/a/:id/b/:id", "appears twice"),
        ("/a%2Fb", "characters outside"),
        ("/a?x=1", "characters outside"),
        ("/a#frag", "characters outside"),
        ("/a/\u00e9", "characters outside"),
        ("/a/\x00", "characters outside"),
        ("/" + "a" * 1100, "at most"),
    ],
)
def test_invalid_paths(path: str, reason: str) -> None:
    errs = errors_of(doc(api=endpoints({"method": "GET", "path": path, "handler": "h"})))
    assert {e.path for e in errs} == {"api.endpoints[0].path"}
    assert any(reason in e.reason for e in errs), errs


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        ("", "must not be empty"),
        ("  ", "must not be empty"),
        ("../x", "'..'"),
        ("a..b", "'..'"),
        ("a\nb", "control"),
        ("h" * 600, "at most"),
    ],
)
def test_invalid_handlers(handler: str, reason: str) -> None:
    errs = errors_of(doc(api=endpoints({"method": "GET", "path": "/a", "handler": handler})))
    assert [e.path for e in errs] == ["api.endpoints[0].handler"]
    assert reason in errs[0].reason


def test_handler_types() -> None:
    assert errors_of(doc(api=endpoints({"method": "GET", "path": "/a", "handler": 1}))) == [
        FieldError("api.endpoints[0].handler", "must be a string, got number")
    ]


def test_duplicate_endpoints() -> None:
    errs = errors_of(
        doc(
            api=endpoints(
                {"method": "GET", "path": "/a/:id", "handler": "h1"},
                {"method": "POST", "path": "/a/:id", "handler": "h2"},
                {"method": "get", "path": "//a//:id/", "handler": "h3"},
                {"method": "GET", "path": "/a/:name", "handler": "h4"},
            )
        )
    )
    assert [e.path for e in errs] == ["api.endpoints[2]", "api.endpoints[3]"]
    assert errs[0].reason == "duplicates api.endpoints[0]: GET /a/:id"
    assert "same shape" in errs[1].reason


def test_too_many_endpoints() -> None:
    eps = [{"method": "GET", "path": f"/e{i}", "handler": "h"} for i in range(1001)]
    assert paths_of(doc(api={"endpoints": eps})) == ["api.endpoints"]


# --------------------------------------------------------------------------- precompiled, assets, sbom


def test_optional_fields_valid() -> None:
    m = parse_manifest(
        doc(
            precompiled={"x86_64-linux-gnu": "./precompiled/x86_64.cwasm"},
            assets=["ui/**/*.js", "docs/README.md"],
            sbom="sbom.spdx.json",
        )
    )
    assert m.precompiled == {"x86_64-linux-gnu": "precompiled/x86_64.cwasm"}
    assert m.assets == ("ui/**/*.js", "docs/README.md")
    assert m.sbom == "sbom.spdx.json"
    assert m.normalized()["sbom"] == "sbom.spdx.json"


def test_optional_fields_invalid() -> None:
    errs = errors_of(
        doc(
            precompiled={"x86_64": "/abs.cwasm", "aarch64 linux": 5},
            assets=["ok/*", "../up", 7],
            sbom="a/../../b",
        )
    )
    assert [e.path for e in errs] == [
        "precompiled.x86_64",
        'precompiled["aarch64 linux"]',
        "assets[1]",
        "assets[2]",
        "sbom",
    ]
    assert errors_of(doc(precompiled=["x"])) == [
        FieldError("precompiled", "must be an object mapping target to bundle path, got array")
    ]
    assert errors_of(doc(assets="ui/*")) == [FieldError("assets", "must be an array of path patterns, got string")]
    assert errors_of(doc(sbom=1)) == [FieldError("sbom", "must be a string, got number")]


# --------------------------------------------------------------------------- fuzz

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)
field_names = st.sampled_from(
    ["name", "publisher", "version", "runtime", "capabilities", "ui", "api", "precompiled", "assets", "sbom"]
)
near_valid = st.builds(
    lambda base, patch: {**base, **patch},
    st.just(doc()),
    st.dictionaries(field_names, json_values, max_size=4),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(json_values, near_valid, st.dictionaries(field_names | st.text(max_size=8), json_values)))
def test_random_json_only_raises_manifest_error(value: Any) -> None:
    for data in (value, json.dumps(value), json.dumps(value).encode()):
        try:
            m = parse_manifest(data)
        except ManifestError as exc:
            assert exc.errors and all(isinstance(e, FieldError) for e in exc.errors)
        else:
            assert isinstance(m, Manifest)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_manifest_error(data: bytes) -> None:
    with contextlib.suppress(ManifestError):
        parse_manifest(data)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["method", "path", "handler", "x"]), json_values | st.text(alphabet="/:.a*b %"), max_size=4
    )
)
def test_random_endpoints_only_raise_manifest_error(endpoint: dict[str, Any]) -> None:
    try:
        parse_manifest(doc(api={"endpoints": [endpoint]}))
    except ManifestError as exc:
        assert all(e.path.startswith("api.endpoints[0]") for e in exc.errors)
