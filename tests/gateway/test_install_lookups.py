"""The gateway's two per-request lookups, run on a DBAPI connection, on both backends:
decoded JSON columns, tenant scoping, case-insensitive references, and the re-check of
the authorized version when the material is loaded."""

from __future__ import annotations

from typing import Any

import pytest

from service.gateway.installs import InstallChanged, find_install, load_material
from service.registry import install_config, installs
from tests.gateway.conftest import OTHER, TENANT, guest_manifest


@pytest.fixture
def env(make_env: Any, database_url: str) -> Any:
    return make_env(database_url, "headers")


def test_find_install_decodes_columns(env: Any) -> None:
    reader = env.container.db.reader
    info = find_install(reader, TENANT, env.slug)
    assert info is not None
    assert (info.install_id, info.tenant_id, info.extension_id) == (env.install_id, TENANT, env.extension_id)
    assert info.content_hash == env.content_hash
    assert info.api_endpoints == guest_manifest("headers")["api"]["endpoints"]
    assert info.declared_capabilities == ("cap:secrets.get", "cap:storage.kv")
    assert info.granted_capabilities == ("cap:secrets.get", "cap:storage.kv")
    assert info.egress_allowlist == ("api.example.com",)


@pytest.mark.parametrize("ref", ["install", "extension", "slug"])
def test_find_install_by_any_reference_case_insensitive(env: Any, ref: str) -> None:
    value = {"install": env.install_id, "extension": env.extension_id, "slug": env.slug}[ref]
    info = find_install(env.container.db.reader, TENANT, value.upper())
    assert info is not None and info.install_id == env.install_id


def test_find_install_is_tenant_scoped(env: Any) -> None:
    reader = env.container.db.reader
    # The other tenant's install id, looked up as this tenant: nothing.
    assert find_install(reader, TENANT, env.other_install_id) is None
    other = find_install(reader, OTHER, env.slug)
    assert other is not None and other.install_id == env.other_install_id
    assert find_install(reader, "nobody", env.slug) is None
    assert find_install(reader, TENANT, "") is None
    assert find_install(reader, TENANT, "x" * 402) is None


def test_disabled_install_is_not_found(env: Any) -> None:
    with env.container.db.session() as session:
        installs.set_enabled(session, TENANT, env.install_id, False)
    assert find_install(env.container.db.reader, TENANT, env.slug) is None


def test_load_material_returns_config_and_sealed_envelope(env: Any) -> None:
    reader = env.container.db.reader
    info = find_install(reader, TENANT, env.slug)
    assert info is not None
    material = load_material(reader, info)
    assert material.config == {"greeting": "hello", "region": "eu"}
    assert material.config_version and material.secrets_version
    assert isinstance(material.envelope, dict) and material.envelope
    install_config.set_config(env.container.db, TENANT, env.install_id, {"greeting": "hi"})
    again = load_material(reader, info)
    assert again.config == {"greeting": "hi"} and again.config_version != material.config_version


def test_load_material_rechecks_the_install(env: Any) -> None:
    reader = env.container.db.reader
    info = find_install(reader, TENANT, env.slug)
    assert info is not None
    with env.container.db.session() as session:
        installs.set_enabled(session, TENANT, env.install_id, False)
    with pytest.raises(InstallChanged):
        load_material(reader, info)
