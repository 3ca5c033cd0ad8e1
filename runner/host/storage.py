"""alga:extension/storage — install-scoped KV with revisions.

Requires `cap:storage.kv` and an install id. Namespace/key/value sizes are capped (a
value over the cap answers `denied`: the interface has no "too large" case). `put` with
a `revision` is a compare-and-set: a stale revision answers `conflict`; `revision = 0`
means "create, must not exist".
"""

from __future__ import annotations

import logging
from typing import Any

from wasmtime.component import LinkerInstance, Record

from runner.contract.capabilities import STORAGE_KV
from runner.host.state import CallState, current
from runner.host.values import field, rec
from runner.storage.base import KVEntry, StorageConflictError, StorageMissingError
from runner.tracing import traced

INTERFACE = "alga:extension/storage"
log = logging.getLogger(__name__)


def _entry(e: KVEntry) -> Record:
    return rec(namespace=e.namespace, key=e.key, value=e.value, revision=e.revision)


def _scope(state: CallState) -> tuple[str, str] | None:
    if not state.has(STORAGE_KV) or not state.context.install_id or state.kv is None:
        return None
    return state.context.tenant_id, state.context.install_id


def _names_ok(state: CallState, namespace: str, key: str | None) -> bool:
    s = state.settings
    if not 1 <= len(namespace) <= s.runner_kv_max_namespace_chars:
        return False
    return key is None or 1 <= len(key) <= s.runner_kv_max_key_chars


def _guard(fn: Any) -> Any:
    """Map storage exceptions to storage-error values; never trap the guest."""

    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except StorageMissingError:
            return "missing"
        except StorageConflictError:
            return "conflict"
        except Exception:  # noqa: BLE001
            log.exception("storage host call failed")
            return "internal"

    return wrapper


@_guard
def get(_store: Any, namespace: str, key: str) -> Record | str:
    state = current()
    scope = _scope(state)
    if scope is None or not _names_ok(state, namespace, key):
        return "denied"
    assert state.kv is not None
    return _entry(state.kv.get(*scope, namespace, key))


@_guard
def put(_store: Any, entry: Record) -> Record | str:
    state = current()
    scope = _scope(state)
    namespace, key, value = field(entry, "namespace"), field(entry, "key"), field(entry, "value")
    if scope is None or not _names_ok(state, namespace, key):
        return "denied"
    if len(value) > state.settings.runner_kv_max_value_bytes:
        return "denied"
    assert state.kv is not None
    return _entry(state.kv.put(*scope, namespace, key, bytes(value), field(entry, "revision")))


@_guard
def delete(_store: Any, namespace: str, key: str) -> str | None:
    state = current()
    scope = _scope(state)
    if scope is None or not _names_ok(state, namespace, key):
        return "denied"
    assert state.kv is not None
    state.kv.delete(*scope, namespace, key)
    return None


@_guard
def list_entries(_store: Any, namespace: str, cursor: str | None) -> list[Record] | str:
    """One page in key order; pass the last key returned as `cursor` for the next page."""
    state = current()
    scope = _scope(state)
    if scope is None or not _names_ok(state, namespace, None):
        return "denied"
    assert state.kv is not None
    page = state.kv.list(*scope, namespace, cursor or None, state.settings.runner_kv_page_size)
    return [_entry(e) for e in page]


def register(root: LinkerInstance) -> None:
    with root.add_instance(INTERFACE) as inst:
        inst.add_func("get", traced("extgate.host.storage.get")(get))
        inst.add_func("put", traced("extgate.host.storage.put")(put))
        inst.add_func("delete", traced("extgate.host.storage.delete")(delete))
        inst.add_func("list-entries", traced("extgate.host.storage.list")(list_entries))
