"""extgate:bulk/http — `alga:extension/http.fetch` with the request and response bodies as
radix-64 text (runner/bulk/codec.py), so they cross wasmtime-py's C API as one string.

Reached only through the publish-time import adapter (runner/bulk/imports.py); delegates to the
plain `fetch`, so the capability, egress allowlist and size/time caps are the same. Text that no
adapter writes answers `internal`, never a trap.
"""

from __future__ import annotations

from typing import Any

from wasmtime.component import LinkerInstance, Record

from runner.bulk.codec import MalformedBodyText, bytes_from_radix64, radix64_from_bytes
from runner.host import http
from runner.host.values import field, rec
from runner.tracing import traced

INTERFACE = "extgate:bulk/http"


def fetch(store: Any, request: Record) -> Record | str:
    body = field(request, "body")
    try:
        raw = None if body is None else bytes_from_radix64(body)
    except (MalformedBodyText, TypeError, AttributeError):
        return "internal"
    result = http.fetch(store, rec(method=field(request, "method"), url=field(request, "url"),
                                   headers=field(request, "headers"), body=raw))
    if isinstance(result, str):
        return result
    out = field(result, "body")
    return rec(status=field(result, "status"), headers=field(result, "headers"),
               body=None if out is None else radix64_from_bytes(bytes(out)))


def register(root: LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as inst:
        inst.add_func("fetch", traced("extgate.host.http.fetch")(fetch))
