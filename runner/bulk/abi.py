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


Ty = Prim | ListOf | OptionOf | Record

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


def alignment(t: Ty) -> int:
    if isinstance(t, Prim):
        return _PRIM_LAYOUT[t.name][1]
    if isinstance(t, ListOf):
        return 4
    if isinstance(t, OptionOf):  # variant {none, some(T)}: u8 discriminant
        return max(1, alignment(t.payload))
    return max((alignment(ft) for _, ft in t.fields), default=1)


def size(t: Ty) -> int:
    if isinstance(t, Prim):
        return _PRIM_LAYOUT[t.name][0]
    if isinstance(t, ListOf):
        return 8
    if isinstance(t, OptionOf):
        return align_to(option_payload_offset(t) + size(t.payload), alignment(t))
    end = 0
    for _, ft in t.fields:
        end = align_to(end, alignment(ft)) + size(ft)
    return align_to(end, alignment(t))


def option_payload_offset(t: OptionOf) -> int:
    """The payload follows the 1-byte discriminant, aligned to the payload's alignment."""
    return align_to(1, alignment(t.payload))


def field_offset(t: Record, name: str) -> tuple[int, Ty]:
    offset = 0
    for field_name, ft in t.fields:
        offset = align_to(offset, alignment(ft))
        if field_name == name:
            return offset, ft
        offset += size(ft)
    raise KeyError(name)


def flat_count(t: Ty) -> int:
    if isinstance(t, Prim):
        return _PRIM_LAYOUT[t.name][2]
    if isinstance(t, ListOf):
        return 2
    if isinstance(t, OptionOf):
        return 1 + flat_count(t.payload)
    return sum(flat_count(ft) for _, ft in t.fields)


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
_LINE_COMMENT = re.compile(r"//[^\n]*")


@cache
def world_records(wit_path: Path = WIT_PATH) -> dict[str, Record]:
    """Every record of the WIT file, with named references resolved (records only)."""
    text = _LINE_COMMENT.sub("", wit_path.read_text())
    raw = {m.group(1): m.group(2) for m in _RECORD.finditer(text)}
    resolved: dict[str, Record] = {}

    def parse_type(expr: str) -> Ty:
        expr = expr.strip()
        if expr in _PRIM_LAYOUT:
            return Prim(expr)
        for ctor, wrap in (("list<", ListOf), ("option<", OptionOf)):
            if expr.startswith(ctor) and expr.endswith(">"):
                return wrap(parse_type(expr[len(ctor):-1]))
        if expr in raw:
            return record(expr)
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


def _split_fields(body: str) -> list[str]:
    """Split `a: x, b: option<list<u8>>` on top-level commas."""
    parts, depth, current = [], 0, []
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
