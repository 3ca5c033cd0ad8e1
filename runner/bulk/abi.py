"""A small model of the WIT value types the handler uses, read from the runner's WIT,
with the canonical-ABI layout rules (alignment, size, field offsets, flat counts).

The bulk-body adapter reads and writes the body fields of `execute-request` and
`execute-response` in guest memory. Their offsets follow from the WIT record definitions
and the canonical ABI (CanonicalABI.md: "Alignment", "Element Size", "Flattening"), so
they are computed here from `runner/wit/alga/extension.wit` instead of being constants:
a change to the world changes the offsets, or makes the transform refuse.

Only the types the handler's signature can contain are modelled (primitives, string,
list, option, record); anything else raises `UnsupportedType`, which the transform turns
into "keep the plain path".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

WIT_PATH = Path(__file__).resolve().parents[1] / "wit" / "alga" / "extension.wit"

# Canonical ABI limits on flattened core signatures (CanonicalABI.md, "Flattening").
MAX_FLAT_PARAMS = 16
MAX_FLAT_RESULTS = 1


class UnsupportedType(ValueError):
    """A type outside the modelled subset (the transform keeps the plain path)."""


@dataclass(frozen=True)
class Prim:
    name: str  # WIT spelling: "u8", "u16", "string", ...


@dataclass(frozen=True)
class ListOf:
    element: Ty


@dataclass(frozen=True)
class OptionOf:
    payload: Ty


@dataclass(frozen=True)
class Record:
    name: str  # the WIT name; structural comparisons ignore it (wasmtime types carry none)
    fields: tuple[tuple[str, Ty], ...]


@dataclass(frozen=True)
class EnumOf:
    name: str
    cases: tuple[str, ...]


@dataclass(frozen=True)
class ResultOf:
    ok: Ty | None
    err: Ty | None


Ty = Prim | ListOf | OptionOf | Record | EnumOf | ResultOf

U8, STRING = Prim("u8"), Prim("string")
BYTES = ListOf(U8)

# (size, alignment, flat count) of each primitive, for a 32-bit memory.
_PRIM_LAYOUT = {
    "bool": (1, 1, 1), "s8": (1, 1, 1), "u8": (1, 1, 1), "s16": (2, 2, 1), "u16": (2, 2, 1),
    "s32": (4, 4, 1), "u32": (4, 4, 1), "s64": (8, 8, 1), "u64": (8, 8, 1), "f32": (4, 4, 1),
    "f64": (8, 8, 1), "char": (4, 4, 1), "string": (8, 4, 2),
}


def align_to(offset: int, alignment: int) -> int:
    return -(-offset // alignment) * alignment


def _cases(t: OptionOf | ResultOf) -> list[Ty | None]:
    return [None, t.payload] if isinstance(t, OptionOf) else [t.ok, t.err]


def alignment(t: Ty) -> int:
    if isinstance(t, Prim):
        return _PRIM_LAYOUT[t.name][1]
    if isinstance(t, ListOf):
        return 4
    if isinstance(t, EnumOf):
        return _enum_size(t)
    if isinstance(t, OptionOf | ResultOf):  # variants of two cases: u8 discriminant
        return max([1] + [alignment(c) for c in _cases(t) if c is not None])
    return max((alignment(ft) for _, ft in t.fields), default=1)


def _enum_size(t: EnumOf) -> int:
    return 1 if len(t.cases) <= 256 else 2 if len(t.cases) <= 65536 else 4


def size(t: Ty) -> int:
    if isinstance(t, Prim):
        return _PRIM_LAYOUT[t.name][0]
    if isinstance(t, ListOf):
        return 8
    if isinstance(t, EnumOf):
        return _enum_size(t)
    if isinstance(t, OptionOf | ResultOf):
        payload = max([0] + [size(c) for c in _cases(t) if c is not None])
        return align_to(variant_payload_offset(t) + payload, alignment(t))
    end = 0
    for _, ft in t.fields:
        end = align_to(end, alignment(ft)) + size(ft)
    return align_to(end, alignment(t))


def option_payload_offset(t: OptionOf) -> int:
    """The payload follows the 1-byte discriminant, aligned to the payload's alignment."""
    return variant_payload_offset(t)


def variant_payload_offset(t: OptionOf | ResultOf) -> int:
    return align_to(1, max([1] + [alignment(c) for c in _cases(t) if c is not None]))


def flatten(t: Ty) -> list[str]:
    """The core value types `t` flattens to (CanonicalABI.md, "Flattening")."""
    if isinstance(t, Prim):
        return ["i64"] if t.name in ("u64", "s64") else [t.name] if t.name in ("f32", "f64") else \
            ["i32", "i32"] if t.name == "string" else ["i32"]
    if isinstance(t, ListOf):
        return ["i32", "i32"]
    if isinstance(t, EnumOf):
        return ["i32"]
    if isinstance(t, Record):
        return [core for _, ft in t.fields for core in flatten(ft)]
    joined: list[str] = []
    for case in _cases(t):
        for i, core in enumerate(flatten(case) if case is not None else []):
            if i == len(joined):
                joined.append(core)
            elif joined[i] != core:
                joined[i] = "i32" if {joined[i], core} == {"i32", "f32"} else "i64"
    return ["i32", *joined]


def core_signature(params: list[Ty], result: Ty | None) -> tuple[list[str], list[str]]:
    """The core signature of a lowered import (`canon lower`): params spill to memory beyond
    16 flat values, results beyond 1 go to a caller-allocated return pointer."""
    flat_params = [core for p in params for core in flatten(p)]
    if len(flat_params) > MAX_FLAT_PARAMS:
        flat_params = ["i32"]
    flat_results = flatten(result) if result is not None else []
    if len(flat_results) > MAX_FLAT_RESULTS:
        return [*flat_params, "i32"], []
    return flat_params, flat_results


def field_offset(t: Record, name: str) -> tuple[int, Ty]:
    offset = 0
    for field_name, ft in t.fields:
        offset = align_to(offset, alignment(ft))
        if field_name == name:
            return offset, ft
        offset += size(ft)
    raise KeyError(name)


def flat_count(t: Ty) -> int:
    return len(flatten(t))


def same_shape(a: Ty, b: Ty) -> bool:
    """Structural equality (record names ignored, field names and order compared)."""
    if isinstance(a, Record) and isinstance(b, Record):
        return len(a.fields) == len(b.fields) and all(
            na == nb and same_shape(ta, tb) for (na, ta), (nb, tb) in zip(a.fields, b.fields, strict=True))
    if isinstance(a, ListOf) and isinstance(b, ListOf):
        return same_shape(a.element, b.element)
    if isinstance(a, OptionOf) and isinstance(b, OptionOf):
        return same_shape(a.payload, b.payload)
    return isinstance(a, Prim) and a == b


# --- reading the WIT ----------------------------------------------------------------------

_RECORD = re.compile(r"record\s+([a-z][a-z0-9-]*)\s*\{([^}]*)\}")
_ENUM = re.compile(r"enum\s+([a-z][a-z0-9-]*)\s*\{([^}]*)\}")
_LINE_COMMENT = re.compile(r"//[^\n]*")


@cache
def world_records(wit_path: Path = WIT_PATH) -> dict[str, Record]:
    """Every record of the WIT file, with named references resolved (records only)."""
    text = _LINE_COMMENT.sub("", wit_path.read_text())
    raw = {m.group(1): m.group(2) for m in _RECORD.finditer(text)}
    resolved: dict[str, Record] = {}
    enums = world_enums(wit_path)

    def parse_type(expr: str) -> Ty:
        expr = expr.strip()
        if expr in _PRIM_LAYOUT:
            return Prim(expr)
        for ctor, wrap in (("list<", ListOf), ("option<", OptionOf)):
            if expr.startswith(ctor) and expr.endswith(">"):
                return wrap(parse_type(expr[len(ctor):-1]))
        if expr in raw:
            return record(expr)
        if expr in enums:
            return enums[expr]
        raise UnsupportedType(expr)

    def record(name: str) -> Record:
        if name not in resolved:
            fields = []
            for part in _split_fields(raw[name]):
                field_name, _, expr = part.partition(":")
                try:
                    fields.append((field_name.strip(), parse_type(expr)))
                except UnsupportedType:
                    fields.append((field_name.strip(), Prim("<unsupported>")))
            resolved[name] = Record(name, tuple(fields))
        return resolved[name]

    for name in raw:
        record(name)
    return resolved


@cache
def world_enums(wit_path: Path = WIT_PATH) -> dict[str, EnumOf]:
    text = _LINE_COMMENT.sub("", wit_path.read_text())
    return {m.group(1): EnumOf(m.group(1), tuple(c.strip() for c in m.group(2).split(",") if c.strip()))
            for m in _ENUM.finditer(text)}


def _split_fields(body: str) -> list[str]:
    """Split `a: x, b: option<list<u8>>` on top-level commas."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in body:
        depth += (ch == "<") - (ch == ">")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


# --- reading wasmtime's view of a component's types ----------------------------------------


def from_wasmtime(t: Any) -> Ty:
    """The model of a `wasmtime.component` ValType (raises UnsupportedType otherwise)."""
    from wasmtime.component import _types as wt

    prims: dict[type, str] = {wt.Bool: "bool", wt.S8: "s8", wt.U8: "u8", wt.S16: "s16", wt.U16: "u16",
                              wt.S32: "s32", wt.U32: "u32", wt.S64: "s64", wt.U64: "u64", wt.F32: "f32",
                              wt.F64: "f64", wt.Char: "char", wt.String: "string"}
    for cls, name in prims.items():
        if type(t) is cls:
            return Prim(name)
    if isinstance(t, wt.ListType):
        return ListOf(from_wasmtime(t.element))
    if isinstance(t, wt.OptionType):
        return OptionOf(from_wasmtime(t.payload))
    if isinstance(t, wt.RecordType):
        return Record("", tuple((name, from_wasmtime(ft)) for name, ft in t.fields))
    raise UnsupportedType(type(t).__name__)
