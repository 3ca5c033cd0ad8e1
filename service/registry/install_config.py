"""Install config: a string map, fully replaced on every write, each write a new version id."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from service.db import Database
from service.db.models import InstallConfig, new_id, utcnow
from service.errors import Conflict, InvalidInput
from service.registry.installs import get_install
from service.registry.versioned_rows import compare_and_set

KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_KEYS = 256
MAX_VALUE_BYTES = 8 * 1024
MAX_TOTAL_BYTES = 64 * 1024


def validate_config(values: Any) -> dict[str, str]:
    if not isinstance(values, dict):
        raise InvalidInput("config must be an object of string values", code="invalid_config")
    problems: list[str] = []
    if len(values) > MAX_KEYS:
        problems.append(f"at most {MAX_KEYS} keys")
    total = 0
    for key, value in values.items():
        if not isinstance(key, str) or not KEY_RE.fullmatch(key):
            problems.append(f"key {key!r}: use 1-128 of A-Z a-z 0-9 _ . -")
        if not isinstance(value, str):
            problems.append(f"key {key!r}: value must be a string")
            continue
        size = len(value.encode())
        total += size
        if size > MAX_VALUE_BYTES:
            problems.append(f"key {key!r}: value over {MAX_VALUE_BYTES} bytes")
    if total > MAX_TOTAL_BYTES:
        problems.append(f"config over {MAX_TOTAL_BYTES} bytes in total")
    if problems:
        raise InvalidInput({"message": "invalid config", "problems": problems}, code="invalid_config")
    return dict(values)


def set_config(
    db: Database,
    tenant_id: str,
    install_id: str,
    values: Any,
    *,
    expected_version: str | None = None,
    on_write: Callable[[Session, InstallConfig | None], None] | None = None,
) -> InstallConfig:
    """Replace the whole map. With `expected_version`, refuse if someone wrote in between.
    `on_write` runs in the write's transaction (see `compare_and_set`)."""
    clean = validate_config(values)

    def compute(session: Session, current: InstallConfig | None) -> dict[str, Any]:
        get_install(session, tenant_id, install_id)
        if expected_version is not None and (current.version if current else None) != expected_version:
            raise Conflict(
                {
                    "message": "config changed since you read it",
                    "current_version": current.version if current else None,
                },
                code="version_conflict",
            )
        fields = {"values": clean, "version": new_id(), "updated_at": utcnow()}
        if current is None:
            fields |= {"install_id": install_id, "tenant_id": tenant_id, "revision": 1}
        return fields

    row = compare_and_set(db, InstallConfig, install_id, compute, on_write=on_write)
    assert row is not None
    return row


def get_config(session: Session, tenant_id: str, install_id: str) -> InstallConfig | None:
    get_install(session, tenant_id, install_id)
    row = session.get(InstallConfig, install_id)
    return row if row is not None and row.tenant_id == tenant_id else None
