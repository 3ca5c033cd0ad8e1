"""Signed checkpoints in the C2SP formats (`tlog-checkpoint` inside a `signed-note`).

A checkpoint note is

    <origin>\\n<tree size>\\n<base64 root hash>\\n
    \\n
    — <key name> <base64(key id (4 bytes) || Ed25519 signature over the body)>\\n

Key id for Ed25519: `SHA-256(name || 0x0A || 0x01 || public key)[:4]`. Verifiers ignore
signatures from unknown keys (that is what makes key rotation and witness cosigning
possible) and reject a known key's bad signature. A verifier key is written in the
Go `note` package's text form: `<name>+<key id hex>+<base64(0x01 || public key)>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # em dash + space


class NoteError(ValueError):
    """Malformed note or checkpoint text."""


def _public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError(f"invalid key name {name!r} (no spaces or '+')")


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted public key."""

    name: str
    public_key: bytes  # 32 raw bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        """`name+keyidhex+base64(0x01||pub)`, the Go `note` verifier key text."""
        blob = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    @classmethod
    def from_vkey(cls, text: str) -> NoteVerifier:
        try:
            name, hexid, blob = text.strip().split("+", 2)
            raw = base64.b64decode(blob, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise NoteError(f"invalid verifier key {text!r}") from exc
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("verifier key is not an Ed25519 key")
        verifier = cls(name, raw[1:])
        if verifier.key_id.hex() != hexid.lower():
            raise NoteError("verifier key id does not match the key")
        return verifier

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
            return True
        except (InvalidSignature, ValueError):
            return False


@dataclass(frozen=True)
class NoteSigner:
    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        _check_name(self.name)

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, _public_raw(self.private_key.public_key()))

    def sign_line(self, body: bytes) -> str:
        sig = self.private_key.sign(body)
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(self.verifier.key_id + sig).decode()}\n"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> bytes:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n".encode()

    def sign(self, signers: Iterable[NoteSigner]) -> str:
        body = self.body().decode()
        lines = "".join(s.sign_line(self.body()) for s in signers)
        if not lines:
            raise NoteError("a checkpoint needs at least one signature")
        return f"{body}\n{lines}"


@dataclass(frozen=True)
class SignatureLine:
    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class ParsedNote:
    checkpoint: Checkpoint
    body: bytes
    signatures: tuple[SignatureLine, ...]


def parse_checkpoint(text: str) -> ParsedNote:
    """Parse a signed checkpoint note (signatures are not checked here)."""
    body_text, sep, sig_text = text.partition("\n\n")
    if not sep:
        raise NoteError("note has no signature block")
    body_lines = body_text.split("\n")
    if len(body_lines) < 3:
        raise NoteError("checkpoint body needs origin, size and root")
    origin, size_text, root_b64 = body_lines[0], body_lines[1], body_lines[2]
    if not origin or not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise NoteError("bad checkpoint origin or size")
    try:
        root = base64.b64decode(root_b64, validate=True)
    except binascii.Error as exc:
        raise NoteError("bad checkpoint root") from exc
    if len(root) != 32:
        raise NoteError("checkpoint root is not 32 bytes")
    if not sig_text.endswith("\n"):
        raise NoteError("note must end with a newline")
    sigs: list[SignatureLine] = []
    for line in sig_text[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise NoteError("malformed signature line")
        name, _, blob = line[len(SIG_PREFIX) :].rpartition(" ")
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error as exc:
            raise NoteError("malformed signature") from exc
        if len(raw) < 5:
            raise NoteError("signature too short")
        sigs.append(SignatureLine(name, raw[:4], raw[4:]))
    if not sigs:
        raise NoteError("note has no signatures")
    body = (body_text + "\n").encode()
    return ParsedNote(Checkpoint(origin, int(size_text), root), body, tuple(sigs))


class SignatureStatus:
    VALID = "valid"
    BAD = "bad_signature"  # a trusted key's signature does not verify
    UNTRUSTED = "untrusted"  # no signature from any trusted key


def check_signatures(note: ParsedNote, verifiers: Iterable[NoteVerifier]) -> str:
    """`valid` if at least one trusted key signed it and no trusted key's signature is bad."""
    by_id = {(v.name, v.key_id): v for v in verifiers}
    valid = False
    for sig in note.signatures:
        verifier = by_id.get((sig.name, sig.key_id))
        if verifier is None:
            continue  # unknown keys are ignored (C2SP signed-note)
        if not verifier.verify(note.body, sig.signature):
            return SignatureStatus.BAD
        valid = True
    return SignatureStatus.VALID if valid else SignatureStatus.UNTRUSTED
