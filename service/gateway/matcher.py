"""Declared-endpoint matching, in Python (Cedar's `like` cannot express it: `*` crosses `/`).

Rules (upstream's `matchEndpoint`): paths are trimmed of whitespace and of leading and
trailing slashes, then split on `/`; the method must be equal (HEAD is matched as GET);
segment counts must be equal; a `:name` segment matches one non-empty segment, any other
segment matches itself exactly (case-sensitive); the first declaration in manifest order
wins. Declarations with an unknown method, an empty path or no handler are ignored, so a
malformed manifest matches nothing (fail closed).

Stricter than upstream: a request path with a `.` or `..` segment (also when it arrived
percent-encoded), a backslash or a control character matches nothing, so a traversal
attempt never reaches a guest through a `:param` (404 `endpoint_not_found`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    template: str  # normalised "/a/:id"
    handler: str
    segments: tuple[str | None, ...]  # None = `:param`


@dataclass(frozen=True, slots=True)
class EndpointMatch:
    template: str
    handler: str


def normalize_method(method: str) -> str:
    m = method.strip().upper()
    return "GET" if m == "HEAD" else m


def split_path(path: str) -> list[str]:
    trimmed = path.strip().strip("/")
    return trimmed.split("/") if trimmed else []


def compile_endpoints(declared: Iterable[Mapping[str, Any]] | Any) -> tuple[Endpoint, ...]:
    """Parse `api_endpoints` once (callers cache by version id: versions are immutable)."""
    out: list[Endpoint] = []
    if not isinstance(declared, list | tuple):
        return ()
    for item in declared:
        if not isinstance(item, Mapping):
            continue
        method, path, handler = item.get("method"), item.get("path"), item.get("handler")
        if not isinstance(method, str) or not isinstance(path, str) or not isinstance(handler, str):
            continue
        m = normalize_method(method)
        if m not in METHODS or not path.strip() or not handler.strip():
            continue
        parts = split_path(path)
        segments = tuple(None if p.startswith(":") else p for p in parts)
        out.append(Endpoint(m, "/" + "/".join(parts), handler, segments))
    return tuple(out)


def _unsafe_segment(segment: str) -> bool:
    return segment in (".", "..") or "\\" in segment or any(ord(c) < 0x20 or ord(c) == 0x7F for c in segment)


def match_endpoint(endpoints: Iterable[Endpoint], method: str, path: str) -> EndpointMatch | None:
    m = normalize_method(method)
    parts = split_path(path)
    if any(_unsafe_segment(p) for p in parts):
        return None
    n = len(parts)
    for ep in endpoints:
        if ep.method != m or len(ep.segments) != n:
            continue
        for want, got in zip(ep.segments, parts, strict=True):
            if (want is None and not got) or (want is not None and want != got):
                break
        else:
            return EndpointMatch(ep.template, ep.handler)
    return None


class EndpointTable:
    """Compiled endpoint lists keyed by version id (bounded LRU; versions never change)."""

    def __init__(self, max_versions: int = 4096) -> None:
        self._max = max_versions
        self._items: OrderedDict[str, tuple[Endpoint, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version_id: str, declared: Any) -> tuple[Endpoint, ...]:
        with self._lock:
            hit = self._items.get(version_id)
            if hit is not None:
                self._items.move_to_end(version_id)
                return hit
        compiled = compile_endpoints(declared)
        with self._lock:
            self._items[version_id] = compiled
            while len(self._items) > self._max:
                self._items.popitem(last=False)
        return compiled
