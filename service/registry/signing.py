"""Ed25519 publisher signatures over a bundle's content hash.

The signed message is the ASCII content hash string itself (`sha256:<64 hex>`), so a
signature binds exactly one archive. Signatures travel as standard base64 (64 raw bytes).
Trusted publisher keys are configured as `EXTGATE_TRUSTED_PUBLISHER_KEYS`, parsed by
`parse_trusted_keys`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from runner.contract.bundle_store import CONTENT_HASH_RE

SIGNATURE_BYTES = 64
KEY_BYTES = 32
KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAX_KEY_FILE_BYTES = 64 * 1024


class SignatureError(ValueError):
    """A signature, key or key specification is malformed, or a signature does not verify."""


def _b64decode(value: str, what: str) -> bytes:
    cleaned = "".join(value.split())
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{what} is not valid base64") from None


def _check_hash(content_hash: str) -> bytes:
    if not isinstance(content_hash, str) or not CONTENT_HASH_RE.fullmatch(content_hash):
        raise SignatureError("content hash must look like sha256:<64 lowercase hex>")
    return content_hash.encode("ascii")


def sign_content_hash(content_hash: str, private_key: Ed25519PrivateKey) -> str:
    """Base64 Ed25519 signature over the ASCII content hash."""
    message = _check_hash(content_hash)
    return base64.b64encode(private_key.sign(message)).decode("ascii")


def verify_content_hash(content_hash: str, signature_b64: str, trusted: Mapping[str, Ed25519PublicKey]) -> str:
    """Return the id of the trusted key that verifies the signature, or raise SignatureError."""
    message = _check_hash(content_hash)
    if not isinstance(signature_b64, str) or not signature_b64.strip():
        raise SignatureError("signature is empty")
    signature = _b64decode(signature_b64, "signature")
    if len(signature) != SIGNATURE_BYTES:
        raise SignatureError(f"signature must be {SIGNATURE_BYTES} bytes, got {len(signature)}")
    if not trusted:
        raise SignatureError("no trusted publisher keys are configured")
    for key_id in sorted(trusted):
        try:
            trusted[key_id].verify(signature, message)
        except InvalidSignature:
            continue
        return key_id
    raise SignatureError("signature does not verify with any trusted publisher key")


def public_key_from_b64(value: str) -> Ed25519PublicKey:
    raw = _b64decode(value, "public key")
    if len(raw) != KEY_BYTES:
        raise SignatureError(f"an Ed25519 public key is {KEY_BYTES} bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def private_key_from_b64(value: str) -> Ed25519PrivateKey:
    raw = _b64decode(value, "private key")
    if len(raw) != KEY_BYTES:
        raise SignatureError(f"an Ed25519 private key is {KEY_BYTES} bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_b64(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def key_id_for(key: Ed25519PublicKey) -> str:
    """A stable default key id: the first 16 hex digits of SHA-256 of the raw public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _read_key_file(path: str) -> bytes:
    file = Path(path).expanduser()
    try:
        with file.open("rb") as fh:
            data = fh.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise SignatureError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise SignatureError(f"key file {path} is too large")
    return data


def load_public_key_file(path: str) -> Ed25519PublicKey:
    """A PEM (SubjectPublicKeyInfo) Ed25519 public key, or a file holding the raw base64 key."""
    data = _read_key_file(path)
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise SignatureError(f"{path}: not a PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SignatureError(f"{path}: not an Ed25519 public key")
        return key
    return public_key_from_b64(data.decode("ascii", "replace"))


def load_private_key(spec: str) -> Ed25519PrivateKey:
    """`@path` (PEM PKCS#8, unencrypted, or raw base64 in a file) or the raw base64 key."""
    if spec.startswith("@"):
        path = spec[1:]
        data = _read_key_file(path)
        if b"-----BEGIN" in data:
            try:
                key = serialization.load_pem_private_key(data, password=None)
            except (ValueError, TypeError) as exc:
                raise SignatureError(f"{path}: not an unencrypted PEM private key ({exc})") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise SignatureError(f"{path}: not an Ed25519 private key")
            return key
        return private_key_from_b64(data.decode("ascii", "replace"))
    return private_key_from_b64(spec)


def parse_trusted_keys(spec: str) -> dict[str, Ed25519PublicKey]:
    """Parse `keyid:BASE64_RAW_PUBKEY,keyid2:@/path/to/key.pem,...`.

    Entries are separated by commas or newlines; blank entries are ignored, so an empty
    spec yields no keys. A value starting with `@` names a file holding a PEM
    (SubjectPublicKeyInfo) Ed25519 public key or the raw base64 key. Key ids are
    1-64 characters of `[A-Za-z0-9._-]` and must be unique.
    """
    keys: dict[str, Ed25519PublicKey] = {}
    for part in re.split(r"[,\n]", spec or ""):
        entry = part.strip()
        if not entry:
            continue
        key_id, sep, value = entry.partition(":")
        key_id, value = key_id.strip(), value.strip()
        if not sep or not value:
            raise SignatureError(f"trusted key entry {key_id[:40]!r} must look like keyid:BASE64 or keyid:@path")
        if not KEY_ID_RE.fullmatch(key_id):
            raise SignatureError(f"invalid key id {key_id[:40]!r} (use 1-64 of A-Z a-z 0-9 . _ -)")
        if key_id in keys:
            raise SignatureError(f"duplicate key id {key_id!r}")
        try:
            keys[key_id] = load_public_key_file(value[1:]) if value.startswith("@") else public_key_from_b64(value)
        except SignatureError as exc:
            raise SignatureError(f"trusted key {key_id!r}: {exc}") from None
    return keys


def generate_keypair() -> tuple[str, str]:
    """A new Ed25519 key pair as (private base64, public base64), both raw 32-byte keys."""
    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw_private).decode("ascii"), public_key_b64(private.public_key())
