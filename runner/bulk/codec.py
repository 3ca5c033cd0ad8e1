"""Host side of the bulk-body text encoding (radix-64).

Bodies cross the fast export as ASCII text: standard base64 with the alphabet mapped to
`chr(0x30 + v)` (v = 0..63, i.e. "0".."o") and no padding. The mapped alphabet lets the
in-guest adapter decode with one subtraction per byte instead of a lookup table, and it is
a byte-for-byte `translate` of standard base64, which is what the runner's execute contract
already carries (`body_b64`): the request body is never decoded and the response body never
re-encoded on the host, only translated (C speed, ~0.3 ms/MiB).

Why not hex: hexlify is faster than base64 in Python, but the runner would then decode the
contract's base64 and hex-encode (two passes), and 2 chars per byte cross the C API and sit
in guest memory instead of 1.33 (see docs/performance.md for the measurement).
"""

from __future__ import annotations

import binascii

STANDARD_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
RADIX64_ALPHABET = bytes(range(0x30, 0x70))
_TO_RADIX64 = bytes.maketrans(STANDARD_ALPHABET, RADIX64_ALPHABET)
_FROM_RADIX64 = bytes.maketrans(RADIX64_ALPHABET, STANDARD_ALPHABET)


class MalformedBodyText(ValueError):
    """Text that no adapter produces (wrong alphabet or impossible length)."""


def radix64_from_base64(body_b64: str) -> str:
    """Contract base64 (already validated by `decode_body`) → adapter text. Padding is
    dropped: the adapter infers the tail from the length (4k+2 → 1 byte, 4k+3 → 2)."""
    return body_b64.strip().encode("ascii").rstrip(b"=").translate(_TO_RADIX64).decode("ascii")


def canonical_base64_size(body_b64: str) -> int | None:
    """The decoded size of `body_b64` (surrounding whitespace ignored) when it is canonical
    base64 (standard alphabet, length a multiple of 4, at most two trailing `=`): such text
    is valid for `base64.b64decode(validate=True)`, so the runner may translate it without
    decoding it first. None: anything else (the caller decodes, validating as before)."""
    raw = body_b64.strip().encode("ascii", errors="replace")
    data = raw.rstrip(b"=")
    padding = len(raw) - len(data)
    if len(raw) % 4 or padding > 2 or data.translate(None, STANDARD_ALPHABET):
        return None
    return len(raw) // 4 * 3 - padding


def radix64_from_bytes(body: bytes) -> str:
    return radix64_from_base64(binascii.b2a_base64(body, newline=False).decode("ascii"))


def base64_from_radix64(text: str) -> tuple[str, int]:
    """Adapter text → (canonical standard base64, decoded byte count). Strict: any char
    outside the alphabet or a length of 4k+1 raises MalformedBodyText (fail closed: the
    host never passes on text it cannot prove is an encoding of some byte string)."""
    raw = text.encode("ascii", errors="strict") if text.isascii() else None
    if raw is None or raw.translate(None, RADIX64_ALPHABET) or len(raw) % 4 == 1:
        raise MalformedBodyText("response body text is not radix-64")
    tail = len(raw) % 4
    if tail and (RADIX64_ALPHABET.index(raw[-1]) & (0x0F if tail == 2 else 0x03)):
        # Non-zero bits after the last byte: the adapter never writes them, and letting
        # them through would make the base64 non-canonical (different from the plain path).
        raise MalformedBodyText("response body text has trailing bits")
    n_bytes = len(raw) // 4 * 3 + (tail - 1 if tail else 0)
    return (raw.translate(_FROM_RADIX64) + b"=" * (-len(raw) % 4)).decode("ascii"), n_bytes


def bytes_from_radix64(text: str) -> bytes:
    b64, _ = base64_from_radix64(text)
    return binascii.a2b_base64(b64)
