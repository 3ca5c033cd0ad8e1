"""extgate:bulk/storage — `alga:extension/storage` get/put with the entry's value as radix-64
text (runner/bulk/codec.py), so it crosses wasmtime-py's C API as one string.

Guests do not import this themselves: the publish-time import transform (runner/bulk/imports.py)
points the guest's own storage.get/put at it through an in-guest adapter. It delegates to the
plain interface, so every capability, size and name check is the same. Text that no adapter
writes (a guest calling this directly) answers `internal`, never a trap.
"""

from __future__ import annotations

from typing import Any

from wasmtime.component import LinkerInstance, Record

from runner.bulk.codec import MalformedBodyText, bytes_from_radix64, radix64_from_bytes
from runner.host import storage
from runner.host.values import field, rec
from runner.tracing import traced

INTERFACE = "extgate:bulk/storage"


def _as_text(result: Record | str) -> Record | str:
    if isinstance(result, str):
        return result
    return rec(namespace=field(result, "namespace"), key=field(result, "key"),
               value=radix64_from_bytes(bytes(field(result, "value"))), revision=field(result, "revision"))


def get(store: Any, namespace: str, key: str) -> Record | str:
    return _as_text(storage.get(store, namespace, key))


def put(store: Any, entry: Record) -> Record | str:
    try:
        value = bytes_from_radix64(field(entry, "value"))
    except (MalformedBodyText, TypeError, AttributeError):
        return "internal"
    return _as_text(storage.put(store, rec(namespace=field(entry, "namespace"), key=field(entry, "key"),
                                           value=value, revision=field(entry, "revision"))))


def register(root: LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as inst:
        inst.add_func("get", traced("extgate.host.storage.get")(get))
        inst.add_func("put", traced("extgate.host.storage.put")(put))
