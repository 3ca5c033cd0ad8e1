"""Publish-time transform: add `handler-b64`, a second lift of the guest's own core `handler`
whose body fields are radix-64 text, so bodies cross wasmtime-py's C API as one string
instead of one dynamic value per byte (~170 ns/byte).

Only the component's top-level sections are parsed, and only far enough to count index
spaces and find the `canon lift` behind the `handler` export. Nothing already in the binary
changes: new sections are appended, so the guest's code and its plain `handler` are the same
bytes as before. Appended:

1. types: copies of the handler's records with both body fields `option<string>`, each
   exported under a `-b64` name (records reachable from an exported function must be named);
2. the adapter core module (`adapter.py`, offsets from `abi`), instantiated with the guest's
   memory, core handler, `cabi_realloc` and post-return;
3. a `canon lift` of the adapter's handler with the original's options (utf8, same memory and
   realloc, the adapter's post-return), exported as `handler-b64`.

Anything unexpected raises `TransformRefused` with a reason the publisher can read; the
caller keeps the plain path. The caller must also validate the output (compile it and check
the new export's type): this module only builds bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.bulk import abi
from runner.bulk.adapter import AdapterLayout, BodyLayout, adapter_module

# Bump when the output of `transform` (or the adapter template) changes for the same input:
# compiled artifacts are keyed by it, so older ones get rebuilt (runner/compiler.py).
TRANSFORM_VERSION = 2  # 1: handler-b64; 2: + bulk imports (storage get/put, http.fetch)
FAST_EXPORT = "handler-b64"
EXPORT_SUFFIX = "-b64"
PLAIN_EXPORT = "handler"


class TransformRefused(ValueError):
    """The component does not match what the transform supports: keep the plain path."""


# Index spaces the scan counts (the transform appends to some of them).
CORE_FUNC, CORE_TABLE, CORE_MEMORY, CORE_GLOBAL, CORE_TYPE, CORE_MODULE, CORE_INSTANCE = (
    "core-func", "core-table", "core-memory", "core-global", "core-type", "core-module", "core-instance")
FUNC, VALUE, TYPE, COMPONENT, INSTANCE = "func", "value", "type", "component", "instance"
_CORE_SORTS = {0x00: CORE_FUNC, 0x01: CORE_TABLE, 0x02: CORE_MEMORY, 0x03: CORE_GLOBAL, 0x10: CORE_TYPE,
               0x11: CORE_MODULE, 0x12: CORE_INSTANCE}
_SORTS = {0x01: FUNC, 0x02: VALUE, 0x03: TYPE, 0x04: COMPONENT, 0x05: INSTANCE}

# canonopt codes (Binary.md): string encodings, then options carrying an index.
OPT_UTF8, OPT_UTF16, OPT_LATIN1_UTF16 = 0x00, 0x01, 0x02
OPT_MEMORY, OPT_REALLOC, OPT_POST_RETURN, OPT_ASYNC, OPT_CALLBACK = 0x03, 0x04, 0x05, 0x06, 0x07
_OPTS_WITH_INDEX = {OPT_MEMORY, OPT_REALLOC, OPT_POST_RETURN, OPT_CALLBACK}
_KNOWN_OPTS = {OPT_UTF8, OPT_UTF16, OPT_LATIN1_UTF16, *_OPTS_WITH_INDEX, OPT_ASYNC}


class _Reader:
    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise TransformRefused("truncated component section")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u32(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result
            if shift > 35:
                raise TransformRefused("malformed LEB128")

    def name(self) -> str:
        n = self.u32()
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("utf-8")

    def sort(self) -> str:
        b = self.byte()
        if b == 0x00:
            core = self.byte()
            if core not in _CORE_SORTS:
                raise TransformRefused(f"unknown core sort {core:#x}")
            return _CORE_SORTS[core]
        if b not in _SORTS:
            raise TransformRefused(f"unknown sort {b:#x}")
        return _SORTS[b]

    def extern_name(self) -> str:
        tag = self.byte()
        if tag not in (0x00, 0x01):
            raise TransformRefused(f"unsupported import/export name form {tag:#x}")
        n = self.name()
        if tag == 0x01:  # name followed by a version suffix
            self.name()
        return n

    def extern_desc(self) -> str:
        kind = self.byte()
        if kind == 0x00:  # core module type
            if self.byte() != 0x11:
                raise TransformRefused("unexpected core extern desc")
            self.u32()
            return CORE_MODULE
        if kind in (0x01, 0x04, 0x05):
            self.u32()
            return {0x01: FUNC, 0x04: COMPONENT, 0x05: INSTANCE}[kind]
        if kind == 0x03:  # type bound: eq <typeidx> | sub resource
            if self.byte() == 0x00:
                self.u32()
            return TYPE
        raise TransformRefused(f"unsupported extern desc {kind:#x}")

    def canon_opts(self) -> list[tuple[int, int | None]]:
        opts: list[tuple[int, int | None]] = []
        for _ in range(self.u32()):
            code = self.byte()
            if code not in _KNOWN_OPTS:
                raise TransformRefused(f"unknown canonical option {code:#x}")
            opts.append((code, self.u32() if code in _OPTS_WITH_INDEX else None))
        return opts


@dataclass(frozen=True)
class _Lift:
    core_func: int
    opts: tuple[tuple[int, int | None], ...]


@dataclass
class _Scan:
    counts: dict[str, int] = field(default_factory=dict)
    lifts: dict[int, _Lift] = field(default_factory=dict)  # func index -> the lift that made it
    func_exports: dict[str, int] = field(default_factory=dict)  # export name -> func index it names
    export_names: set[str] = field(default_factory=set)
    reexported: dict[int, int] = field(default_factory=dict)  # func index made by an export -> exported

    def add(self, sort: str, n: int = 1) -> int:
        first = self.counts.get(sort, 0)
        self.counts[sort] = first + n
        return first


def _scan(data: bytes) -> _Scan:
    if data[:4] != b"\0asm" or data[4:8] != b"\x0d\x00\x01\x00":
        raise TransformRefused("not a component binary (layer 1, version 0xd)")
    scan, pos = _Scan(), 8
    while pos < len(data):
        head = _Reader(data, pos, len(data))
        section_id = head.byte()
        size = head.u32()
        start, end = head.pos, head.pos + size
        if end > len(data):
            raise TransformRefused("truncated component")
        r = _Reader(data, start, end)
        if section_id == 0:  # custom
            pass
        elif section_id == 1:
            scan.add(CORE_MODULE)
        elif section_id == 4:
            scan.add(COMPONENT)
        elif section_id in (2, 3, 5, 7):
            scan.add({2: CORE_INSTANCE, 3: CORE_TYPE, 5: INSTANCE, 7: TYPE}[section_id], r.u32())
        elif section_id == 6:
            _scan_aliases(r, scan)
        elif section_id == 8:
            _scan_canons(r, scan, end)
        elif section_id == 10:
            for _ in range(r.u32()):
                r.extern_name()
                scan.add(r.extern_desc())
        elif section_id == 11:
            for _ in range(r.u32()):
                name = r.extern_name()
                sort = r.sort()
                index = r.u32()
                if r.byte() == 0x01:  # ascribed type
                    r.extern_desc()
                scan.export_names.add(name)
                created = scan.add(sort)  # an export creates a new index in its sort
                if sort == FUNC:
                    scan.func_exports[name] = index
                    scan.reexported[created] = index
        else:  # start (9), values (12) and anything newer: not produced by the toolchains we support
            raise TransformRefused(f"unsupported component section {section_id}")
        pos = end
    return scan


def _scan_aliases(r: _Reader, scan: _Scan) -> None:
    for _ in range(r.u32()):
        sort = r.sort()
        target = r.byte()
        if target in (0x00, 0x01):  # (component|core) instance export
            r.u32()
            r.name()
        elif target == 0x02:  # outer
            r.u32()
            r.u32()
        else:
            raise TransformRefused(f"unknown alias target {target:#x}")
        scan.add(sort)


def _scan_canons(r: _Reader, scan: _Scan, end: int) -> None:
    count = r.u32()
    for _ in range(count):
        kind = r.byte()
        if kind == 0x00:  # lift
            if r.byte() != 0x00:
                raise TransformRefused("unexpected lift encoding")
            core = r.u32()
            opts = r.canon_opts()
            r.u32()  # type index
            scan.lifts[scan.add(FUNC)] = _Lift(core, tuple(opts))
        elif kind == 0x01:  # lower
            if r.byte() != 0x00:
                raise TransformRefused("unexpected lower encoding")
            r.u32()
            r.canon_opts()
            scan.add(CORE_FUNC)
        elif kind in (0x02, 0x03, 0x04, 0x07):  # resource.new / drop / rep / drop async
            r.u32()
            scan.add(CORE_FUNC)
        elif count == 1:  # another built-in making one core func; the section's end bounds it
            scan.add(CORE_FUNC)
            r.pos = end
        else:
            raise TransformRefused(f"cannot skip canon {kind:#x} in a multi-entry section")


# --- encoding ---------------------------------------------------------------------------------


def _u32(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _s33(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if (n == 0 and not b & 0x40) or (n == -1 and b & 0x40):
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def _name(s: str) -> bytes:
    raw = s.encode()
    return _u32(len(raw)) + raw


def _vec(items: list[bytes]) -> bytes:
    return _u32(len(items)) + b"".join(items)


def _section(section_id: int, items: list[bytes]) -> bytes:
    body = _vec(items)
    return bytes([section_id]) + _u32(len(body)) + body


_PRIM_CODES = {"bool": 0x7F, "s8": 0x7E, "u8": 0x7D, "s16": 0x7C, "u16": 0x7B, "s32": 0x7A, "u32": 0x79,
               "s64": 0x78, "u64": 0x77, "f32": 0x76, "f64": 0x75, "char": 0x74, "string": 0x73}


class _Appender:
    """Appends sections and hands out the indices they create."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = dict(counts)
        self.out: list[bytes] = []
        self._defined: dict[abi.Ty, bytes] = {}

    def new(self, sort: str) -> int:
        index = self.counts.get(sort, 0)
        self.counts[sort] = index + 1
        return index

    def valtype(self, t: abi.Ty) -> bytes:
        """The encoded reference to `t`, defining (and for records, exporting) it on first use."""
        if isinstance(t, abi.Prim):
            return bytes([_PRIM_CODES[t.name]])
        if t in self._defined:
            return self._defined[t]
        if isinstance(t, abi.ListOf):
            body = b"\x70" + self.valtype(t.element)
        elif isinstance(t, abi.OptionOf):
            body = b"\x6b" + self.valtype(t.payload)
        elif isinstance(t, abi.Record):
            body = b"\x72" + _vec([_name(n) + self.valtype(ft) for n, ft in t.fields])
        else:  # the handler's types have no enums or results
            raise TransformRefused(f"cannot encode {t}")
        self.out.append(_section(7, [body]))
        index = self.new(TYPE)
        if isinstance(t, abi.Record):
            self.out.append(_section(11, [b"\x00" + _name(t.name + EXPORT_SUFFIX) + b"\x03" + _u32(index) + b"\x00"]))
            index = self.new(TYPE)  # the export's own index: the name a func type may reference
        ref = _s33(index)
        self._defined[t] = ref
        return ref


# --- the transform ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformResult:
    component: bytes
    export: str
    layout: AdapterLayout


def bulk_variant(t: abi.Record) -> abi.Record:
    """`t` with every `body: option<list<u8>>` field (also in nested records) as option<string>."""
    fields: list[tuple[str, abi.Ty]] = []
    for name, ft in t.fields:
        if name == "body" and ft == abi.OptionOf(abi.BYTES):
            fields.append((name, abi.OptionOf(abi.STRING)))
        elif isinstance(ft, abi.Record):
            fields.append((name, bulk_variant(ft)))
        else:
            fields.append((name, ft))
    return abi.Record(t.name, tuple(fields))


def _body_layout(record: abi.Record, path: tuple[str, ...]) -> BodyLayout:
    t: abi.Ty
    offset, t = 0, record
    for step in path:
        if not isinstance(t, abi.Record):
            raise TransformRefused(f"{'.'.join(path)} is not inside records")
        relative, t = abi.field_offset(t, step)
        offset += relative
    if t != abi.OptionOf(abi.BYTES):
        raise TransformRefused(f"{'.'.join(path)} is not option<list<u8>>")
    payload = offset + abi.option_payload_offset(t)
    return BodyLayout(discriminant=offset, pointer=payload, length=payload + 4)


def expected_signature() -> tuple[abi.Record, abi.Record]:
    """(execute-request, execute-response) as the runner's WIT declares them."""
    records = abi.world_records()
    return records["execute-request"], records["execute-response"]


def plan_layout(has_post_return: bool) -> AdapterLayout:
    """The adapter's layout for the handler signature the runner's WIT declares."""
    request, response = expected_signature()
    # The adapter's core signature is (i32) -> i32: the request must be passed by pointer
    # and the response returned by pointer, which the flat counts decide.
    if abi.flat_count(request) <= abi.MAX_FLAT_PARAMS or abi.flat_count(response) <= abi.MAX_FLAT_RESULTS:
        raise TransformRefused("handler signature is not passed and returned through memory")
    return AdapterLayout(
        request_body=_body_layout(request, ("http", "body")),
        response_body=_body_layout(response, ("body",)),
        response_size=abi.size(response),
        response_align=abi.alignment(response),
        has_post_return=has_post_return,
    )


def verify_types(plain: Any, fast: Any) -> None:
    """After compiling the output: the guest's `handler` must have exactly the WIT's types
    (the adapter's offsets were derived from them) and `handler-b64` their bulk variants.
    `plain`/`fast` are wasmtime FuncTypes; raises TransformRefused otherwise."""
    request, response = expected_signature()
    param, result = handler_types(plain)
    if not (abi.same_shape(param, request) and abi.same_shape(result, response)):
        raise TransformRefused("`handler` types differ from the runner world's execute-request/execute-response")
    fast_param, fast_result = handler_types(fast)
    if not (abi.same_shape(fast_param, bulk_variant(request)) and abi.same_shape(fast_result, bulk_variant(response))):
        raise TransformRefused(f"`{FAST_EXPORT}` did not get the expected type")


def _handler_lift(scan: _Scan) -> _Lift:
    if FAST_EXPORT in scan.export_names or any(n.endswith(EXPORT_SUFFIX) for n in scan.export_names):
        raise TransformRefused(f"component already exports `{FAST_EXPORT}` or a `*{EXPORT_SUFFIX}` name")
    index = scan.func_exports.get(PLAIN_EXPORT)
    if index is None:
        raise TransformRefused("no `handler` function export")
    seen = set()
    while index in scan.reexported and index not in seen:  # follow export-of-an-export
        seen.add(index)
        index = scan.reexported[index]
    lift = scan.lifts.get(index)
    if lift is None:
        raise TransformRefused("`handler` is not defined by a canon lift in this component")
    codes = {code for code, _ in lift.opts}
    if codes & {OPT_ASYNC, OPT_CALLBACK}:
        raise TransformRefused("`handler` is lifted async")
    if codes & {OPT_UTF16, OPT_LATIN1_UTF16}:
        raise TransformRefused("`handler` is lifted with a non-utf8 string encoding")
    if not {OPT_MEMORY, OPT_REALLOC} <= codes:
        raise TransformRefused("`handler` lift has no memory or realloc")
    return lift


def transform(data: bytes) -> TransformResult:
    """Append `handler-b64` to `data`. The layout assumes the handler has the WIT's types:
    compile the output and call `verify_types` before using it."""
    scan = _scan(data)
    lift = _handler_lift(scan)
    opts = {code: index for code, index in lift.opts}
    post_return = opts.get(OPT_POST_RETURN)
    layout = plan_layout(post_return is not None)
    request, response = expected_signature()

    out = _Appender(scan.counts)
    # 1. types: the bulk copies of the handler's records, then the function type.
    request_ref = out.valtype(bulk_variant(request))
    response_ref = out.valtype(bulk_variant(response))
    out.out.append(_section(7, [b"\x40" + _vec([_name("request") + request_ref]) + b"\x00" + response_ref]))
    func_type = out.new(TYPE)

    # 2. the adapter, instantiated with the guest's memory, core handler, realloc (and post-return).
    module = adapter_module(layout)
    module_index = out.new(CORE_MODULE)
    out.out.append(b"\x01" + _u32(len(module)) + module)
    memory, realloc = opts[OPT_MEMORY], opts[OPT_REALLOC]
    assert memory is not None and realloc is not None
    bag = [_name("memory") + b"\x02" + _u32(memory), _name("handler") + b"\x00" + _u32(lift.core_func),
           _name("realloc") + b"\x00" + _u32(realloc)]
    if post_return is not None:
        bag.append(_name("post") + b"\x00" + _u32(post_return))
    bag_index = out.new(CORE_INSTANCE)
    adapter_instance = out.new(CORE_INSTANCE)
    out.out.append(_section(2, [b"\x01" + _vec(bag),
                                b"\x00" + _u32(module_index) + _vec([_name("g") + b"\x12" + _u32(bag_index)])]))
    out.out.append(_section(6, [b"\x00\x00\x01" + _u32(adapter_instance) + _name("handler"),
                                b"\x00\x00\x01" + _u32(adapter_instance) + _name("post")]))
    adapter_handler = out.new(CORE_FUNC)
    adapter_post = out.new(CORE_FUNC)

    # 3. the lift: utf8 (as the original, so every other string crosses exactly as before).
    new_opts = [bytes([OPT_UTF8]), bytes([OPT_MEMORY]) + _u32(memory), bytes([OPT_REALLOC]) + _u32(realloc),
                bytes([OPT_POST_RETURN]) + _u32(adapter_post)]
    out.out.append(_section(8, [b"\x00\x00" + _u32(adapter_handler) + _vec(new_opts) + _u32(func_type)]))
    lifted = out.new(FUNC)
    out.out.append(_section(11, [b"\x00" + _name(FAST_EXPORT) + b"\x01" + _u32(lifted) + b"\x00"]))
    return TransformResult(component=data + b"".join(out.out), export=FAST_EXPORT, layout=layout)


def handler_types(func_type: Any) -> tuple[abi.Ty, abi.Ty]:
    """(param, result) of a wasmtime FuncType with one parameter and one result."""
    params = func_type.params
    if len(params) != 1 or func_type.result is None:
        raise TransformRefused("`handler` must take one parameter and return one value")
    try:
        return abi.from_wasmtime(params[0][1]), abi.from_wasmtime(func_type.result)
    except abi.UnsupportedType as exc:
        raise TransformRefused(f"`handler` uses an unsupported type ({exc})") from exc


