"""Runner test fixtures: WAT guests compiled once per session, the real Python guest
built once (cached under examples/demo/build/) and compiled once per wasmtime version."""

from __future__ import annotations

import base64
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wasmtime import wat2wasm

from runner.compiler import compile_component
from runner.contract.envelope import Keyring
from runner.contract.execute import ExecuteRequest
from runner.debug import InMemoryDebugSink
from runner.executor import Runner
from runner.settings import RunnerSettings
from runner.storage.sql import SqlKVStore

ROOT = Path(__file__).resolve().parents[2]
GUESTS = Path(__file__).parent / "guests"
sys.path.insert(0, str(ROOT / "examples"))


def wat_bytes(name: str) -> bytes:
    return bytes(wat2wasm((GUESTS / f"{name}.wat").read_text()))


def hash_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def compiled_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compiled")


@pytest.fixture(scope="session")
def wat_guests(compiled_dir: Path) -> dict[str, str]:
    """name → content hash, compiled into the session's artifact dir."""
    out = {}
    for name in ("echo", "faults"):
        data = wat_bytes(name)
        out[name] = compile_component(data, compiled_dir, content_hash=hash_of(data)).content_hash
    return out


@pytest.fixture(scope="session")
def demo_hash(compiled_dir: Path) -> str:
    from build_guest import build

    wasm = build("demo")
    data = wasm.read_bytes()
    content_hash = hash_of(data)
    # Compile once per wasmtime version into the (gitignored) build dir, then copy.
    persistent = wasm.parent.parent / "compiled"
    report = compile_component(data, persistent, content_hash=content_hash)
    src = Path(report.artifact)
    dst = compiled_dir / src.relative_to(persistent)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        dst.write_bytes(src.read_bytes())
        dst.with_suffix(".json").write_text(src.with_suffix(".json").read_text())
    return content_hash


@pytest.fixture(scope="session")
def keyring() -> Keyring:
    return Keyring.generate("test1")


def make_runner(tmp: Path, compiled_dir: Path, keyring: Keyring, **overrides: Any) -> Runner:
    settings = RunnerSettings(data_dir=tmp, runner_compiled_dir=compiled_dir, **{"runner_threads": 1, **overrides})
    return Runner(settings, keyring=keyring,
                  kv_store=SqlKVStore(f"sqlite:///{tmp / 'kv.db'}", create_tables=True),
                  debug_sink=InMemoryDebugSink())


@pytest.fixture(scope="session")
def runner(tmp_path_factory: pytest.TempPathFactory, compiled_dir: Path, keyring: Keyring) -> Iterator[Runner]:
    """One worker thread: every test request runs on the same worker. Its `http.fetch` may
    reach the tests' local HTTP server (production runners may not: see test_egress_guard)."""
    r = make_runner(tmp_path_factory.mktemp("runner"), compiled_dir, keyring,
                    runner_fetch_allow_private_networks=True)
    yield r
    r.close()


def make_request(content_hash: str, path: str = "/", *, method: str = "GET", body: bytes | None = None,
                 providers: list[str] | None = None, tenant: str = "t1", install: str = "i1",
                 **extra: Any) -> ExecuteRequest:
    doc: dict[str, Any] = {
        "context": {"tenant_id": tenant, "extension_id": "acme.demo", "install_id": install,
                    "version_id": "v1", "content_hash": content_hash, "request_id": extra.pop("request_id", None),
                    "config": extra.pop("config", {})},
        "http": {"method": method, "path": path, "query": extra.pop("query", {}),
                 "headers": extra.pop("headers", {"content-type": "application/octet-stream"}),
                 "body_b64": base64.b64encode(body).decode() if body is not None else None},
        "providers": providers or [],
    }
    doc.update(extra)
    return ExecuteRequest.model_validate(doc)


def body_of(resp: Any) -> bytes:
    return base64.b64decode(resp.body_b64) if resp.body_b64 else b""
