"""Ed25519 publisher signatures over content hashes."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runner.contract.bundle_store import content_hash_of
from service.registry.signing import (
    SignatureError,
    generate_keypair,
    key_id_for,
    load_private_key,
    parse_trusted_keys,
    private_key_from_b64,
    public_key_b64,
    sign_content_hash,
    verify_content_hash,
)

HASH = content_hash_of(b"bundle bytes")
OTHER_HASH = content_hash_of(b"other bundle bytes")


@pytest.fixture
def keypair() -> tuple[Ed25519PrivateKey, str]:
    private_b64, public_b64 = generate_keypair()
    return private_key_from_b64(private_b64), public_b64


def test_generate_keypair_shapes() -> None:
    private_b64, public_b64 = generate_keypair()
    assert len(base64.b64decode(private_b64)) == 32
    assert len(base64.b64decode(public_b64)) == 32
    assert public_key_b64(private_key_from_b64(private_b64).public_key()) == public_b64
    assert generate_keypair() != (private_b64, public_b64)


def test_sign_and_verify(keypair: tuple[Ed25519PrivateKey, str]) -> None:
    private, public_b64 = keypair
    signature = sign_content_hash(HASH, private)
    assert len(base64.b64decode(signature)) == 64
    trusted = parse_trusted_keys(f"publisher-1:{public_b64}")
    assert verify_content_hash(HASH, signature, trusted) == "publisher-1"


def test_signature_is_over_the_ascii_hash(keypair: tuple[Ed25519PrivateKey, str]) -> None:
    private, _ = keypair
    signature = base64.b64decode(sign_content_hash(HASH, private))
    private.public_key().verify(signature, HASH.encode("ascii"))


def test_verify_returns_the_matching_key_among_several(keypair: tuple[Ed25519PrivateKey, str]) -> None:
    private, public_b64 = keypair
    _, other_public = generate_keypair()
    trusted = parse_trusted_keys(f"a-other:{other_public},\n z-mine:{public_b64}")
    assert verify_content_hash(HASH, sign_content_hash(HASH, private), trusted) == "z-mine"


def test_wrong_key_is_rejected(keypair: tuple[Ed25519PrivateKey, str]) -> None:
    private, _ = keypair
    _, other_public = generate_keypair()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_content_hash(HASH, sign_content_hash(HASH, private), parse_trusted_keys(f"k:{other_public}"))


def test_tampered_hash_is_rejected(keypair: tuple[Ed25519PrivateKey, str]) -> None:
    private, public_b64 = keypair
    trusted = parse_trusted_keys(f"k:{public_b64}")
    signature = sign_content_hash(HASH, private)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_content_hash(OTHER_HASH, signature, trusted)
    flipped = HASH[:-1] + ("0" if HASH[-1] != "0" else "1")
    with pytest.raises(SignatureError):
        verify_content_hash(flipped, signature, trusted)


def test_tampered_signature_is_rejected(keypair: tuple[Ed25519PrivateKey, str]) -> None:
    private, public_b64 = keypair
    raw = bytearray(base64.b64decode(sign_content_hash(HASH, private)))
    raw[0] ^= 1
    with pytest.raises(SignatureError, match="does not verify"):
        verify_content_hash(HASH, base64.b64encode(bytes(raw)).decode(), parse_trusted_keys(f"k:{public_b64}"))


@pytest.mark.parametrize(
    ("signature", "match"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("not base64!!", "base64"),
        (base64.b64encode(b"short").decode(), "64 bytes"),
        (base64.b64encode(b"x" * 65).decode(), "64 bytes"),
    ],
)
def test_malformed_signatures(keypair: tuple[Ed25519PrivateKey, str], signature: str, match: str) -> None:
    _, public_b64 = keypair
    with pytest.raises(SignatureError, match=match):
        verify_content_hash(HASH, signature, parse_trusted_keys(f"k:{public_b64}"))


@pytest.mark.parametrize("bad_hash", ["", "sha256:abc", HASH.upper(), "md5:" + "0" * 64, HASH + "\n"])
def test_malformed_hashes(keypair: tuple[Ed25519PrivateKey, str], bad_hash: str) -> None:
    private, public_b64 = keypair
    with pytest.raises(SignatureError, match="content hash"):
        sign_content_hash(bad_hash, private)
    with pytest.raises(SignatureError, match="content hash"):
        verify_content_hash(bad_hash, sign_content_hash(HASH, private), parse_trusted_keys(f"k:{public_b64}"))


def test_no_trusted_keys(keypair: tuple[Ed25519PrivateKey, str]) -> None:
    private, _ = keypair
    with pytest.raises(SignatureError, match="no trusted"):
        verify_content_hash(HASH, sign_content_hash(HASH, private), {})


def test_signature_error_is_value_error() -> None:
    assert issubclass(SignatureError, ValueError)


# --------------------------------------------------------------------------- trusted key specs


def test_parse_trusted_keys_empty() -> None:
    assert parse_trusted_keys("") == {}
    assert parse_trusted_keys(" , \n ") == {}


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("nokey", "keyid:BASE64"),
        ("k:", "keyid:BASE64"),
        ("bad id:AAAA", "invalid key id"),
        (":AAAA", "invalid key id"),
        ("k:!!!", "base64"),
        ("k:" + base64.b64encode(b"x" * 31).decode(), "32 bytes"),
        ("k:@/nonexistent/key.pem", "cannot read"),
    ],
)
def test_parse_trusted_keys_errors(spec: str, match: str) -> None:
    with pytest.raises(SignatureError, match=match):
        parse_trusted_keys(spec)


def test_parse_trusted_keys_duplicate_ids() -> None:
    _, a = generate_keypair()
    _, b = generate_keypair()
    with pytest.raises(SignatureError, match="duplicate"):
        parse_trusted_keys(f"k:{a},k:{b}")


def test_pem_and_raw_key_files(tmp_path: Path, keypair: tuple[Ed25519PrivateKey, str]) -> None:
    private, public_b64 = keypair
    pem = tmp_path / "pub.pem"
    pem.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    raw = tmp_path / "pub.b64"
    raw.write_text(public_b64 + "\n")
    trusted = parse_trusted_keys(f"pem-key:@{pem},raw-key:@{raw}")
    assert set(trusted) == {"pem-key", "raw-key"}
    signature = sign_content_hash(HASH, private)
    assert verify_content_hash(HASH, signature, {"pem-key": trusted["pem-key"]}) == "pem-key"
    assert verify_content_hash(HASH, signature, {"raw-key": trusted["raw-key"]}) == "raw-key"


def test_pem_file_with_wrong_key_type(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = tmp_path / "ec.pem"
    pem.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SignatureError, match="not an Ed25519"):
        parse_trusted_keys(f"k:@{pem}")


def test_load_private_key_forms(tmp_path: Path, keypair: tuple[Ed25519PrivateKey, str]) -> None:
    private, public_b64 = keypair
    raw_b64 = base64.b64encode(
        private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    ).decode()
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    raw_file = tmp_path / "key"
    raw_file.write_text(raw_b64 + "\n")
    for spec in (raw_b64, f"@{pem}", f"@{raw_file}"):
        assert public_key_b64(load_private_key(spec).public_key()) == public_b64


def test_key_id_for_is_stable(keypair: tuple[Ed25519PrivateKey, str]) -> None:
    private, _ = keypair
    kid = key_id_for(private.public_key())
    assert kid == key_id_for(private.public_key()) and len(kid) == 16
