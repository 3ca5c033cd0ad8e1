"""Both notes examples published, installed and called through the gateway
(`/api/ext/{slug}/{path}`): authentication, Cedar, audit and the runner end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runner.compiler import artifact_path, compile_component
from service.app import create_app
from service.gateway import GatewaySettings, build_gateway
from service.registry import install_config, install_secrets, installs, publishing
from service.registry.bundles import load_bundle_path
from tests.sdk.conftest import BUILDERS, EXAMPLES
from tests.support import make_container, token

pytestmark = pytest.mark.slow

EXAMPLE_DIRS = {"python": "python-notes", "js": "js-notes"}


def bundle_dir(lang: str, tmp: Path) -> Path:
    wasm = BUILDERS[lang]()
    target = tmp / f"bundle-{lang}"
    (target / "dist").mkdir(parents=True)
    (target / "manifest.json").write_text((EXAMPLES / EXAMPLE_DIRS[lang] / "manifest.json").read_text())
    (target / "dist" / "main.wasm").write_bytes(wasm.read_bytes())
    return target


@pytest.fixture(params=sorted(EXAMPLE_DIRS))
def gateway(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str
) -> Iterator[tuple[TestClient, str, dict[str, str]]]:
    lang: str = request.param
    container = make_container(tmp_path, sqlite_url)
    bundle = load_bundle_path(bundle_dir(lang, tmp_path))
    published = publishing.publish_bundle(container.db, container.bundle_store, bundle, signature=None,
                                          signature_policy=container.signature_policy, validate_component=None)
    # Compile once per archive hash (cached next to the example's build), then link into
    # this container's artifact dir, where the runner looks it up by the bundle's hash.
    wasm = (tmp_path / f"bundle-{lang}" / "dist" / "main.wasm").read_bytes()
    report = compile_component(wasm, EXAMPLES / EXAMPLE_DIRS[lang] / "build" / "compiled-gateway",
                               content_hash=published.content_hash)
    src = Path(report.artifact)
    dst = artifact_path(container.settings.data_dir / "compiled", published.content_hash)
    dst.parent.mkdir(parents=True, exist_ok=True)
    for a, b in ((src, dst), (src.with_suffix(".json"), dst.with_suffix(".json"))):
        b.symlink_to(a.resolve())
    with container.db.session() as session:
        install_id = installs.create_install(session, "acme", published.slug, version=None,
                                             granted_capabilities=list(bundle.manifest.capabilities),
                                             egress_allowlist=[]).id
    install_config.set_config(container.db, "acme", install_id, {"greeting": "Welcome"})
    install_secrets.set_secrets(container.db, container.keyring, "acme", install_id, {"api-key": "k-98765"})
    container.gateway.close()
    container.gateway = build_gateway(container, GatewaySettings(rate_limit_burst=1000, rate_limit_per_second=1000.0))
    client = TestClient(create_app(container=container))
    client.__enter__()
    tokens = {r: token(container, "acme", r, sub=f"{r}-user") for r in ("viewer", "editor")}
    tokens["globex"] = token(container, "globex", "editor", sub="g")
    try:
        yield client, published.slug, tokens
    finally:
        client.__exit__(None, None, None)
        container.close()


def test_examples_through_the_gateway(gateway: tuple[TestClient, str, dict[str, str]]) -> None:
    client, slug, tokens = gateway

    def call(method: str, path: str, role: str = "viewer", body: Any = None) -> Any:
        return client.request(method, f"/api/ext/{slug}{path}", headers={"authorization": f"Bearer {tokens[role]}"},
                              content=None if body is None else json.dumps(body))

    hello = call("GET", "/hello")
    assert hello.status_code == 200, hello.text
    assert hello.json()["message"] == "Welcome" and hello.json()["tenant"] == "acme"
    assert call("GET", "/status").json() == {"api_key": "present"}  # opened in the runner, never returned
    assert call("PUT", "/notes/n1", "editor", {"text": "via gateway"}).json()["text"] == "via gateway"
    assert call("PUT", "/notes/n1", "viewer", {"text": "x"}).status_code == 403  # Cedar: viewers read only
    assert [n["id"] for n in call("GET", "/notes").json()["notes"]] == ["n1"]
    # undeclared in manifest.json → the gateway refuses before the SDK's router sees it
    assert call("GET", "/undeclared").json()["error"] == "endpoint_not_found"
    assert call("GET", "/hello", "globex").json()["error"] == "extension_not_available"
    assert client.get(f"/api/ext/{slug}/hello").status_code == 401
