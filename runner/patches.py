"""Patches to wasmtime-py internals, valid for the pinned version only.

1. `fastbytes`: wasmtime-py converts `list<u8>` one element at a time in Python
   (~1.5 s/MiB). We write the C value array with two strided copies instead.
2. Thread safety: `component._enter.LAST_EXCEPTION` (the host exception to re-raise
   after a trap) is a module global, and `VariantLikeType._lower` clears and refills a
   module-global set. With several worker threads calling guests, one thread could
   re-raise another's exception or mis-tag a variant. Both become per-thread/local.
3. Type memo: every value conversion re-reads a type's structure through the C API
   (a record's fields, a list's element, an option's payload: several C calls and new
   Python objects per value). Types are immutable, so those properties are computed once
   per type object; `call_typed` calls a component function with a `FuncType` the caller
   keeps (the runner keeps one per component), so a request re-reads none of it.

Every patch depends on private modules. `install()` refuses to run against anything but
the exact wasmtime version and source it was written for (checked by hashing the
originals), so an upgrade fails loudly at startup and in `tests/runner/test_patches.py`
instead of corrupting values.
"""

from __future__ import annotations

import ctypes
import hashlib
import inspect
import threading
from collections.abc import Callable
from importlib import metadata
from typing import Any

from wasmtime import WasmtimeError
from wasmtime import _ffi as ffi
from wasmtime.component import _enter, _func, _linker, _resources
from wasmtime.component import _types as T

PINNED_WASMTIME = "50.0.1"
# sha256(inspect.getsource(...))[:16] of what we replace, for the pinned version.
EXPECTED_SOURCES = {
    "ListType.convert_to_c": "c0efe57bc21e40fa",
    "ListType.convert_from_c": "d7a53d5f6ecd86a6",
    "VariantLikeType._lower": "754829dfe558d474",
    "_enter": "213fd2bb17eebb1a",
    "Func.__call__": "cd08463247d60260",  # call_typed mirrors it
}

_VAL_SIZE = ctypes.sizeof(ffi.wasmtime_component_val_t)
_VAL_OFFSET = ffi.wasmtime_component_val_t.of.offset
_U8_KIND = ffi.WASMTIME_COMPONENT_U8.value

_installed = False
# Captured at import, before install() replaces them.
_orig_list_to_c = T.ListType.convert_to_c
_orig_list_from_c = T.ListType.convert_from_c
_orig_variant_lower = T.VariantLikeType._lower
_lock = threading.Lock()
_tls = threading.local()


class IncompatibleWasmtimeError(RuntimeError):
    pass


def _source_hash(obj: Any) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def current_sources() -> dict[str, str]:
    """Hashes of the *original* implementations (captured before patching)."""
    return {
        "ListType.convert_to_c": _source_hash(_orig_list_to_c),
        "ListType.convert_from_c": _source_hash(_orig_list_from_c),
        "VariantLikeType._lower": _source_hash(_orig_variant_lower),
        "_enter": _source_hash(_enter),
        "Func.__call__": _source_hash(_func.Func.__call__),
    }


def check_compatible() -> None:
    version = metadata.version("wasmtime")
    if version != PINNED_WASMTIME:
        raise IncompatibleWasmtimeError(
            f"runner.patches targets wasmtime=={PINNED_WASMTIME}, found {version}; "
            "re-verify the patches before changing the pin"
        )
    if (_VAL_SIZE, _VAL_OFFSET) != (32, 8):
        raise IncompatibleWasmtimeError("wasmtime_component_val_t layout changed")
    changed = {k for k, v in current_sources().items() if EXPECTED_SOURCES[k] != v}
    if changed:
        raise IncompatibleWasmtimeError("wasmtime-py internals changed: " + ", ".join(sorted(changed)))


# --- 1. fastbytes -------------------------------------------------------------------



def _list_to_c(self: T.ListType, store: Any, val: Any, ptr: Any) -> None:
    if not isinstance(val, bytes | bytearray | memoryview) or not isinstance(self.element, T.U8):
        return _orig_list_to_c(self, store, val, ptr)
    data = bytes(val)
    n = len(data)
    raw = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(raw, n)
    if n:
        # Each element is a 32-byte wasmtime_component_val_t: kind byte at 0, u8 at 8.
        view = memoryview((ctypes.c_char * (n * _VAL_SIZE)).from_address(ctypes.addressof(raw.data.contents)))
        view = view.cast("B")
        view[0::_VAL_SIZE] = bytes((_U8_KIND,)) * n
        view[_VAL_OFFSET::_VAL_SIZE] = data
    ptr.contents.kind = ffi.WASMTIME_COMPONENT_LIST
    ptr.contents.of.list = raw


def _list_from_c(self: T.ListType, c: Any) -> Any:
    if not isinstance(self.element, T.U8):
        return _orig_list_from_c(self, c)
    try:
        n = c.of.list.size
        return ctypes.string_at(c.of.list.data, n * _VAL_SIZE)[_VAL_OFFSET::_VAL_SIZE] if n else b""
    finally:
        ffi.wasmtime_component_vallist_delete(ctypes.byref(c.of.list))


# --- 2. thread safety ------------------------------------------------------------------


def _catch_exceptions(store_raw: Any, func: Callable[[Any], None]) -> Any:
    from wasmtime import StoreContext

    store = StoreContext(store_raw)
    exception = None
    try:
        func(store)
    except WasmtimeError as e:
        exception = e
    except Exception as e:
        _tls.last_exception = e
        exception = WasmtimeError("python exception")
    finally:
        store._invalidate()
    if exception:
        return ctypes.cast(exception._consume(), ctypes.c_void_p).value
    return 0


def _maybe_raise_last_exn() -> None:
    exn = getattr(_tls, "last_exception", None)
    if exn is None:
        return
    _tls.last_exception = None
    raise exn


def _enter_wasm(func: Callable[[], Any]) -> None:
    ptr = func()
    if ptr:
        error = WasmtimeError._from_ptr(ptr)
        _maybe_raise_last_exn()
        raise error


def _variant_lower(self: T.VariantLikeType, store: Any, val: Any) -> Any:
    # Same logic as upstream, with a local set instead of the module-global cache.
    tagged = self._tagged()
    if tagged and not isinstance(val, T.Variant):
        raise TypeError("expected Variant type")
    for name, ty in self._cases():
        if tagged:
            if name != val.tag:
                continue
        elif ty is None:
            if val is not None:
                continue
        else:
            classes: set[type] = set()
            ty.add_classes(classes)
            if not isinstance(val, tuple(classes)):
                continue
        if ty is None:
            return (name, None)
        raw = ffi.wasmtime_component_val_t()
        payload = val.payload if tagged else val
        ty.convert_to_c(store, payload, ctypes.pointer(raw))
        return (name, ffi.wasmtime_component_val_new(ctypes.byref(raw)))
    raise ValueError("value not valid for this variant")


# --- 3. type memo ---------------------------------------------------------------------

# (class, property) pairs whose getters only read immutable type information.
_MEMO_PROPERTIES: tuple[tuple[type, str], ...] = (
    (T.FuncType, "params"),
    (T.FuncType, "result"),
    (T.ListType, "element"),
    (T.RecordType, "fields"),
    (T.TupleType, "elements"),
    (T.VariantType, "cases"),
    (T.EnumType, "names"),
    (T.OptionType, "payload"),
    (T.ResultType, "ok"),
    (T.ResultType, "err"),
    (T.FlagsType, "names"),
)


def _memo_property(getter: Callable[[Any], Any], name: str) -> property:
    slot = f"_extgate_memo_{name}"

    def get(self: Any) -> Any:
        try:
            return self.__dict__[slot]
        except KeyError:
            value = self.__dict__[slot] = getter(self)
            return value

    get.__doc__ = getter.__doc__
    return property(get)


def call_typed(func: Any, store: Any, fty: Any, *params: Any) -> Any:
    """`Func.__call__` with a `FuncType` obtained once (from any instance of the same
    component) instead of re-reading it from the C API on every call."""
    param_tys = fty.params
    result_ty = fty.result
    if len(params) != len(param_tys):
        raise TypeError(f"wrong number of parameters provided: given {len(params)}, expected {len(param_tys)}")
    param_capi = (ffi.wasmtime_component_val_t * len(params))()
    n = 0
    try:
        for (_name, ty), val in zip(param_tys, params, strict=True):
            ty.convert_to_c(store, val, ctypes.pointer(param_capi[n]))
            n += 1
        result_space = ffi.wasmtime_component_val_t() if result_ty is not None else None
        result_capi = ctypes.byref(result_space) if result_space is not None else None

        def run() -> Any:
            return ffi.wasmtime_component_func_call(ctypes.byref(func._func), store._context(), param_capi, n,
                                                    result_capi, 1 if result_space is not None else 0)

        _func.enter_wasm(run)
        if result_space is None:
            return None
        return result_ty.convert_from_c(result_space)
    finally:
        for i in range(n):
            ffi.wasmtime_component_val_delete(ctypes.byref(param_capi[i]))


def install() -> None:
    """Apply all patches once per process (idempotent, thread-safe)."""
    global _installed
    with _lock:
        if _installed:
            return
        check_compatible()
        T.ListType.convert_to_c = _list_to_c  # type: ignore[method-assign]
        T.ListType.convert_from_c = _list_from_c  # type: ignore[method-assign]
        T.VariantLikeType._lower = _variant_lower  # type: ignore[method-assign]
        _enter.catch_exceptions = _catch_exceptions
        _enter.maybe_raise_last_exn = _maybe_raise_last_exn
        _enter.enter_wasm = _enter_wasm
        _linker.catch_exceptions = _catch_exceptions
        _func.enter_wasm = _enter_wasm
        _resources.enter_wasm = _enter_wasm
        for cls, name in _MEMO_PROPERTIES:
            prop = cls.__dict__[name]
            setattr(cls, name, _memo_property(prop.fget, name))
        _installed = True
