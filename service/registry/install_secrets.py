"""Install secrets: merged writes, sealed with AES-256-GCM, only key names ever read back.

A write merges into the current map (a null value deletes that key), re-seals with the
keyring's active key under a new version id, and records the key names in clear so
reads never need to open the envelope. Rotation re-seals the same values with the
newest key (and a new version, so runner caches drop the old plaintext).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from runner.contract.envelope import EnvelopeError, Keyring, SecretEnvelope, open_envelope, seal
from service.db import Database
from service.db.models import InstallSecrets, new_id, utcnow
from service.errors import Conflict, InvalidInput
from service.registry.installs import get_install
from service.registry.versioned_rows import compare_and_set

# Runs in the write's transaction (its audit record); raising rolls the write back.
OnWrite = Callable[[Session, InstallSecrets | None], None]

KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_KEYS = 128
MAX_VALUE_BYTES = 16 * 1024

UNSET: Any = object()  # "not given" (None means "no expiry")


def validate_changes(changes: Any) -> dict[str, str | None]:
    if not isinstance(changes, dict) or not changes:
        raise InvalidInput("secrets must be a non-empty object; null deletes a key", code="invalid_secrets")
    problems: list[str] = []
    for key, value in changes.items():
        if not isinstance(key, str) or not KEY_RE.fullmatch(key):
            problems.append(f"key {key!r}: use 1-128 of A-Z a-z 0-9 _ . -")
        elif value is not None and not isinstance(value, str):
            problems.append(f"key {key!r}: value must be a string or null")
        elif isinstance(value, str) and len(value.encode()) > MAX_VALUE_BYTES:
            problems.append(f"key {key!r}: value over {MAX_VALUE_BYTES} bytes")
    if problems:
        # Key names only: a value never appears in an error.
        raise InvalidInput({"message": "invalid secrets", "problems": problems}, code="invalid_secrets")
    return dict(changes)


def _open_current(row: InstallSecrets, keyring: Keyring) -> dict[str, str]:
    try:
        return open_envelope(
            SecretEnvelope.model_validate(row.envelope),
            keyring=keyring,
            tenant_id=row.tenant_id,
            install_id=row.install_id,
            check_expiry=False,
        )
    except EnvelopeError as exc:
        raise Conflict(
            "stored secrets cannot be opened with the configured keyring", code="secrets_unreadable"
        ) from exc


def _sealed_fields(
    values: dict[str, str], keyring: Keyring, tenant_id: str, install_id: str, expires_at: datetime | None
) -> dict[str, Any]:
    version = new_id()
    envelope = seal(
        values, keyring=keyring, tenant_id=tenant_id, install_id=install_id, version=version, expires_at=expires_at
    )
    return {
        "envelope": envelope.model_dump(mode="json"),
        "key_names": sorted(values),
        "version": version,
        "key_id": envelope.key_id,
        "expires_at": expires_at,
        "updated_at": utcnow(),
    }


def set_secrets(
    db: Database,
    keyring: Keyring,
    tenant_id: str,
    install_id: str,
    changes: Any,
    *,
    expires_at: datetime | None = UNSET,
    on_write: OnWrite | None = None,
) -> InstallSecrets | None:
    """Merge `changes` into the install's secrets. Returns None when the result is empty.
    `on_write` runs in the write's transaction (see `compare_and_set`)."""
    clean = validate_changes(changes)
    if expires_at is not UNSET and expires_at is not None:
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if expires_at <= datetime.now(UTC):
            raise InvalidInput("expires_at must be in the future", code="invalid_secrets")

    def compute(session: Session, current: InstallSecrets | None) -> dict[str, Any] | None:
        get_install(session, tenant_id, install_id)
        values = _open_current(current, keyring) if current else {}
        for key, value in clean.items():
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
        if not values:
            return None
        if len(values) > MAX_KEYS:
            raise InvalidInput(f"at most {MAX_KEYS} secrets per install", code="invalid_secrets")
        expiry = (current.expires_at if current else None) if expires_at is UNSET else expires_at
        fields = _sealed_fields(values, keyring, tenant_id, install_id, expiry)
        if current is None:
            fields |= {"install_id": install_id, "tenant_id": tenant_id, "revision": 1}
        return fields

    return compare_and_set(db, InstallSecrets, install_id, compute, on_write=on_write)


def rotate_secrets(
    db: Database, keyring: Keyring, tenant_id: str, install_id: str, *, on_write: OnWrite | None = None
) -> InstallSecrets | None:
    """Re-seal the current values under the keyring's active key (new version id)."""

    def compute(session: Session, current: InstallSecrets | None) -> dict[str, Any] | None:
        get_install(session, tenant_id, install_id)
        if current is None:
            return None
        return _sealed_fields(_open_current(current, keyring), keyring, tenant_id, install_id, current.expires_at)

    return compare_and_set(db, InstallSecrets, install_id, compute, on_write=on_write)


def stale_installs(db: Database, keyring: Keyring) -> list[tuple[str, str]]:
    """(tenant, install) of every envelope not sealed with the keyring's active key."""
    with db.session() as session:
        return [
            (row.tenant_id, row.install_id)
            for row in session.exec(select(InstallSecrets).where(InstallSecrets.key_id != keyring.active_key_id))
        ]


def get_secrets_meta(session: Session, tenant_id: str, install_id: str) -> InstallSecrets | None:
    get_install(session, tenant_id, install_id)
    row = session.get(InstallSecrets, install_id)
    return row if row is not None and row.tenant_id == tenant_id else None
