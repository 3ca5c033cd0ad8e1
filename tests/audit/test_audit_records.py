"""Canonical encoding, record layout, secret stripping, signed notes, key configuration."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.canonical import CanonicalJSONError, canonical_json, is_canonical
from audit.config import AuditConfigError, AuditSettings, load_or_create_dev_key, parse_private_key, private_key_pem
from audit.merkle import EMPTY_ROOT
from audit.note import (
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    SignatureStatus,
    check_signatures,
    key_id,
    parse_checkpoint,
)
from audit.records import Actor, AuditEvent, AuditRecordError, is_secret_key, parse_time_us, sanitize_details
from service.auth.principal import Principal


def test_canonical_json_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()
    assert is_canonical(b'{"a":1}')
    assert not is_canonical(b'{"a": 1}')
    assert not is_canonical(b'{"b":1,"a":2}')


@pytest.mark.parametrize("bad", [1.5, {"x": float("nan")}, {1: "a"}, 2**60, b"bytes", {"ké": 1}])
def test_canonical_json_rejects_ambiguous_values(bad: object) -> None:
    with pytest.raises(CanonicalJSONError):
        canonical_json(bad)


def test_event_body_layout_and_seq_inside_hash() -> None:
    ev = AuditEvent(
        action="gateway.decision",
        outcome="deny",
        tenant_id="acme",
        actor=Actor("u1", tenant="acme", roles=("viewer", "admin")),
        resource="install:i1/endpoint:GET /x",
        policy_ids=("p1", "p2"),
        policy_revision="rev9",
        request_id="r1",
        details={"reason": "no matching permit", "latency_us": 120},
        ts=1_700_000_000_000_000,
    )
    body = json.loads(ev.encode(42))
    assert body == {
        "v": 1,
        "seq": 42,
        "ts": 1_700_000_000_000_000,
        "tenant": "acme",
        "actor": {"id": "u1", "type": "user", "tenant": "acme", "roles": ["admin", "viewer"]},
        "action": "gateway.decision",
        "resource": "install:i1/endpoint:GET /x",
        "outcome": "deny",
        "policy_ids": ["p1", "p2"],
        "policy_revision": "rev9",
        "request_id": "r1",
        "details": {"latency_us": 120, "reason": "no matching permit"},
    }
    assert ev.encode(42) != ev.encode(43)
    assert is_canonical(ev.encode(42))


def test_actor_from_principal() -> None:
    p = Principal(subject="alice", tenant="acme", roles=frozenset({"admin", "viewer"}))
    actor = Actor.from_principal(p, auth="jwt", ip="10.0.0.1")
    assert actor.to_json() == {
        "id": "alice",
        "type": "internal",
        "tenant": "acme",
        "roles": ["admin", "viewer"],
        "auth": "jwt",
        "ip": "10.0.0.1",
    }


@pytest.mark.parametrize(
    "key", ["password", "client_secret", "api-key", "accessToken", "Authorization", "request_body", "tokens", "cookie"]
)
def test_secret_keys_detected(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["secret_names", "keys", "status", "body_sha256", "token_count", "reason"])
def test_harmless_keys_kept(key: str) -> None:
    assert not is_secret_key(key)


def test_details_are_sanitized() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    clean = sanitize_details(
        {
            "secret_names": ["API_KEY", "DB_PASSWORD"],
            "password": "hunter2",
            "nested": {"token": "abc", "ok": 1, "hdr": "Bearer abcdefghijklmnop"},
            "note": jwt,
            "long": "x" * 5000,
        }
    )
    text = json.dumps(clean)
    assert "hunter2" not in text and "abcdefghijklmnop" not in text and jwt not in text
    assert clean["secret_names"] == ["API_KEY", "DB_PASSWORD"]
    assert clean["nested"] == {"ok": 1, "hdr": "[redacted]"}
    assert clean["_redacted"] == ["nested.hdr", "nested.token", "note", "password"]
    assert len(clean["long"]) < 2100


def test_invalid_events_rejected() -> None:
    with pytest.raises(AuditRecordError):
        AuditEvent(action="x", outcome="ok", details={"d": 1.5}).encode(0)
    with pytest.raises(AuditRecordError):
        AuditEvent(action="", outcome="ok").encode(0)
    with pytest.raises(AuditRecordError):
        AuditEvent(action="x", outcome="ok", details={"bad key!": 1}).encode(0)
    with pytest.raises(AuditRecordError):
        AuditEvent(action="x", outcome="ok", details={f"k{i}": "y" * 2000 for i in range(20)}).encode(0)


def test_parse_time() -> None:
    assert parse_time_us("1970-01-02") == 86_400_000_000
    assert parse_time_us("2024-01-01T01:00:00+01:00") == 1_704_067_200_000_000
    assert parse_time_us("2h", now=10_000_000_000) == 10_000_000_000 - 7_200_000_000
    with pytest.raises(ValueError):
        parse_time_us("yesterday")


def test_note_roundtrip_unknown_keys_ignored_bad_signature_rejected() -> None:
    signer = NoteSigner("log.example/a", Ed25519PrivateKey.generate())
    other = NoteSigner("witness.example", Ed25519PrivateKey.generate())
    cp = Checkpoint("log.example/a", 7, EMPTY_ROOT)
    note = cp.sign([signer, other])
    parsed = parse_checkpoint(note)
    assert parsed.checkpoint == cp
    assert note.startswith("log.example/a\n7\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n\n\u2014 log.example/a ")
    assert check_signatures(parsed, [signer.verifier]) == SignatureStatus.VALID
    assert check_signatures(parsed, [other.verifier]) == SignatureStatus.VALID
    stranger = NoteSigner("log.example/a", Ed25519PrivateKey.generate())
    assert check_signatures(parsed, [stranger.verifier]) == SignatureStatus.UNTRUSTED
    forged = note.replace("\n7\n", "\n8\n")
    assert check_signatures(parse_checkpoint(forged), [signer.verifier]) == SignatureStatus.BAD
    v = signer.verifier
    assert NoteVerifier.from_vkey(v.vkey) == v
    assert v.key_id == key_id(v.name, v.public_key)
    with pytest.raises(NoteError):
        parse_checkpoint("log\n1\nAAAA\n")
    with pytest.raises(NoteError):
        NoteVerifier.from_vkey(v.vkey.replace(v.key_id.hex(), "00000000"))


def test_signing_key_formats(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = private_key_pem(key).decode()
    seed = base64.b64encode(key.private_bytes_raw()).decode()
    path = tmp_path / "k.pem"
    path.write_text(pem)
    pub = key.public_key().public_bytes_raw()
    for value in (pem, seed, str(path)):
        assert parse_private_key(value).public_key().public_bytes_raw() == pub
    with pytest.raises(AuditConfigError):
        parse_private_key("bm90IGEga2V5")


def test_dev_key_created_0600_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("EXTGATE_AUDIT_SIGNING_KEY", "EXTGATE_AUDIT_ALLOW_DEV_KEY"):
        monkeypatch.delenv(var, raising=False)
    settings = AuditSettings()
    signer = settings.signer(tmp_path, embedded=True)
    key_file = tmp_path / "keys" / "audit-ed25519"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert settings.signer(tmp_path, embedded=True).verifier == signer.verifier
    assert load_or_create_dev_key(key_file).public_key().public_bytes_raw() == signer.verifier.public_key
    with pytest.raises(AuditConfigError):
        settings.signer(tmp_path, embedded=False)
    assert settings.verifiers(signer) == [signer.verifier]


@settings(max_examples=200, deadline=None)
@given(
    details=st.dictionaries(
        st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.sampled_from(["seq", "tenant", "a"]), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=5,
    ),
    tenant=st.none() | st.text(min_size=1, max_size=10),
    resource=st.none() | st.text(max_size=10),
    seq=st.integers(0, 2**40),
)
def test_prepared_splice_equals_canonical_encoding(
    details: dict, tenant: str | None, resource: str | None, seq: int
) -> None:
    ev = AuditEvent(action="a.b", outcome="ok", tenant_id=tenant, resource=resource, details=details)
    prepared = ev.prepare()
    assert prepared.at(seq) == canonical_json(ev.to_body(seq))
    assert json.loads(prepared.at(seq))["seq"] == seq


def test_details_int_range() -> None:
    with pytest.raises(AuditRecordError):
        AuditEvent(action="x", outcome="ok", details={"n": 2**60}).encode(0)
