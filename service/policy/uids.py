"""Entity references as people type them: `ExtGate::User::"alice"`, `User::"alice"`, `alice`."""

from __future__ import annotations

import json
import re
from typing import Any

from service.policy.model import ACTION_TYPE, NAMESPACE, EntityRef

_UID_RE = re.compile(r'^\s*((?:[A-Za-z_][A-Za-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)::"((?:[^"\\]|\\.)*)"\s*$')


class UidError(ValueError):
    pass


def parse_uid(value: Any, *, default_type: str | None = None) -> EntityRef:
    """Accept {"type","id"}, `Type::"id"` (namespace optional) or a bare id with `default_type`."""
    if isinstance(value, EntityRef):
        return value
    if isinstance(value, dict):
        if "__entity" in value:
            value = value["__entity"]
        if isinstance(value.get("type"), str) and isinstance(value.get("id"), str):
            return EntityRef(_qualify(value["type"]), value["id"])
        raise UidError(f"not an entity reference: {value!r}")
    if not isinstance(value, str) or not value.strip():
        raise UidError(f"not an entity reference: {value!r}")
    match = _UID_RE.match(value)
    if match:
        raw_id = json.loads(f'"{match.group(2)}"')
        return EntityRef(_qualify(match.group(1)), raw_id)
    if default_type is None or '"' in value or "::" in value:
        raise UidError(f'not an entity reference: {value!r} (expected Type::"id")')
    return EntityRef(_qualify(default_type), value.strip())


def parse_action(value: Any) -> str:
    """An action id from `ExtGate::Action::"read"`, `Action::"read"` or `read`."""
    ref = parse_uid(value, default_type="Action")
    if ref.type != ACTION_TYPE:
        raise UidError(f"not an action: {value!r}")
    return ref.id


def _qualify(etype: str) -> str:
    return etype if "::" in etype else f"{NAMESPACE}::{etype}"
