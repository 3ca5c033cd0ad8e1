"""Conversion between wasmtime-py component values and Python values.

wasmtime-py exposes records as `Record` objects whose attribute names are the WIT
(kebab-case) field names, so `getattr(r, "tenant-id")` — `r.tenant_id` does not exist.
Provider records are dataclasses with snake_case fields; these helpers map between them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from wasmtime.component import Record, Variant


def rec(**fields: Any) -> Record:
    """A Record from snake_case keyword arguments (stored under kebab-case names)."""
    r = Record()
    for key, value in fields.items():
        setattr(r, key.replace("_", "-"), value)
    return r


def field(r: Any, name: str) -> Any:
    return getattr(r, name.replace("_", "-"))


def to_record(value: Any) -> Any:
    """Dataclasses → Records (recursively through lists/tuples); other values unchanged."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return rec(**{f.name: to_record(getattr(value, f.name)) for f in dataclasses.fields(value)})
    if isinstance(value, list):
        return [to_record(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_record(v) for v in value)
    return value


def from_record(r: Any, cls: type) -> Any:
    """A Record → the dataclass `cls` (nested dataclass fields must be converted by the caller)."""
    return cls(**{f.name: field(r, f.name) for f in dataclasses.fields(cls)})


def ok(value: Any) -> Variant:
    """Tagged `ok` for results whose ok and err map to the same Python class."""
    return Variant("ok", value)


def err(code: str) -> Variant:
    return Variant("err", code)
