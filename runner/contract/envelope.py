"""Sealed secret envelopes (AES-256-GCM under a key id from a keyring).

The gateway seals at write time and ships the envelope to the runner, which is the only
place it is opened. The associated data binds an envelope to its tenant, install and
version, so a ciphertext copied to another install (or replayed as another version) does
not open. There is no plaintext fallback: a keyring is required to seal.
"""

from __future__ import annotations

import base64
import json
import os
import secrets as _secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict

ALGORITHM = "AES-256-GCM"
_NONCE_BYTES = 12
_KEY_BYTES = 32


class EnvelopeError(Exception):
    """The envelope cannot be opened (unknown key id, wrong binding, corrupted)."""


class EnvelopeExpiredError(EnvelopeError):
    """The envelope's `expires_at` has passed."""


class SecretEnvelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: str
    key_id: str
    ciphertext_b64: str
    version: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Keyring:
    """Ordered AES-256 keys; the first one seals, every one of them opens."""

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a keyring needs at least one key")
        seen: set[str] = set()
        for key_id, key in self.keys:
            if not key_id or not key_id.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"invalid key id {key_id!r}")
            if key_id in seen:
                raise ValueError(f"duplicate key id {key_id!r}")
            if len(key) != _KEY_BYTES:
                raise ValueError(f"key {key_id!r} must be 32 bytes (AES-256)")
            seen.add(key_id)

    @property
    def active_key_id(self) -> str:
        return self.keys[0][0]

    def key(self, key_id: str) -> bytes:
        for kid, key in self.keys:
            if kid == key_id:
                return key
        raise EnvelopeError("unknown key id")

    @classmethod
    def from_spec(cls, spec: str) -> Keyring:
        """Parse `kid1:BASE64,kid2:BASE64` (first entry is the active sealing key)."""
        entries: list[tuple[str, bytes]] = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            key_id, sep, b64 = part.partition(":")
            if not sep:
                raise ValueError("keyring entries look like KEY_ID:BASE64_KEY")
            try:
                key = base64.b64decode(b64.strip(), validate=True)
            except ValueError as exc:
                raise ValueError(f"key {key_id.strip()!r} is not valid base64") from exc
            entries.append((key_id.strip(), key))
        return cls(tuple(entries))

    def to_spec(self) -> str:
        return ",".join(f"{kid}:{base64.b64encode(key).decode()}" for kid, key in self.keys)

    @classmethod
    def generate(cls, key_id: str | None = None) -> Keyring:
        kid = key_id or "k" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        return cls(((kid, AESGCM.generate_key(bit_length=256)),))


def load_or_create_dev_keyring(path: Path) -> Keyring:
    """The embedded default: a keyring file created (0600) on first run."""
    if path.exists():
        return Keyring.from_spec(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    ring = Keyring.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(ring.to_spec() + "\n")
    return ring


def _associated_data(tenant_id: str, install_id: str, version: str) -> bytes:
    return f"extgate:secrets:v1:{tenant_id}:{install_id}:{version}".encode()


def seal(
    values: dict[str, str],
    *,
    keyring: Keyring,
    tenant_id: str,
    install_id: str,
    version: str,
    expires_at: datetime | None = None,
) -> SecretEnvelope:
    plaintext = json.dumps(values, sort_keys=True, separators=(",", ":")).encode()
    nonce = _secrets.token_bytes(_NONCE_BYTES)
    key_id = keyring.active_key_id
    sealed = AESGCM(keyring.key(key_id)).encrypt(nonce, plaintext, _associated_data(tenant_id, install_id, version))
    return SecretEnvelope(
        algorithm=ALGORITHM,
        key_id=key_id,
        ciphertext_b64=base64.b64encode(nonce + sealed).decode(),
        version=version,
        expires_at=expires_at,
    )


def open_envelope(
    envelope: SecretEnvelope,
    *,
    keyring: Keyring,
    tenant_id: str,
    install_id: str,
    now: datetime | None = None,
    check_expiry: bool = True,
) -> dict[str, str]:
    """Decrypt an envelope; raises EnvelopeExpiredError / EnvelopeError, never returns partial data."""
    if envelope.algorithm != ALGORITHM:
        raise EnvelopeError("unsupported envelope algorithm")
    if check_expiry and envelope.expires_at is not None:
        expires = envelope.expires_at
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        if (now or datetime.now(UTC)) >= expires:
            raise EnvelopeExpiredError("secret envelope expired")
    try:
        raw = base64.b64decode(envelope.ciphertext_b64, validate=True)
    except ValueError as exc:
        raise EnvelopeError("envelope ciphertext is not base64") from exc
    if len(raw) <= _NONCE_BYTES:
        raise EnvelopeError("envelope ciphertext is truncated")
    try:
        plaintext = AESGCM(keyring.key(envelope.key_id)).decrypt(
            raw[:_NONCE_BYTES],
            raw[_NONCE_BYTES:],
            _associated_data(tenant_id, install_id, envelope.version),
        )
    except InvalidTag as exc:
        raise EnvelopeError("envelope does not open with this keyring and binding") from exc
    values = json.loads(plaintext)
    if not isinstance(values, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
        raise EnvelopeError("envelope payload is not a string map")
    return values
