import base64
from datetime import UTC, datetime, timedelta

import pytest

from runner.contract.envelope import (
    EnvelopeError,
    EnvelopeExpiredError,
    Keyring,
    load_or_create_dev_keyring,
    open_envelope,
    seal,
)


def _seal(ring: Keyring, **kw):
    args = {"tenant_id": "t1", "install_id": "i1", "version": "v1"} | kw
    return seal({"api-key": "s3cr3t"}, keyring=ring, **args)


def test_round_trip_and_ciphertext_hides_value():
    ring = Keyring.generate("k1")
    env = _seal(ring)
    assert env.algorithm == "AES-256-GCM" and env.key_id == "k1"
    assert b"s3cr3t" not in base64.b64decode(env.ciphertext_b64)
    assert open_envelope(env, keyring=ring, tenant_id="t1", install_id="i1") == {"api-key": "s3cr3t"}


@pytest.mark.parametrize("tenant,install", [("t2", "i1"), ("t1", "i2")])
def test_envelope_bound_to_tenant_and_install(tenant, install):
    ring = Keyring.generate("k1")
    with pytest.raises(EnvelopeError):
        open_envelope(_seal(ring), keyring=ring, tenant_id=tenant, install_id=install)


def test_version_is_bound_too():
    ring = Keyring.generate("k1")
    env = _seal(ring).model_copy(update={"version": "v2"})
    with pytest.raises(EnvelopeError):
        open_envelope(env, keyring=ring, tenant_id="t1", install_id="i1")


def test_expired_envelope_refused():
    ring = Keyring.generate("k1")
    env = _seal(ring, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(EnvelopeExpiredError):
        open_envelope(env, keyring=ring, tenant_id="t1", install_id="i1")
    assert open_envelope(env, keyring=ring, tenant_id="t1", install_id="i1", check_expiry=False)


def test_rotation_old_key_still_opens_new_key_seals():
    old = Keyring.generate("old")
    env = _seal(old)
    new_key = Keyring.generate("new")
    rotated = Keyring((new_key.keys[0], old.keys[0]))
    assert rotated.active_key_id == "new"
    assert open_envelope(env, keyring=rotated, tenant_id="t1", install_id="i1")
    assert _seal(rotated).key_id == "new"
    with pytest.raises(EnvelopeError):
        open_envelope(env, keyring=new_key, tenant_id="t1", install_id="i1")


def test_tampered_ciphertext_refused():
    ring = Keyring.generate("k1")
    env = _seal(ring)
    raw = bytearray(base64.b64decode(env.ciphertext_b64))
    raw[-1] ^= 1
    bad = env.model_copy(update={"ciphertext_b64": base64.b64encode(bytes(raw)).decode()})
    with pytest.raises(EnvelopeError):
        open_envelope(bad, keyring=ring, tenant_id="t1", install_id="i1")


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "nokey",
        "k1:notbase64!!",
        "k1:" + base64.b64encode(b"short").decode(),
        "k1:{0},k1:{0}".format(base64.b64encode(b"x" * 32).decode()),
    ],
)
def test_bad_keyring_specs(spec):
    with pytest.raises(ValueError):
        Keyring.from_spec(spec)


def test_dev_keyring_created_once_with_private_mode(tmp_path):
    path = tmp_path / "keys" / "secret-keys"
    first = load_or_create_dev_keyring(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_dev_keyring(path) == first
