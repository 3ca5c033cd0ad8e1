"""Canonical JSON: the exact bytes that are stored and hashed.

The encoding is the restricted subset of RFC 8785 (JCS) that the audit log needs: objects
with ASCII keys sorted by code point, no insignificant whitespace, UTF-8, and no floating
point numbers at all (times are integer microseconds, durations integer milliseconds).
With those restrictions `json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False)` produces exactly the JCS output, so any JCS implementation can
re-derive a record's bytes.

The database stores these bytes verbatim (`bytea`/`blob`), and the leaf hash is computed
over them. Nothing ever re-serializes a parsed record for hashing (PostgreSQL `jsonb`
would reorder keys and drop duplicates).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

# Integers beyond 2**53 do not survive a round trip through JavaScript/IEEE doubles,
# which JCS consumers use; refuse them rather than produce bytes other tools disagree on.
MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalJSONError(ValueError):
    """The value cannot be encoded canonically (float, non-string key, huge int, ...)."""


def _check(value: Any, path: str, depth: int) -> None:
    if depth > 16:
        raise CanonicalJSONError(f"{path}: nested too deeply")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalJSONError(f"{path}: integer outside the interoperable range")
        return
    if isinstance(value, float):
        raise CanonicalJSONError(f"{path}: floats are not allowed (use integer units)")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalJSONError(f"{path}: object keys must be strings")
            if not key.isascii():
                raise CanonicalJSONError(f"{path}: object keys must be ASCII")
            _check(item, f"{path}.{key}", depth + 1)
        return
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]", depth + 1)
        return
    raise CanonicalJSONError(f"{path}: unsupported type {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    """Encode `value` canonically. Raises `CanonicalJSONError` for anything ambiguous."""
    _check(value, "$", 0)
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise CanonicalJSONError(str(exc)) from exc


def is_canonical(data: bytes) -> bool:
    """True if `data` parses and re-encodes to exactly the same bytes."""
    try:
        return canonical_json(json.loads(data)) == data
    except (ValueError, UnicodeDecodeError):
        return False
