"""Manifest v2: parse and validate an extension's `manifest.json`.

`parse_manifest` checks every rule at once and raises `ManifestError` carrying one
`FieldError(path, reason)` per problem (paths look like `api.endpoints[2].method`; the
empty path means the document as a whole). On success it returns a normalised, frozen
`Manifest`. Unknown top-level keys are kept in `Manifest.raw` and otherwise ignored, as
upstream strips them. The rules are documented for users in `docs/manifest.md`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.contract.capabilities import UnknownCapabilityError, normalize_capabilities

MAX_MANIFEST_BYTES = 256 * 1024
MAX_NESTING_DEPTH = 32
MAX_NAME_LENGTH = 128
MAX_PUBLISHER_LENGTH = 128
MAX_VERSION_LENGTH = 128
MAX_PATH_LENGTH = 1024
MAX_HANDLER_LENGTH = 512
MAX_ENDPOINTS = 1000

HTTP_METHODS: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE")

NAME_RE = re.compile(r"^[a-z0-9]+(?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9]+(?:[a-z0-9-]*[a-z0-9])?)+$")
# The official SemVer 2.0.0 regular expression.
SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$",
    re.ASCII,
)
# `wasm-<lang>@<major>`: wasm-js@1 (upstream), wasm-py@1, wasm-rust@1, wasm-tinygo@2, ...
RUNTIME_RE = re.compile(r"^wasm-[a-z][a-z0-9]*(?:-[a-z0-9]+)*@[1-9][0-9]{0,5}$")
PARAM_RE = re.compile(r"^:[A-Za-z_][A-Za-z0-9_]*$")
# Literal path segments: RFC 3986 unreserved characters and sub-delimiters, plus ':' and
# '@' after the first character. No '%', '*', '?', '#', spaces or control characters.
LITERAL_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._~!$&'()+,;=@-][A-Za-z0-9._~!$&'()+,;=:@-]*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class FieldError:
    """One validation problem: `path` locates the field (`""` = whole document)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path or '(manifest)'}: {self.reason}"


class ManifestError(ValueError):
    """The manifest is invalid; `errors` lists every problem found, in document order."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__("invalid manifest: " + "; ".join(str(e) for e in self.errors))

    def to_dict(self) -> list[dict[str, str]]:
        return [{"path": e.path, "reason": e.reason} for e in self.errors]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: str

    def to_dict(self) -> dict[str, str]:
        return {"method": self.method, "path": self.path, "handler": self.handler}


@dataclass(frozen=True)
class Manifest:
    name: str
    publisher: str
    version: str
    runtime: str
    capabilities: tuple[str, ...]
    ui: dict[str, Any] | None
    endpoints: tuple[Endpoint, ...]
    precompiled: dict[str, str] | None
    assets: tuple[str, ...]
    sbom: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def slug(self) -> str:
        return slug_for(self.publisher, self.name)

    def normalized(self) -> dict[str, Any]:
        """The validated fields as a JSON-ready dict (unknown keys dropped)."""
        out: dict[str, Any] = {
            "name": self.name,
            "publisher": self.publisher,
            "version": self.version,
            "runtime": self.runtime,
            "capabilities": list(self.capabilities),
        }
        if self.ui is not None:
            out["ui"] = self.ui
        if self.endpoints:
            out["api"] = {"endpoints": [e.to_dict() for e in self.endpoints]}
        if self.precompiled is not None:
            out["precompiled"] = dict(self.precompiled)
        if self.assets:
            out["assets"] = list(self.assets)
        if self.sbom is not None:
            out["sbom"] = self.sbom
        return out


# --------------------------------------------------------------------------- helpers


def slug_for(publisher: str, name: str) -> str:
    """`publisher.name`, lowercase; the publisher is slugified to `[a-z0-9-]`.

    `slug_for("Acme Corp", "com.acme.crm") == "acme-corp.com.acme.crm"`. Raises
    `ValueError` when the publisher has no ASCII letter or digit at all (parse_manifest
    rejects such publishers first).
    """
    slug = publisher_slug(publisher)
    if not slug:
        raise ValueError("publisher must contain at least one letter or digit (a-z, 0-9)")
    return f"{slug}.{name.strip().lower()}"


def publisher_slug(publisher: str) -> str:
    ascii_form = unicodedata.normalize("NFKD", publisher).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_form.lower()).strip("-")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _expected(kind: str, value: Any) -> str:
    return f"must be {kind}, got {_type_name(value)}"


def relative_path_problem(value: str) -> str | None:
    """Why `value` is not a safe bundle-relative file path (None when it is)."""
    if not value:
        return "must not be empty"
    if _CONTROL_RE.search(value):
        return "must not contain control characters"
    if "\\" in value:
        return "must use '/' as separator, not '\\'"
    if value.startswith("/"):
        return "must be relative to the bundle root, not absolute"
    stripped = value[2:] if value.startswith("./") else value
    segments = stripped.split("/")
    if any(s == ".." for s in segments):
        return "must not contain '..' segments"
    if any(s in ("", ".") for s in segments):
        return "must not contain empty or '.' segments"
    return None


def clean_relative_path(value: str) -> str:
    return value[2:] if value.startswith("./") else value


def _depth_problem(value: Any) -> bool:
    """True when `value` nests deeper than MAX_NESTING_DEPTH (iterative, never recurses)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_NESTING_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_document(data: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    def fail(reason: str) -> ManifestError:
        return ManifestError([FieldError("", reason)])

    if isinstance(data, Mapping):
        try:
            encoded = json.dumps(data, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            raise fail(f"is not JSON-serialisable: {exc}") from None
        if len(encoded) > MAX_MANIFEST_BYTES:
            raise fail(f"is larger than {MAX_MANIFEST_BYTES // 1024} KiB")
        if _depth_problem(data):
            raise fail(f"nests deeper than {MAX_NESTING_DEPTH} levels")
        # Work on a JSON round-trip copy so the caller's object is never aliased.
        return dict(json.loads(encoded))

    if isinstance(data, str):
        raw_bytes = data.encode("utf-8", "surrogatepass")
    elif isinstance(data, bytes | bytearray | memoryview):
        raw_bytes = bytes(data)
    else:
        raise fail(f"must be JSON bytes, text or an object, got {type(data).__name__}")
    if len(raw_bytes) > MAX_MANIFEST_BYTES:
        raise fail(f"is larger than {MAX_MANIFEST_BYTES // 1024} KiB")
    try:
        text = raw_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"is not valid UTF-8 (byte {exc.start})") from None

    duplicates: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                duplicates.append(key)
            obj[key] = value
        return obj

    try:
        doc = json.loads(text, object_pairs_hook=pairs_hook, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise fail(f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise fail(f"is not valid JSON: {exc}") from None
    if duplicates:
        names = ", ".join(sorted({repr(d) for d in duplicates}))
        raise fail(f"has duplicate JSON keys: {names}")
    if not isinstance(doc, dict):
        raise fail(_expected("a JSON object", doc))
    if _depth_problem(doc):
        raise fail(f"nests deeper than {MAX_NESTING_DEPTH} levels")
    return doc


# --------------------------------------------------------------------------- validation


class _Checker:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, path: str, reason: str) -> None:
        self.errors.append(FieldError(path, reason))

    def string(self, doc: Mapping[str, Any], key: str, path: str, *, required: bool) -> str | None:
        if key not in doc or (doc[key] is None and not required):
            if required:
                self.add(path, "is required")
            return None
        value = doc[key]
        if not isinstance(value, str):
            self.add(path, _expected("a string", value))
            return None
        return value


def _check_name(c: _Checker, doc: Mapping[str, Any]) -> str | None:
    value = c.string(doc, "name", "name", required=True)
    if value is None:
        return None
    if len(value) > MAX_NAME_LENGTH:
        c.add("name", f"must be at most {MAX_NAME_LENGTH} characters")
    elif not NAME_RE.fullmatch(value):
        c.add(
            "name",
            "must be a lowercase reverse-domain identifier with at least 2 segments, "
            'like "com.example.app" (a-z, 0-9 and inner "-" per segment)',
        )
    else:
        return value
    return None


def _check_publisher(c: _Checker, doc: Mapping[str, Any]) -> str | None:
    value = c.string(doc, "publisher", "publisher", required=True)
    if value is None:
        return None
    value = value.strip()
    if not value:
        c.add("publisher", "must not be empty")
    elif len(value) > MAX_PUBLISHER_LENGTH:
        c.add("publisher", f"must be at most {MAX_PUBLISHER_LENGTH} characters")
    elif _CONTROL_RE.search(value):
        c.add("publisher", "must not contain control characters")
    elif not publisher_slug(value):
        c.add("publisher", "must contain at least one letter or digit (a-z, 0-9)")
    else:
        return value
    return None


def _check_version(c: _Checker, doc: Mapping[str, Any]) -> str | None:
    value = c.string(doc, "version", "version", required=True)
    if value is None:
        return None
    if len(value) > MAX_VERSION_LENGTH:
        c.add("version", f"must be at most {MAX_VERSION_LENGTH} characters")
    elif not SEMVER_RE.fullmatch(value):
        c.add("version", f"must be a full SemVer 2.0 version like 1.2.3 or 1.2.3-beta.1, got {value!r}")
    else:
        return value
    return None


def _check_runtime(c: _Checker, doc: Mapping[str, Any]) -> str | None:
    value = c.string(doc, "runtime", "runtime", required=True)
    if value is None:
        return None
    if not RUNTIME_RE.fullmatch(value):
        c.add(
            "runtime",
            f"must look like wasm-<language>@<major> (for example wasm-js@1, wasm-py@1, wasm-rust@1), "
            f"got {value[:64]!r}",
        )
        return None
    return value


def _check_capabilities(c: _Checker, doc: Mapping[str, Any]) -> tuple[str, ...]:
    value = doc.get("capabilities")
    if value is None:
        return ()
    if not isinstance(value, list):
        c.add("capabilities", _expected("an array of capability names", value))
        return ()
    names: list[str] = []
    ok = True
    for i, item in enumerate(value):
        path = f"capabilities[{i}]"
        if not isinstance(item, str):
            c.add(path, _expected("a string", item))
            ok = False
            continue
        try:
            normalize_capabilities([item])
        except UnknownCapabilityError:
            c.add(path, f"unknown capability {item[:80]!r} (see docs/manifest.md for the known cap:* names)")
            ok = False
            continue
        names.append(item)
    if not ok:
        return ()
    return tuple(normalize_capabilities(names))


def _check_ui(c: _Checker, doc: Mapping[str, Any]) -> dict[str, Any] | None:
    if doc.get("ui") is None:
        return None
    ui = doc["ui"]
    if not isinstance(ui, dict):
        c.add("ui", _expected("an object", ui))
        return None
    before = len(c.errors)
    ui_type = c.string(ui, "type", "ui.type", required=True)
    if ui_type is not None and ui_type != "iframe":
        c.add("ui.type", f'must be "iframe", got {ui_type[:40]!r}')
    entry = c.string(ui, "entry", "ui.entry", required=True)
    if entry is not None:
        problem = relative_path_problem(entry)
        if problem:
            c.add("ui.entry", problem)
        elif not clean_relative_path(entry).startswith("ui/"):
            c.add("ui.entry", "must be a file under ui/ in the bundle, like ui/index.html")
        else:
            entry = clean_relative_path(entry)
    hooks = ui.get("hooks")
    if hooks is not None:
        if not isinstance(hooks, dict):
            c.add("ui.hooks", _expected("an object", hooks))
        else:
            for hook in ("appMenu", "clientPortalMenu"):
                if hooks.get(hook) is None:
                    continue
                spec = hooks[hook]
                path = f"ui.hooks.{hook}"
                if not isinstance(spec, dict):
                    c.add(path, _expected("an object", spec))
                    continue
                label = c.string(spec, "label", f"{path}.label", required=True)
                if label is not None and not label.strip():
                    c.add(f"{path}.label", "must not be empty")
    if len(c.errors) != before:
        return None
    out: dict[str, Any] = {"type": "iframe", "entry": entry}
    if hooks is not None:
        out["hooks"] = hooks
    return out


def normalize_endpoint_path(path: str) -> str:
    """Collapse repeated slashes and drop a trailing slash (the root `/` stays)."""
    collapsed = re.sub(r"/{2,}", "/", path)
    if len(collapsed) > 1 and collapsed.endswith("/"):
        collapsed = collapsed[:-1]
    return collapsed


def _path_problems(path: str) -> list[str]:
    if not path.startswith("/"):
        return ["must start with '/'"]
    if len(path) > MAX_PATH_LENGTH:
        return [f"must be at most {MAX_PATH_LENGTH} characters"]
    if path == "/":
        return []
    problems: list[str] = []
    params: set[str] = set()
    for segment in path[1:].split("/"):
        shown = segment[:40]
        if segment in (".", ".."):
            problems.append(f"must not contain '{segment}' segments")
        elif any(ch.isspace() for ch in segment):
            problems.append(f"segment {shown!r} must not contain spaces")
        elif "*" in segment:
            problems.append(f"segment {shown!r}: wildcards '*' are not supported; use a ':param' segment")
        elif segment.startswith(":"):
            if not PARAM_RE.fullmatch(segment):
                problems.append(
                    f"parameter segment {shown!r} must be ':' followed by an identifier "
                    "(letters, digits, '_', not starting with a digit)"
                )
            elif segment in params:
                problems.append(f"parameter {shown!r} appears twice")
            else:
                params.add(segment)
        elif not LITERAL_SEGMENT_RE.fullmatch(segment):
            problems.append(
                f"segment {shown!r} has characters outside A-Z a-z 0-9 and -._~!$&'()+,;=:@ "
                "('%', '?', '#' and control characters are not allowed)"
            )
    return problems


def _route_shape(method: str, path: str) -> tuple[str, str]:
    return method, "/".join(":" if s.startswith(":") else s for s in path.split("/"))


def _check_endpoints(c: _Checker, doc: Mapping[str, Any]) -> tuple[Endpoint, ...] | None:
    """Returns None when `api` is absent, else the (possibly partially) valid endpoints."""
    if doc.get("api") is None:
        return None
    api = doc["api"]
    if not isinstance(api, dict):
        c.add("api", _expected("an object", api))
        return ()
    if "endpoints" not in api or api["endpoints"] is None:
        c.add("api.endpoints", "is required when api is present")
        return ()
    raw_endpoints = api["endpoints"]
    if not isinstance(raw_endpoints, list):
        c.add("api.endpoints", _expected("an array", raw_endpoints))
        return ()
    if not raw_endpoints:
        c.add("api.endpoints", "must declare at least one endpoint (or leave out api)")
        return ()
    if len(raw_endpoints) > MAX_ENDPOINTS:
        c.add("api.endpoints", f"must declare at most {MAX_ENDPOINTS} endpoints")
        return ()

    endpoints: list[Endpoint] = []
    seen: dict[tuple[str, str], int] = {}
    for i, item in enumerate(raw_endpoints):
        base = f"api.endpoints[{i}]"
        if not isinstance(item, dict):
            c.add(base, _expected("an object", item))
            continue
        ok = True

        method = c.string(item, "method", f"{base}.method", required=True)
        if method is None:
            ok = False
        else:
            method = method.strip().upper()
            if method not in HTTP_METHODS:
                extra = " (HEAD is answered by the GET endpoint)" if method == "HEAD" else ""
                c.add(f"{base}.method", f"must be one of {', '.join(HTTP_METHODS)}, got {method[:20]!r}{extra}")
                ok = False

        path = c.string(item, "path", f"{base}.path", required=True)
        if path is None:
            ok = False
        else:
            path = normalize_endpoint_path(path)
            problems = _path_problems(path)
            for problem in problems:
                c.add(f"{base}.path", problem)
            ok = ok and not problems

        handler = c.string(item, "handler", f"{base}.handler", required=True)
        if handler is None:
            ok = False
        else:
            handler = handler.strip()
            if not handler:
                c.add(f"{base}.handler", "must not be empty")
                ok = False
            elif ".." in handler:
                c.add(f"{base}.handler", "must not contain '..'")
                ok = False
            elif _CONTROL_RE.search(handler):
                c.add(f"{base}.handler", "must not contain control characters")
                ok = False
            elif len(handler) > MAX_HANDLER_LENGTH:
                c.add(f"{base}.handler", f"must be at most {MAX_HANDLER_LENGTH} characters")
                ok = False

        if not ok:
            continue
        assert method is not None and path is not None and handler is not None
        shape = _route_shape(method, path)
        if shape in seen:
            first = seen[shape]
            first_ep = endpoints[first]
            how = "" if first_ep.path == path else f" ({first_ep.path} has the same shape)"
            c.add(base, f"duplicates api.endpoints[{first}]: {method} {path}{how}")
            continue
        seen[shape] = len(endpoints)
        endpoints.append(Endpoint(method=method, path=path, handler=handler))
    return tuple(endpoints)


def _check_precompiled(c: _Checker, doc: Mapping[str, Any]) -> dict[str, str] | None:
    if doc.get("precompiled") is None:
        return None
    value = doc["precompiled"]
    if not isinstance(value, dict):
        c.add("precompiled", _expected("an object mapping target to bundle path", value))
        return None
    out: dict[str, str] = {}
    for target, path in value.items():
        where = (
            f"precompiled.{target}"
            if re.fullmatch(r"[A-Za-z0-9_-]+", target)
            else (f"precompiled[{json.dumps(target)}]")
        )
        if not isinstance(path, str):
            c.add(where, _expected("a string (a path in the bundle)", path))
            continue
        problem = relative_path_problem(path)
        if problem:
            c.add(where, problem)
            continue
        out[target] = clean_relative_path(path)
    return out


def _check_assets(c: _Checker, doc: Mapping[str, Any]) -> tuple[str, ...]:
    if doc.get("assets") is None:
        return ()
    value = doc["assets"]
    if not isinstance(value, list):
        c.add("assets", _expected("an array of path patterns", value))
        return ()
    out: list[str] = []
    for i, item in enumerate(value):
        path = f"assets[{i}]"
        if not isinstance(item, str):
            c.add(path, _expected("a string", item))
            continue
        problem = relative_path_problem(item)
        if problem:
            c.add(path, problem)
            continue
        out.append(clean_relative_path(item))
    return tuple(out)


def _check_sbom(c: _Checker, doc: Mapping[str, Any]) -> str | None:
    value = c.string(doc, "sbom", "sbom", required=False)
    if value is None:
        return None
    problem = relative_path_problem(value)
    if problem:
        c.add("sbom", f"must be the path of a file in the bundle: {problem}")
        return None
    return clean_relative_path(value)


def parse_manifest(data: bytes | str | Mapping[str, Any]) -> Manifest:
    """Validate a Manifest v2 document (JSON bytes/text or an already-decoded object)."""
    doc = _load_document(data)
    c = _Checker()
    name = _check_name(c, doc)
    publisher = _check_publisher(c, doc)
    version = _check_version(c, doc)
    runtime = _check_runtime(c, doc)
    capabilities = _check_capabilities(c, doc)
    ui = _check_ui(c, doc)
    endpoints = _check_endpoints(c, doc)
    precompiled = _check_precompiled(c, doc)
    assets = _check_assets(c, doc)
    sbom = _check_sbom(c, doc)
    if endpoints is None and doc.get("ui") is None:
        c.add("api.endpoints", "an extension must declare at least one endpoint or a ui")
    if c.errors:
        raise ManifestError(c.errors)
    assert name is not None and publisher is not None and version is not None and runtime is not None
    return Manifest(
        name=name,
        publisher=publisher,
        version=version,
        runtime=runtime,
        capabilities=capabilities,
        ui=ui,
        endpoints=endpoints or (),
        precompiled=precompiled,
        assets=assets,
        sbom=sbom,
        raw=doc,
    )
