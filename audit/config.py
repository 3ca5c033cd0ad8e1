"""Audit configuration (`EXTGATE_AUDIT_*`) and the checkpoint signing key.

- `EXTGATE_AUDIT_ORIGIN` (`extgate.local/audit`): checkpoint origin line and signing key name.
- `EXTGATE_AUDIT_CHECKPOINT_DIR` (`{data_dir}/checkpoints`): where signed checkpoints are
  exported as append-only files.
- `EXTGATE_AUDIT_SIGNING_KEY` (dev key `{data_dir}/keys/audit-ed25519`, embedded runs only):
  Ed25519 private key as PEM text, a path to a PEM file, or base64 of the 32-byte seed.
- `EXTGATE_AUDIT_TRUSTED_KEYS`: extra verifier keys (`name+keyid+base64`), comma-separated,
  e.g. keys rotated out. The signing key's public key is always trusted.
- `EXTGATE_AUDIT_CHECKPOINT_EVERY` (`10000`) / `EXTGATE_AUDIT_CHECKPOINT_INTERVAL_SECONDS`
  (`60`): sign a checkpoint after this many new records or this many seconds, whichever first.
- `EXTGATE_AUDIT_MAX_BATCH` (`500`): most records one group-commit transaction carries.
- `EXTGATE_AUDIT_MAX_TAIL_AGE_SECONDS` (`2 x interval + 60`): `verify` reports an
  unverifiable tail when records older than this are not covered by a checkpoint.
- `EXTGATE_AUDIT_ALLOW_DEV_KEY` (`false`): allow the generated dev key with an external
  database (single-node test setups only).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from audit.note import NoteSigner, NoteVerifier

DEV_KEY_RELATIVE = Path("keys") / "audit-ed25519"


class AuditConfigError(RuntimeError):
    """The audit log cannot be configured as asked (missing or invalid key, ...)."""


class AuditSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXTGATE_AUDIT_", extra="ignore")

    origin: str = "extgate.local/audit"
    checkpoint_dir: Path | None = None
    signing_key: SecretStr | None = None
    trusted_keys: str | None = Field(default=None, description="comma-separated verifier keys")
    checkpoint_every: int = Field(default=10_000, ge=1)
    checkpoint_interval_seconds: float = Field(default=60.0, gt=0)
    max_batch: int = Field(default=500, ge=1, le=10_000)
    # How long a record nobody waits on (an outcome, a denial) may wait to share the
    # transaction of an awaited one. 0: every record commits without waiting.
    defer_ms: int = Field(default=50, ge=0, le=1000)
    max_tail_age_seconds: float | None = None
    allow_dev_key: bool = False

    def effective_checkpoint_dir(self, data_dir: Path) -> Path:
        return (self.checkpoint_dir or data_dir / "checkpoints").expanduser().resolve()

    def effective_max_tail_age(self) -> float:
        if self.max_tail_age_seconds is not None:
            return self.max_tail_age_seconds
        return 2 * self.checkpoint_interval_seconds + 60

    def signer(self, data_dir: Path, *, embedded: bool) -> NoteSigner:
        """The checkpoint signer: the configured key, else the dev key (embedded runs only)."""
        if self.signing_key is not None:
            return NoteSigner(self.origin, parse_private_key(self.signing_key.get_secret_value()))
        if not (embedded or self.allow_dev_key):
            raise AuditConfigError(
                "EXTGATE_AUDIT_SIGNING_KEY is required with an external database "
                "(or set EXTGATE_AUDIT_ALLOW_DEV_KEY=1 for a single-node test setup)"
            )
        return NoteSigner(self.origin, load_or_create_dev_key(data_dir / DEV_KEY_RELATIVE))

    def verifiers(self, signer: NoteSigner | None = None) -> list[NoteVerifier]:
        """Keys `verify` trusts: the signer's public key plus `EXTGATE_AUDIT_TRUSTED_KEYS`.

        Never keys read from the database: whoever can write the database must not be able
        to add a key that makes their checkpoints verify.
        """
        out = [signer.verifier] if signer is not None else []
        for item in (self.trusted_keys or "").split(","):
            if item.strip():
                out.append(NoteVerifier.from_vkey(item))
        return out


def parse_private_key(value: str) -> Ed25519PrivateKey:
    """PEM text, a path to a PEM file, or base64 of the raw 32-byte seed."""
    text = value.strip()
    if not text.startswith("-----BEGIN"):
        path = Path(text).expanduser()
        if len(text) < 4096 and path.is_file():
            text = path.read_text().strip()
    if text.startswith("-----BEGIN"):
        key = load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditConfigError("the audit signing key must be an Ed25519 key")
        return key
    try:
        seed = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise AuditConfigError("EXTGATE_AUDIT_SIGNING_KEY is not PEM, a PEM file or base64") from exc
    if len(seed) != 32:
        raise AuditConfigError("a base64 Ed25519 seed must decode to 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def load_or_create_dev_key(path: Path) -> Ed25519PrivateKey:
    """The dev signing key: created 0600 on first use (race-safe across processes), then reused.

    The key is written to a private temporary file and hard-linked into place, so a
    concurrent reader never sees a half-written file and exactly one process's key wins.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(private_key_pem(Ed25519PrivateKey.generate()))
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):  # another process won the race: use its key
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return parse_private_key(path.read_text())
