"""Gateway test environments: a real container (SQLite or PostgreSQL), real bundles
published through the registry, installs for two tenants, and the real runner — embedded
or as `extgate runner serve` subprocesses.

Guests: the demo Python guest (examples/demo, built and compiled once, cached under the
gitignored examples/demo/build/), the committed WAT fault guest of the runner tests, and
`guests/headers.wat`, which answers with the request headers it received.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from wasmtime import wat2wasm

from runner.compiler import artifact_path, compile_component
from service.app import create_app
from service.container import ServiceContainer
from service.gateway import GatewaySettings, build_gateway
from service.gateway.transport import RunnerTransport
from service.registry import install_config, install_secrets, installs, publishing
from service.registry.bundles import load_bundle_path
from tests.support import make_container, token, write_bundle

ROOT = Path(__file__).resolve().parents[2]
GUESTS = Path(__file__).parent / "guests"
RUNNER_GUESTS = ROOT / "tests" / "runner" / "guests"
sys.path.insert(0, str(ROOT / "examples"))

TENANT = "acme"
OTHER = "globex"
SECRET_VALUE = "s3cr3t-value-never-leaks"

WAT_ENDPOINTS = [
    {"method": "GET", "path": "/headers", "handler": "headers"},
    {"method": "POST", "path": "/headers", "handler": "headers"},
    {"method": "GET", "path": "/loop", "handler": "loop"},
    {"method": "GET", "path": "/trap", "handler": "trap"},
    {"method": "POST", "path": "/echo", "handler": "echo"},
    {"method": "GET", "path": "/items/:id", "handler": "item"},
]


def guest_bytes(name: str) -> bytes:
    if name == "demo":
        from build_guest import build

        return build("demo").read_bytes()
    src = GUESTS / f"{name}.wat" if (GUESTS / f"{name}.wat").exists() else RUNNER_GUESTS / f"{name}.wat"
    return bytes(wat2wasm(src.read_text()))


def guest_manifest(name: str) -> dict[str, Any]:
    if name == "demo":
        doc: dict[str, Any] = json.loads((ROOT / "examples" / "demo" / "manifest.json").read_text())
        return doc
    return {
        "name": f"com.acme.{name}",
        "publisher": "acme",
        "version": "1.0.0",
        "runtime": "wasm-js@1",
        "capabilities": ["cap:secrets.get", "cap:storage.kv"],
        "api": {"endpoints": WAT_ENDPOINTS},
    }


@pytest.fixture(scope="session")
def compiled_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artifacts by content hash for this session; the demo guest's persist across runs."""
    return tmp_path_factory.mktemp("gateway-compiled")


def link_artifact(compiled_root: Path, content_hash: str, wasm: bytes, cache: Path, persistent: bool) -> None:
    """Compile once (cached), then symlink the artifact into a container's compiled dir."""
    source_dir = ROOT / "examples" / "demo" / "build" / "compiled-gateway" if persistent else cache
    report = compile_component(wasm, source_dir, content_hash=content_hash)
    src = Path(report.artifact)
    dst = artifact_path(compiled_root, content_hash)
    dst.parent.mkdir(parents=True, exist_ok=True)
    for a, b in ((src, dst), (src.with_suffix(".json"), dst.with_suffix(".json"))):
        if not b.exists():
            b.symlink_to(a)


@dataclass
class GatewayEnv:
    container: ServiceContainer
    client: TestClient
    install_id: str
    extension_id: str
    slug: str
    content_hash: str
    other_install_id: str
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, role: str = "viewer", **extra: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[role]}", **extra}

    def url(self, path: str, ref: str | None = None) -> str:
        return f"/api/ext/{ref or self.slug}/{path.lstrip('/')}"

    def audit_records(self, action: str | None = None) -> list[dict[str, Any]]:
        from sqlalchemy import text

        from audit.records import AuditEvent

        # One writer, FIFO: once this durable append returns, every earlier submit has landed.
        self.container.audit.append(AuditEvent(action="test.flush", outcome="success"))
        with self.container.db.engine.connect() as conn:
            rows = conn.execute(text("SELECT body FROM audit_record ORDER BY seq")).all()
        out = [json.loads(r[0]) for r in rows]
        return [r for r in out if action is None or r["action"] == action]


def publish_guest(container: ServiceContainer, tmp: Path, guest: str, cache: Path) -> tuple[str, str, str]:
    wasm = guest_bytes(guest)
    bundle = load_bundle_path(write_bundle(tmp / f"bundle-{guest}", guest_manifest(guest), wasm))
    published = publishing.publish_bundle(
        container.db, container.bundle_store, bundle, signature=None,
        signature_policy=container.signature_policy, validate_component=None,
    )
    link_artifact(container.settings.data_dir / "compiled", published.content_hash, wasm, cache, guest == "demo")
    return published.slug, published.extension_id, published.content_hash


def install_for(container: ServiceContainer, tenant: str, slug: str, caps: list[str]) -> str:
    with container.db.session() as session:
        inst = installs.create_install(session, tenant, slug, version=None, granted_capabilities=caps,
                                       egress_allowlist=["api.example.com"])
        install_id = inst.id
    install_config.set_config(container.db, tenant, install_id, {"greeting": "hello", "region": "eu"})
    install_secrets.set_secrets(container.db, container.keyring, tenant, install_id, {"api_key": SECRET_VALUE})
    return install_id


@pytest.fixture
def make_env(tmp_path: Path, compiled_cache: Path) -> Iterator[Any]:
    opened: list[tuple[TestClient, ServiceContainer]] = []

    def factory(
        database_url: str,
        guest: str = "demo",
        *,
        transport: RunnerTransport | None = None,
        gateway: dict[str, Any] | None = None,
        **settings: Any,
    ) -> GatewayEnv:
        container = make_container(tmp_path, database_url, **settings)
        slug, ext_id, content_hash = publish_guest(container, tmp_path, guest, compiled_cache)
        caps = guest_manifest(guest)["capabilities"]
        install_id = install_for(container, TENANT, slug, caps)
        other = install_for(container, OTHER, slug, caps)
        gs = GatewaySettings(**{"rate_limit_burst": 1000, "rate_limit_per_second": 1000.0, **(gateway or {})})
        container.gateway.close()
        container.gateway = build_gateway(container, gs, transport=transport)
        client = TestClient(create_app(container=container))
        client.__enter__()
        opened.append((client, container))
        tokens = {
            role: token(container, TENANT, role, sub=f"{role}-user")
            for role in ("viewer", "editor", "admin", "operator")
        }
        tokens["none"] = token(container, TENANT, sub="nobody")
        tokens["other-editor"] = token(container, OTHER, "editor", sub="globex-editor")
        return GatewayEnv(container, client, install_id, ext_id, slug, content_hash, other, tokens)

    yield factory
    for client, container in opened:
        client.__exit__(None, None, None)
        container.close()


# --- real runner subprocesses ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunnerProcess:
    url: str
    proc: subprocess.Popen[bytes]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def start_runner(data_dir: Path, database_url: str, **env: str) -> RunnerProcess:
    port = free_port()
    full_env = {
        **os.environ,
        "EXTGATE_DATA_DIR": str(data_dir),
        "EXTGATE_DATABASE_URL": database_url,
        "EXTGATE_RUNNER_THREADS": "2",
        "EXTGATE_ALLOW_DEV_KEYS": "1",  # tests share generated keys, also on PostgreSQL
        "PYTHONPATH": str(ROOT),
        **env,
    }
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [str(ROOT / ".venv" / "bin" / "extgate"), "runner", "serve", "--port", str(port)],
        env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                return RunnerProcess(url, proc)
        except httpx.HTTPError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("runner subprocess did not start")


@pytest.fixture
def runners() -> Iterator[Any]:
    started: list[RunnerProcess] = []

    def start(data_dir: Path, database_url: str, **env: str) -> RunnerProcess:
        r = start_runner(data_dir, database_url, **env)
        started.append(r)
        return r

    yield start
    for r in started:
        r.kill()
