"""Publish-time transform for host imports that move bytes: `storage.get`/`put` (the entry's
value) and `http.fetch` (request and response bodies) cross as radix-64 text.

Why nothing existing has to change: a component made by wit-component (componentize-py,
componentize-js, cargo-component, ...) cannot `canon lower` an import that needs the guest's
memory or realloc before the guest's main core instance (which defines them) exists. So the
guest calls such imports through a shim: a table `$imports` filled, after the main instance,
by a `wit-component-fixup` core instance with the lowered functions. Core instances are created
in section order, so a second fixup appended at the end overwrites those table slots before any
export can run. Appended, per supported function:

1. an import of `extgate:bulk/<interface>` whose function is the original one with the bytes
   typed `string` (same flat and in-memory ABI), lowered with the guest's memory, realloc, utf8;
2. an adapter core function with the ORIGINAL core signature: it encodes outgoing bytes into a
   fresh block, calls the fast import, and decodes returned text into a fresh block of exactly
   the bytes' size (what a `list<u8>` lowering would allocate);
3. a second fixup that puts the adapter functions into the shim table's slots.

The host serves `extgate:bulk/*` next to the originals (runner/host/bulk_*.py), with the same
checks. Anything outside this layout raises `TransformRefused`: those imports stay plain.
Offsets and core signatures come from the WIT (`abi`), never constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wasmtime import wat2wasm

from runner.bulk import abi
from runner.bulk.adapter import CODEC_WAT
from runner.bulk.transform import (
    _CORE_SORTS,
    CORE_FUNC,
    CORE_INSTANCE,
    CORE_MODULE,
    CORE_TABLE,
    FUNC,
    INSTANCE,
    OPT_ASYNC,
    OPT_CALLBACK,
    OPT_LATIN1_UTF16,
    OPT_MEMORY,
    OPT_REALLOC,
    OPT_UTF16,
    TYPE,
    TransformRefused,
    _name,
    _Reader,
    _section,
    _u32,
    _vec,
)

_PRIM_CODES = {"bool": 0x7F, "s8": 0x7E, "u8": 0x7D, "s16": 0x7C, "u16": 0x7B, "s32": 0x7A, "u32": 0x79,
               "s64": 0x78, "u64": 0x77, "f32": 0x76, "f64": 0x75, "char": 0x74, "string": 0x73}


@dataclass(frozen=True)
class BulkImport:
    """One import function made bulk: where its bytes are, as the WIT lays them out."""

    interface: str  # the original, e.g. alga:extension/storage
    function: str
    fast_interface: str  # what the host serves, e.g. extgate:bulk/storage
    params: tuple[tuple[str, abi.Ty], ...]
    result: abi.ResultOf
    # Path (record field names) from the flattened params to an outgoing option<list<u8>> or
    # list<u8>, and from the ok payload to an incoming one; None when there is none.
    outgoing: tuple[str, ...] | None
    incoming: tuple[str, ...] | None


def supported_imports() -> list[BulkImport]:
    records, enums = abi.world_records(), abi.world_enums()
    entry, request, response = records["storage-entry"], records["http-request"], records["http-response"]
    storage_result = abi.ResultOf(entry, enums["storage-error"])
    return [
        BulkImport("alga:extension/storage", "get", "extgate:bulk/storage",
                   (("namespace", abi.STRING), ("key", abi.STRING)), storage_result, None, ("value",)),
        BulkImport("alga:extension/storage", "put", "extgate:bulk/storage", (("entry", entry),), storage_result,
                   ("entry", "value"), ("value",)),
        BulkImport("alga:extension/http", "fetch", "extgate:bulk/http", (("request", request),),
                   abi.ResultOf(response, enums["http-error"]), ("request", "body"), ("body",)),
    ]


def bulk_type(t: abi.Ty) -> abi.Ty:
    """`t` with its byte fields (`value: list<u8>`, `body: option<list<u8>>`) as strings."""
    if t == abi.BYTES:
        return abi.STRING
    if t == abi.OptionOf(abi.BYTES):
        return abi.OptionOf(abi.STRING)
    if isinstance(t, abi.Record):
        return abi.Record(t.name, tuple((n, bulk_type(ft)) for n, ft in t.fields))
    if isinstance(t, abi.ResultOf):
        return abi.ResultOf(None if t.ok is None else bulk_type(t.ok), t.err)
    return t


# --- scanning the shim layout -----------------------------------------------------------------


@dataclass
class _Layout:
    counts: dict[str, int] = field(default_factory=dict)
    instance_imports: dict[str, int] = field(default_factory=dict)
    func_aliases: dict[int, tuple[int, str]] = field(default_factory=dict)  # func -> (instance, export)
    lowers: dict[int, tuple[int, dict[int, int | None]]] = field(default_factory=dict)  # core func -> (func, opts)
    bags: dict[int, dict[str, tuple[str, int]]] = field(default_factory=dict)  # core instance -> exports
    instantiations: dict[int, tuple[int, dict[str, int]]] = field(default_factory=dict)  # -> (module, args)
    modules: dict[int, bytes] = field(default_factory=dict)
    import_names: set[str] = field(default_factory=set)

    def add(self, sort: str, n: int = 1) -> int:
        first = self.counts.get(sort, 0)
        self.counts[sort] = first + n
        return first


def _scan_layout(data: bytes) -> _Layout:
    if data[:4] != b"\0asm" or data[4:8] != b"\x0d\x00\x01\x00":
        raise TransformRefused("not a component binary (layer 1, version 0xd)")
    layout, pos = _Layout(), 8
    while pos < len(data):
        head = _Reader(data, pos, len(data))
        section_id = head.byte()
        size = head.u32()
        start, end = head.pos, head.pos + size
        r = _Reader(data, start, end)
        if section_id == 0:
            pass
        elif section_id == 1:
            layout.modules[layout.add(CORE_MODULE)] = data[start:end]
        elif section_id == 2:
            for _ in range(r.u32()):
                kind = r.byte()
                index = layout.add(CORE_INSTANCE)
                if kind == 0x00:
                    module = r.u32()
                    args = {}
                    for _ in range(r.u32()):
                        arg = r.name()
                        if r.byte() != 0x12:
                            raise TransformRefused("unexpected core instantiate argument")
                        args[arg] = r.u32()
                    layout.instantiations[index] = (module, args)
                elif kind == 0x01:
                    exports = {}
                    for _ in range(r.u32()):
                        export = r.name()
                        core_sort = r.byte()
                        if core_sort not in _CORE_SORTS:
                            raise TransformRefused(f"unknown core sort {core_sort:#x}")
                        exports[export] = (_CORE_SORTS[core_sort], r.u32())
                    layout.bags[index] = exports
                else:
                    raise TransformRefused(f"unknown core instance kind {kind:#x}")
        elif section_id in (3, 5, 7):
            layout.add({3: "core-type", 5: INSTANCE, 7: TYPE}[section_id], r.u32())
        elif section_id == 4:
            layout.add("component")
        elif section_id == 6:
            for _ in range(r.u32()):
                sort = r.sort()
                target = r.byte()
                if target in (0x00, 0x01):
                    instance = r.u32()
                    export = r.name()
                    index = layout.add(sort)
                    if target == 0x00 and sort == FUNC:
                        layout.func_aliases[index] = (instance, export)
                elif target == 0x02:
                    r.u32()
                    r.u32()
                    layout.add(sort)
                else:
                    raise TransformRefused(f"unknown alias target {target:#x}")
        elif section_id == 8:
            count = r.u32()
            for _ in range(count):
                kind = r.byte()
                if kind == 0x00:
                    r.byte()
                    r.u32()
                    r.canon_opts()
                    r.u32()
                    layout.add(FUNC)
                elif kind == 0x01:
                    r.byte()
                    func = r.u32()
                    opts = dict(r.canon_opts())
                    layout.lowers[layout.add(CORE_FUNC)] = (func, opts)
                elif kind in (0x02, 0x03, 0x04, 0x07):
                    r.u32()
                    layout.add(CORE_FUNC)
                elif count == 1:
                    layout.add(CORE_FUNC)
                    r.pos = end
                else:
                    raise TransformRefused(f"cannot skip canon {kind:#x} in a multi-entry section")
        elif section_id == 10:
            for _ in range(r.u32()):
                name = r.extern_name()
                sort = r.extern_desc()
                index = layout.add(sort)
                layout.import_names.add(name.split("@")[0])
                if sort == INSTANCE:
                    layout.instance_imports[name.split("@")[0]] = index
        elif section_id == 11:
            for _ in range(r.u32()):
                r.extern_name()
                sort = r.sort()
                r.u32()
                if r.byte() == 0x01:
                    r.extern_desc()
                layout.add(sort)
        else:
            raise TransformRefused(f"unsupported component section {section_id}")
        pos = end
    return layout


def _core_table_import(module: bytes) -> tuple[str, str]:
    """(module, field) of the one table a fixup core module imports."""
    if module[:8] != b"\0asm\x01\0\0\0":
        raise TransformRefused("fixup is not a core module")
    pos = 8
    while pos < len(module):
        head = _Reader(module, pos, len(module))
        section_id = head.byte()
        size = head.u32()
        r = _Reader(module, head.pos, head.pos + size)
        pos = head.pos + size
        if section_id != 2:
            continue
        tables = []
        for _ in range(r.u32()):
            mod, name, kind = r.name(), r.name(), r.byte()
            if kind == 0x00:
                r.u32()
            elif kind == 0x01:
                r.byte()
                flags = r.byte()
                r.u32()
                if flags & 1:
                    r.u32()
                tables.append((mod, name))
            elif kind == 0x02:
                flags = r.byte()
                r.u32()
                if flags & 1:
                    r.u32()
            elif kind == 0x03:
                r.byte()
                r.byte()
            else:
                raise TransformRefused("unknown core import kind in the fixup")
        if len(tables) != 1:
            raise TransformRefused("fixup does not import exactly one table")
        return tables[0]
    raise TransformRefused("fixup imports nothing")


@dataclass(frozen=True)
class _Slot:
    spec: BulkImport
    slot: int
    table_source: tuple[int, str]  # (core instance, export name) providing the shim table
    memory: int
    realloc: int


def _find_slot(layout: _Layout, spec: BulkImport) -> _Slot:
    what = f"{spec.interface}.{spec.function}"
    instance = layout.instance_imports.get(spec.interface)
    if instance is None:
        raise TransformRefused(f"{what} not imported")
    funcs = [f for f, target in layout.func_aliases.items() if target == (instance, spec.function)]
    lowers = [(cf, opts) for cf, (f, opts) in layout.lowers.items() if f in funcs]
    if len(lowers) != 1:
        raise TransformRefused(f"{what}: expected one canon lower, found {len(lowers)}")
    lowered, opts = lowers[0]
    if {OPT_ASYNC, OPT_CALLBACK, OPT_UTF16, OPT_LATIN1_UTF16} & set(opts):
        raise TransformRefused(f"{what}: not a sync utf8 lowering")
    memory, realloc = opts.get(OPT_MEMORY), opts.get(OPT_REALLOC)
    if memory is None or realloc is None:
        raise TransformRefused(f"{what}: lowered without memory or realloc")
    holders = [(bag, name) for bag, exports in layout.bags.items() for name, target in exports.items()
               if target == (CORE_FUNC, lowered)]
    if len(holders) != 1 or not holders[0][1].isdigit():
        raise TransformRefused(f"{what}: not in wit-component's shim layout")
    bag, slot = holders[0]
    fixups = [(module, args) for module, args in layout.instantiations.values() if bag in args.values()]
    if len(fixups) != 1:
        raise TransformRefused(f"{what}: no single fixup instance fills its slot")
    module, args = fixups[0]
    table_module, table_field = _core_table_import(layout.modules[module])
    source = args.get(table_module)
    if source is None:
        raise TransformRefused(f"{what}: the fixup's table has no provider")
    return _Slot(spec, int(slot), (source, table_field), memory, realloc)


# --- encoding the fast interfaces -------------------------------------------------------------


class _InstanceType:
    """Declarations of one component instance type (its own type index space)."""

    def __init__(self) -> None:
        self.decls: list[bytes] = []
        self.types = 0
        self._defined: dict[abi.Ty, int] = {}

    def _define(self, body: bytes) -> int:
        self.decls.append(b"\x01" + body)
        self.types += 1
        return self.types - 1

    def _export_type(self, name: str, index: int) -> int:
        self.decls.append(b"\x04\x00" + _name(name) + b"\x03\x00" + _u32(index))
        self.types += 1
        return self.types - 1

    def ref(self, t: abi.Ty) -> bytes:
        if isinstance(t, abi.Prim):
            return bytes([_PRIM_CODES[t.name]])
        if t not in self._defined:
            if isinstance(t, abi.ListOf):
                index = self._define(b"\x70" + self.ref(t.element))
            elif isinstance(t, abi.OptionOf):
                index = self._define(b"\x6b" + self.ref(t.payload))
            elif isinstance(t, abi.ResultOf):
                ok = b"\x00" if t.ok is None else b"\x01" + self.ref(t.ok)
                err = b"\x00" if t.err is None else b"\x01" + self.ref(t.err)
                index = self._define(b"\x6a" + ok + err)
            elif isinstance(t, abi.EnumOf):
                index = self._export_type(t.name, self._define(b"\x6d" + _vec([_name(c) for c in t.cases])))
            else:
                body = b"\x72" + _vec([_name(n) + self.ref(ft) for n, ft in t.fields])
                index = self._export_type(t.name, self._define(body))
            self._defined[t] = index
        return _u32(self._defined[t])

    def function(self, name: str, params: tuple[tuple[str, abi.Ty], ...], result: abi.Ty) -> None:
        refs = [_name(n) + self.ref(bulk_type(t)) for n, t in params]
        result_ref = self.ref(bulk_type(result))
        index = self._define(b"\x40" + _vec(refs) + b"\x00" + result_ref)
        self.decls.append(b"\x04\x00" + _name(name) + b"\x01" + _u32(index))

    def encode(self) -> bytes:
        return b"\x42" + _vec(self.decls)


# --- the adapter ------------------------------------------------------------------------------


def _byte_field_offset(params: tuple[tuple[str, abi.Ty], ...], path: tuple[str, ...]) -> tuple[int, bool]:
    """(index of the first flat param of the bytes field, whether it is an option)."""
    index = 0
    ty: abi.Ty | None = None
    fields: tuple[tuple[str, abi.Ty], ...] = params
    for depth, step in enumerate(path):
        for name, ft in fields:
            if name == step:
                ty = ft
                break
            index += len(abi.flatten(ft))
        else:
            raise TransformRefused(f"no field {step}")
        if depth < len(path) - 1:
            if not isinstance(ty, abi.Record):
                raise TransformRefused(f"{step} is not a record")
            fields = ty.fields
    if ty == abi.BYTES:
        return index, False
    if ty == abi.OptionOf(abi.BYTES):
        return index, True
    raise TransformRefused(f"{'.'.join(path)} is not bytes")


def _incoming_offset(result: abi.ResultOf, path: tuple[str, ...]) -> tuple[int, bool]:
    """(offset of the bytes field inside the result in memory, whether it is an option)."""
    if not isinstance(result.ok, abi.Record):
        raise TransformRefused("ok payload is not a record")
    offset = abi.variant_payload_offset(result)
    ty: abi.Ty = result.ok
    for step in path:
        if not isinstance(ty, abi.Record):
            raise TransformRefused(f"{step} is not inside a record")
        relative, ty = abi.field_offset(ty, step)
        offset += relative
    if ty == abi.BYTES:
        return offset, False
    if isinstance(ty, abi.OptionOf) and ty.payload == abi.BYTES:
        return offset + abi.option_payload_offset(ty), True
    raise TransformRefused(f"{'.'.join(path)} is not bytes")


def _adapter_function(index: int, slot: _Slot) -> tuple[str, str, str]:
    """(import of the fast function, exported adapter function, its core signature text)."""
    spec = slot.spec
    params, results = abi.core_signature([t for _, t in spec.params], spec.result)
    if results or len(params) > abi.MAX_FLAT_PARAMS + 1:
        raise TransformRefused(f"{spec.function}: unexpected core signature")
    signature = f"(param {' '.join(params)})"
    locals_ = [f"(local.get {i})" for i in range(len(params))]
    body = []
    if spec.outgoing is not None:
        first, optional = _byte_field_offset(spec.params, spec.outgoing)
        ptr, length = (first + 1, first + 2) if optional else (first, first + 1)
        guard = f"(local.get {first})" if optional else "(i32.const 1)"
        # Encode the outgoing bytes into a fresh block; the fast import gets its (ptr, len).
        body.append(f"(if {guard} (then (call $text_for (local.get {ptr}) (local.get {length}))"
                    f" (local.set {length}) (local.set {ptr})))")
    body.append(f"(call $fast{index} {' '.join(locals_)})")
    if spec.incoming is not None:
        offset, optional = _incoming_offset(spec.result, spec.incoming)
        retptr = f"(local.get {len(params) - 1})"
        disc = abi.field_offset(spec.result.ok, spec.incoming[0])[0] + abi.variant_payload_offset(spec.result) \
            if optional and isinstance(spec.result.ok, abi.Record) else None
        condition = f"(i32.eqz (i32.load8_u {retptr}))"
        if disc is not None:
            condition = f"(i32.and {condition} (i32.ne (i32.load8_u offset={disc} {retptr}) (i32.const 0)))"
        body.append(f"(if {condition} (then (call $bytes_at (i32.add {retptr} (i32.const {offset})))))")
    fast_import = f'(import "g" "fast{index}" (func $fast{index} {signature}))'
    export = f'(func (export "adapted{index}") {signature} {" ".join(body)})'
    return fast_import, export, signature


_ADAPTER_HELPERS = """
  ;; Encode n bytes at p into a fresh block: returns (text pointer, text length).
  (func $text_for (param $p i32) (param $n i32) (result i32 i32)
    (local $chars i32) (local $q i32)
    (if (i32.gt_u (local.get $n) (i32.const 0xBFFFFFFC)) (then unreachable))
    (local.set $chars (i32.add (i32.mul (i32.div_u (local.get $n) (i32.const 3)) (i32.const 4))
      (select (i32.add (i32.rem_u (local.get $n) (i32.const 3)) (i32.const 1)) (i32.const 0)
              (i32.rem_u (local.get $n) (i32.const 3)))))
    (local.set $q (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $chars)))
    (call $encode (local.get $p) (local.get $n) (local.get $q))
    (local.get $q) (local.get $chars))
  ;; The (ptr, len) pair at `slot` holds text the host returned: decode it into a fresh block of
  ;; exactly the bytes' size and point the pair at it (the text block stays until the store ends).
  (func $bytes_at (param $slot i32)
    (local $p i32) (local $chars i32) (local $n i32) (local $q i32)
    (local.set $p (i32.load (local.get $slot)))
    (local.set $chars (i32.load offset=4 (local.get $slot)))
    (if (i32.eq (i32.and (local.get $chars) (i32.const 3)) (i32.const 1)) (then unreachable))
    (if (i32.eqz (local.get $chars)) (then (return)))
    (local.set $n (i32.add (i32.mul (i32.shr_u (local.get $chars) (i32.const 2)) (i32.const 3))
      (select (i32.sub (i32.and (local.get $chars) (i32.const 3)) (i32.const 1)) (i32.const 0)
              (i32.and (local.get $chars) (i32.const 3)))))
    (local.set $q (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $n)))
    (call $decode (local.get $p) (local.get $chars) (local.get $q))
    (i32.store (local.get $slot) (local.get $q))
    (i32.store offset=4 (local.get $slot) (local.get $n)))
"""


def _adapter_module(slots: list[_Slot]) -> tuple[bytes, list[str]]:
    parts = [_adapter_function(i, s) for i, s in enumerate(slots)]
    wat = "\n".join(['(module', '  (import "g" "memory" (memory 0))',
                     '  (import "g" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))',
                     *("  " + p[0] for p in parts), CODEC_WAT, _ADAPTER_HELPERS,
                     *("  " + p[1] for p in parts), ")"])
    return bytes(wat2wasm(wat)), [p[2] for p in parts]


def _fixup_module(slots: list[_Slot], signatures: list[str], table_field: str) -> bytes:
    lines = ["(module", f'  (import "" "{table_field}" (table 0 funcref))']
    lines += [f'  (import "" "f{i}" (func $f{i} {sig}))' for i, sig in enumerate(signatures)]
    lines += [f"  (elem (i32.const {s.slot}) func $f{i})" for i, s in enumerate(slots)]
    lines.append(")")
    return bytes(wat2wasm("\n".join(lines)))


# --- the transform ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportsResult:
    component: bytes
    functions: tuple[str, ...]  # e.g. ("alga:extension/storage.get", ...)
    notes: tuple[str, ...]  # why the other supported imports stayed plain


def transform_imports(data: bytes) -> ImportsResult:
    """Make every supported import the component uses bulk; refuses only when none can be."""
    layout = _scan_layout(data)
    if any(name.startswith("extgate:bulk/") for name in layout.import_names):
        raise TransformRefused("component already imports extgate:bulk/*")
    slots, notes = [], []
    for spec in supported_imports():
        if spec.interface not in layout.instance_imports:
            continue
        try:
            slots.append(_find_slot(layout, spec))
        except TransformRefused as exc:
            notes.append(str(exc))
    if not slots:
        raise TransformRefused("; ".join(notes) or "no import that moves bytes")
    memories = {(s.memory, s.realloc) for s in slots}
    tables = {s.table_source for s in slots}
    if len(memories) != 1 or len(tables) != 1:
        raise TransformRefused("imports use different memories or shim tables")
    (memory, realloc), (table_instance, table_field) = memories.pop(), tables.pop()

    counts = dict(layout.counts)

    def new(sort: str) -> int:
        index = counts.get(sort, 0)
        counts[sort] = index + 1
        return index

    out: list[bytes] = []
    # 1. the fast interfaces: a type, an import, aliases of their functions, lowerings.
    lowered: list[int] = []
    by_interface: dict[str, list[_Slot]] = {}
    for s in slots:
        by_interface.setdefault(s.spec.fast_interface, []).append(s)
    fast_funcs: dict[int, int] = {}
    for interface, members in by_interface.items():
        itype = _InstanceType()
        for s in members:
            itype.function(s.spec.function, s.spec.params, s.spec.result)
        out.append(_section(7, [itype.encode()]))
        type_index = new(TYPE)
        out.append(_section(10, [b"\x00" + _name(interface) + b"\x05" + _u32(type_index)]))
        instance = new(INSTANCE)
        for s in members:
            out.append(_section(6, [b"\x01\x00" + _u32(instance) + _name(s.spec.function)]))
            fast_funcs[slots.index(s)] = new(FUNC)
    options = _vec([b"\x00", bytes([OPT_MEMORY]) + _u32(memory), bytes([OPT_REALLOC]) + _u32(realloc)])
    for i in range(len(slots)):
        out.append(_section(8, [b"\x01\x00" + _u32(fast_funcs[i]) + options]))
        lowered.append(new(CORE_FUNC))
    # 2. the adapter, instantiated with the guest's memory and realloc and the fast lowerings.
    adapter, signatures = _adapter_module(slots)
    adapter_module = new(CORE_MODULE)
    out.append(b"\x01" + _u32(len(adapter)) + adapter)
    bag = [_name("memory") + b"\x02" + _u32(memory), _name("realloc") + b"\x00" + _u32(realloc)]
    bag += [_name(f"fast{i}") + b"\x00" + _u32(f) for i, f in enumerate(lowered)]
    bag_index, adapter_instance = new(CORE_INSTANCE), new(CORE_INSTANCE)
    out.append(_section(2, [b"\x01" + _vec(bag),
                            b"\x00" + _u32(adapter_module) + _vec([_name("g") + b"\x12" + _u32(bag_index)])]))
    adapted = []
    for i in range(len(slots)):
        out.append(_section(6, [b"\x00\x00\x01" + _u32(adapter_instance) + _name(f"adapted{i}")]))
        adapted.append(new(CORE_FUNC))
    # 3. the second fixup: the shim's table (from the bag or instance that gave it to the first).
    provider = layout.bags.get(table_instance)
    if provider is not None:
        sort, table = provider.get(table_field, ("", -1))
        if sort != CORE_TABLE:
            raise TransformRefused("the fixup's table provider does not export a table")
    else:
        out.append(_section(6, [b"\x00\x01\x01" + _u32(table_instance) + _name(table_field)]))
        table = new(CORE_TABLE)
    fixup = _fixup_module(slots, signatures, table_field)
    fixup_module = new(CORE_MODULE)
    out.append(b"\x01" + _u32(len(fixup)) + fixup)
    fixup_bag = [_name(table_field) + b"\x01" + _u32(table)]
    fixup_bag += [_name(f"f{i}") + b"\x00" + _u32(f) for i, f in enumerate(adapted)]
    fixup_bag_index, _fixup_instance = new(CORE_INSTANCE), new(CORE_INSTANCE)
    out.append(_section(2, [b"\x01" + _vec(fixup_bag),
                            b"\x00" + _u32(fixup_module) + _vec([_name("") + b"\x12" + _u32(fixup_bag_index)])]))
    return ImportsResult(component=data + b"".join(out),
                         functions=tuple(f"{s.spec.interface}.{s.spec.function}" for s in slots),
                         notes=tuple(notes))


def export_only_artifact(data: bytes, target: object) -> None:
    """Benchmarks and tests only: serialize `data` with the export transform but plain imports
    to `target` (a .cwasm path), with a report naming the bulk export - the baseline that the
    import transform is compared with in the same run."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    from wasmtime.component import Component

    from runner.bulk.transform import FAST_EXPORT, TRANSFORM_VERSION, transform
    from runner.compiler import ComponentReport
    from runner.engine import get_engine, wasmtime_version

    path = Path(str(target))
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = get_engine()
    path.write_bytes(Component(engine.engine, transform(data).component).serialize())
    report = ComponentReport(content_hash="sha256:" + path.stem, wasmtime_version=wasmtime_version(),
                             engine_fingerprint=engine.options.fingerprint(), imports=[], exports=[],
                             artifact=str(path), compile_ms=0.0, bulk_export=FAST_EXPORT,
                             transform_version=TRANSFORM_VERSION, bulk_imports_note="baseline: imports plain")
    path.with_suffix(".json").write_text(json.dumps(asdict(report)))

