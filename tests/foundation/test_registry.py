"""Registry domain against SQLite and PostgreSQL: publish, installs, config, secrets."""

import threading

import pytest
from sqlmodel import select

from audit.records import Actor
from runner.contract.envelope import Keyring, SecretEnvelope, open_envelope
from service.commands import Caller, CommandContext, install_data
from service.db.models import Extension, ExtensionVersion, Install, InstallSecrets
from service.errors import Conflict, InvalidInput, NotFound
from service.registry import install_config, install_secrets, installs, publishing
from service.registry.bundles import load_bundle_path
from service.registry.signing import generate_keypair, parse_trusted_keys, sign_content_hash
from tests.support import COMPONENT_HEADER, make_container, manifest, write_bundle


@pytest.fixture
def c(tmp_path, database_url):
    container = make_container(tmp_path, database_url)
    yield container
    container.close()


def publish(c, root, doc=None, component=COMPONENT_HEADER, signature=None):
    bundle = load_bundle_path(write_bundle(root, doc, component))
    return publishing.publish_bundle(
        c.db, c.bundle_store, bundle, signature=signature, signature_policy=c.signature_policy, validate_component=None
    )


@pytest.fixture
def published(c, tmp_path):
    return publish(c, tmp_path / "b1")


def test_publish_stores_bundle_and_is_idempotent(c, tmp_path, published):
    assert published.created and published.slug == "acme.com.acme.tickets"
    assert c.bundle_store.component_path(published.content_hash).read_bytes() == COMPONENT_HEADER
    again = publish(c, tmp_path / "b1")
    assert not again.created and again.version_id == published.version_id


def test_republish_same_version_other_hash_refused_and_nothing_stored(c, tmp_path, published):
    with pytest.raises(Conflict) as err:
        publish(c, tmp_path / "b2", component=COMPONENT_HEADER + b"\x00")
    assert err.value.code == "version_exists"
    with c.db.session() as s:
        assert len(list(s.exec(select(ExtensionVersion)))) == 1


def test_validator_rejection_stores_nothing(c, tmp_path):
    def reject(component, content_hash):
        raise InvalidInput("imports wasi:http/outgoing-handler@0.2.0", code="component_rejected")

    bundle = load_bundle_path(write_bundle(tmp_path / "b"))
    with pytest.raises(InvalidInput):
        publishing.publish_bundle(
            c.db, c.bundle_store, bundle, signature=None, signature_policy=c.signature_policy, validate_component=reject
        )
    with c.db.session() as s:
        assert list(s.exec(select(Extension))) == []
    assert not c.bundle_store.has(bundle.content_hash)


def test_signatures_required_and_verified(tmp_path, database_url):
    private_b64, public_b64 = generate_keypair()
    c = make_container(
        tmp_path, database_url, require_signed_bundles=True, trusted_publisher_keys=f"acme-2026:{public_b64}"
    )
    try:
        with pytest.raises(InvalidInput) as err:
            publish(c, tmp_path / "u")
        assert err.value.code == "signature_required"
        bundle = load_bundle_path(write_bundle(tmp_path / "s"))
        import base64

        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_b64))
        good = sign_content_hash(bundle.content_hash, key)
        other = sign_content_hash("sha256:" + "0" * 64, key)
        with pytest.raises(InvalidInput) as err:
            publish(c, tmp_path / "s", signature=other)
        assert err.value.code == "signature_invalid"
        assert publish(c, tmp_path / "s", signature=good).signer_key_id == "acme-2026"
        assert parse_trusted_keys(f"acme-2026:{public_b64}")
    finally:
        c.close()


def test_latest_version_by_semver(c, tmp_path):
    for i, v in enumerate(["1.2.0", "1.10.0", "1.10.0-rc.1", "1.9.9"]):
        publish(c, tmp_path / f"v{i}", manifest(version=v))
    with c.db.session() as s:
        ext = publishing.get_extension(s, "ACME.com.acme.tickets")
        assert publishing.get_version(s, ext, None).version == "1.10.0"


# installs ------------------------------------------------------------------------------


def _install(c, tenant="t1", caps=("cap:secrets.get",), **kw):
    with c.db.session() as s:
        return installs.create_install(
            s, tenant, "acme.com.acme.tickets", version=None, granted_capabilities=caps, **kw
        )


def test_grant_must_be_declared_and_known(c, published):
    with pytest.raises(InvalidInput) as err:
        _install(c, caps=["cap:secrets.get", "cap:http.fetch"])
    assert err.value.code == "capabilities_not_declared"
    assert err.value.detail["not_declared"] == ["cap:http.fetch"]
    with pytest.raises(InvalidInput) as err:
        _install(c, caps=["cap:launch.missiles"])
    assert err.value.code == "unknown_capabilities"
    with c.db.session() as s:
        assert list(s.exec(select(Install))) == []


def test_egress_allowlist_validated(c, published):
    with pytest.raises(InvalidInput) as err:
        _install(c, egress_allowlist=["https://api.example.com/x", "10.0.0.1", "ok.example.com"])
    assert err.value.detail["invalid"] == ["https://api.example.com/x", "10.0.0.1"]
    row = _install(c, egress_allowlist=["API.Example.com", "*.acme.io"])
    assert row.egress_allowlist == ["*.acme.io", "api.example.com"]


def test_double_install_conflicts(c, published):
    _install(c)
    with pytest.raises(Conflict) as err:
        _install(c)
    assert err.value.code == "already_installed"


def test_installs_are_tenant_scoped(c, published):
    row = _install(c, tenant="t1")
    with c.db.session() as s:
        with pytest.raises(NotFound):
            installs.get_install(s, "t2", row.id)
        assert installs.list_installs(s, "t2") == []
        for ref in (row.id, row.extension_id, "acme.com.acme.tickets"):
            assert installs.resolve_active_install(s, "t2", ref) is None
            assert installs.resolve_active_install(s, "t1", ref.upper()).install.id == row.id


def test_disabled_install_is_not_active(c, published):
    row = _install(c)
    with c.db.session() as s:
        installs.set_enabled(s, "t1", row.id, False)
    with c.db.session() as s:
        assert installs.resolve_active_install(s, "t1", row.id) is None


def test_upgrade_requesting_more_needs_approval(c, tmp_path, published):
    row = _install(c, caps=["cap:secrets.get", "cap:storage.kv"])
    publish(c, tmp_path / "v2", manifest(version="2.0.0", capabilities=["cap:secrets.get", "cap:http.fetch"]))
    with c.db.session() as s, pytest.raises(Conflict) as err:
        installs.upgrade_install(s, "t1", row.id, to_version="2.0.0")
    assert err.value.code == "capabilities_approval_required"
    assert err.value.detail["requested"] == ["cap:http.fetch"]
    with c.db.session() as s:
        assert installs.get_install(s, "t1", row.id).version_id == published.version_id
        with pytest.raises(InvalidInput):  # approval cannot exceed what the target declares
            installs.upgrade_install(s, "t1", row.id, to_version="2.0.0", approved_capabilities=["cap:storage.kv"])
    with c.db.session() as s:
        up = installs.upgrade_install(
            s, "t1", row.id, to_version="2.0.0", approved_capabilities=["cap:http.fetch", "cap:secrets.get"]
        )
        assert up.granted_capabilities == ["cap:http.fetch", "cap:secrets.get"]


def test_upgrade_within_grant_keeps_intersection(c, tmp_path, published):
    row = _install(c, caps=["cap:secrets.get", "cap:storage.kv"])
    publish(c, tmp_path / "v2", manifest(version="1.1.0", capabilities=["cap:secrets.get"]))
    with c.db.session() as s:
        assert installs.upgrade_install(s, "t1", row.id, to_version=None).granted_capabilities == ["cap:secrets.get"]


def test_remove_deletes_config_secrets_and_stored_data(c, published):
    from runner.storage.sql import SqlKVStore

    row = _install(c)
    other = _install(c, tenant="t2")
    install_config.set_config(c.db, "t1", row.id, {"a": "1"})
    install_secrets.set_secrets(c.db, c.keyring, "t1", row.id, {"k": "v"})
    kv = SqlKVStore(c.db.engine)
    kv.put("t1", row.id, "notes", "n1", b"private", None)
    kv.put("t2", other.id, "notes", "n1", b"someone else's", None)
    with c.db.session() as s:
        installs.remove_install(s, "t1", row.id)
    with c.db.session() as s:
        assert s.get(InstallSecrets, row.id) is None and s.get(Install, row.id) is None
    assert kv.list("t1", row.id, "notes", None, 10) == []  # the install's data went with it
    assert kv.get("t2", other.id, "notes", "n1").value == b"someone else's"  # nobody else's


# config ----------------------------------------------------------------------------------


def test_config_replace_bumps_version(c, published):
    row = _install(c)
    first = install_config.set_config(c.db, "t1", row.id, {"a": "1", "b": "2"})
    second = install_config.set_config(c.db, "t1", row.id, {"a": "3"})
    assert second.values == {"a": "3"} and second.version != first.version
    with pytest.raises(Conflict) as err:
        install_config.set_config(c.db, "t1", row.id, {"a": "4"}, expected_version=first.version)
    assert err.value.code == "version_conflict"
    with c.db.session() as s:
        assert install_config.get_config(s, "t1", row.id).values == {"a": "3"}


@pytest.mark.parametrize("bad", [{"a": 1}, {"bad key": "x"}, ["a"], {"a": "x" * 9000}, {"": "x"}])
def test_config_bad_input_changes_nothing(c, published, bad):
    row = _install(c)
    install_config.set_config(c.db, "t1", row.id, {"keep": "me"})
    with pytest.raises(InvalidInput):
        install_config.set_config(c.db, "t1", row.id, bad)
    with c.db.session() as s:
        assert install_config.get_config(s, "t1", row.id).values == {"keep": "me"}


def test_concurrent_cas_config_writes_one_winner(c, published):
    row = _install(c)
    base = install_config.set_config(c.db, "t1", row.id, {"n": "0"}).version
    results: list[str] = []

    def write(i):
        try:
            install_config.set_config(c.db, "t1", row.id, {"n": str(i)}, expected_version=base)
            results.append("ok")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results.count("ok") == 1 and results.count("conflict") == 5


# secrets ---------------------------------------------------------------------------------


def _open(c, tenant, install_id):
    with c.db.session() as s:
        row = s.get(InstallSecrets, install_id)
        return open_envelope(
            SecretEnvelope.model_validate(row.envelope), keyring=c.keyring, tenant_id=tenant, install_id=install_id
        )


def test_secrets_merge_delete_and_key_names_only(c, published):
    row = _install(c)
    a = install_secrets.set_secrets(c.db, c.keyring, "t1", row.id, {"api-key": "s3cr3t", "other": "x"})
    b = install_secrets.set_secrets(c.db, c.keyring, "t1", row.id, {"other": None, "new": "y"})
    assert b.key_names == ["api-key", "new"] and b.version != a.version
    assert _open(c, "t1", row.id) == {"api-key": "s3cr3t", "new": "y"}
    assert "s3cr3t" not in str(b.envelope)
    assert install_secrets.set_secrets(c.db, c.keyring, "t1", row.id, {"api-key": None, "new": None}) is None
    with c.db.session() as s:
        assert install_secrets.get_secrets_meta(s, "t1", row.id) is None


def test_secrets_for_other_tenants_install_404_and_unchanged(c, published):
    row = _install(c, tenant="t1")
    before = install_secrets.set_secrets(c.db, c.keyring, "t1", row.id, {"api-key": "s3cr3t"})
    with pytest.raises(NotFound):
        install_secrets.set_secrets(c.db, c.keyring, "t2", row.id, {"api-key": "evil"})
    with pytest.raises(NotFound):
        install_config.set_config(c.db, "t2", row.id, {"a": "b"})
    with c.db.session() as s:
        assert s.get(InstallSecrets, row.id).version == before.version
    assert _open(c, "t1", row.id) == {"api-key": "s3cr3t"}


def test_bad_secret_input_never_echoes_values(c, published):
    row = _install(c)
    with pytest.raises(InvalidInput) as err:
        install_secrets.set_secrets(c.db, c.keyring, "t1", row.id, {"ok": "hunter2", "bad key": "hunter2"})
    assert "hunter2" not in str(err.value.detail)
    with c.db.session() as s:
        assert install_secrets.get_secrets_meta(s, "t1", row.id) is None


def test_rotation_reseals_with_newest_key(c, published):
    row = _install(c)
    old = install_secrets.set_secrets(c.db, c.keyring, "t1", row.id, {"api-key": "s3cr3t"})
    c.keyring = Keyring((Keyring.generate("newer").keys[0], *c.keyring.keys))
    ctx, operator = CommandContext(c), Caller(Actor("cli:ops", type="operator"))
    before = c.audit.size()
    assert install_data.rotate_all(ctx, operator) == [("t1", row.id)]
    with c.db.session() as s:
        now = s.get(InstallSecrets, row.id)
    assert now.key_id == "newer" and now.version != old.version
    assert _open(c, "t1", row.id) == {"api-key": "s3cr3t"}
    assert c.audit.size() == before + 1  # the rotation's record, committed with it
    assert install_data.rotate_all(ctx, operator) == []


def test_concurrent_secret_merges_lose_nothing(c, published):
    row = _install(c)

    def write(i):
        install_secrets.set_secrets(c.db, c.keyring, "t1", row.id, {f"k{i}": f"v{i}"})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert _open(c, "t1", row.id) == {f"k{i}": f"v{i}" for i in range(8)}
