"""Publish-time validation: what is accepted, what is rejected and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.compiler import ComponentRejectedError, artifact_path, check_imports, compile_component
from runner.engine import EngineOptions, wasmtime_version
from tests.runner.conftest import hash_of, wat_bytes


def test_accepts_handler_component(tmp_path: Path) -> None:
    data = wat_bytes("echo")
    report = compile_component(data, tmp_path)
    assert "handler" in report.exports and report.imports == []
    assert Path(report.artifact) == artifact_path(tmp_path, hash_of(data))
    assert Path(report.artifact).is_file()
    assert wasmtime_version() in report.artifact


def test_rejects_wasi_http_import_by_name(tmp_path: Path) -> None:
    with pytest.raises(ComponentRejectedError, match=r"wasi:http/outgoing-handler@0\.2\.0"):
        compile_component(wat_bytes("http_import"), tmp_path)


def test_rejects_missing_handler(tmp_path: Path) -> None:
    with pytest.raises(ComponentRejectedError, match="handler"):
        compile_component(wat_bytes("no_handler"), tmp_path)


def test_rejects_garbage(tmp_path: Path) -> None:
    with pytest.raises(ComponentRejectedError, match="not a valid WebAssembly component"):
        compile_component(b"\x00asm\x01\x00\x00\x00garbage", tmp_path)


def test_demo_guest_report(demo_hash: str, compiled_dir: Path) -> None:
    from runner.compiler import load_report

    report = load_report(compiled_dir, demo_hash)
    assert report is not None
    assert "extgate:extension/config" in report.imports
    assert {"alga:extension/secrets", "alga:extension/storage"} <= set(report.imports)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("alga:extension/secrets", True),
        ("alga:extension/types", True),
        ("alga:extension/user-v2", True),
        ("extgate:extension/config", True),
        ("wasi:io/streams@0.2.0", True),
        ("wasi:cli/environment@0.2.12", True),
        ("wasi:sockets/tcp@0.2.9", True),
        ("wasi:http/types@0.2.0", False),
        ("wasi:http/outgoing-handler@0.2.10", False),
        ("wasi:io/streams@0.3.0", False),
        ("alga:extension/secrets@1.0.0", False),
        ("alga:extension/admin", False),
        ("evil:pkg/iface", False),
    ],
)
def test_import_allowlist(name: str, ok: bool) -> None:
    if ok:
        check_imports([name])
    else:
        with pytest.raises(ComponentRejectedError, match=name.replace(".", r"\.")):
            check_imports(["alga:extension/context", name])


def test_artifact_key_includes_engine_config(tmp_path: Path) -> None:
    h = "sha256:" + "a" * 64
    assert artifact_path(tmp_path, h) != artifact_path(tmp_path, h, EngineOptions(consume_fuel=True))
