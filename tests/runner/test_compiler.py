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


def test_warm_loads_most_recently_used_artifacts(tmp_path: Path) -> None:
    """A restarted process loads the newest artifacts up front (bounded), skipping bad ones;
    `get` then serves them without deserializing again."""
    import os

    from runner.cache import ComponentCache
    from runner.engine import get_engine

    options = EngineOptions()
    hashes = []
    for i, name in enumerate(("echo", "faults")):
        data = wat_bytes(name)
        h = compile_component(data, tmp_path, content_hash=hash_of(data)).content_hash
        os.utime(artifact_path(tmp_path, h, options), (1000 + i, 1000 + i))  # faults is the newest
        hashes.append(h)
    broken = artifact_path(tmp_path, "sha256:" + "f" * 64, options)
    broken.write_bytes(b"not an artifact")
    os.utime(broken, (10, 10))  # the oldest

    engine = get_engine(options).engine
    assert ComponentCache(engine, tmp_path, options, max_entries=8).warm(0) == []
    assert ComponentCache(engine, tmp_path, options, max_entries=8).warm(1) == [hashes[1]]
    cache = ComponentCache(engine, tmp_path, options, max_entries=8)
    assert cache.warm(10) == [hashes[0], hashes[1]]  # oldest first; the broken one is skipped
    assert hashes[0] in cache and hashes[1] in cache
    # the cache's bound wins over the requested count
    assert ComponentCache(engine, tmp_path, options, max_entries=1).warm(5) == [hashes[1]]
    for h in hashes:
        artifact_path(tmp_path, h, options).unlink()  # served from memory from now on
    assert cache.get(hashes[0]) is not None and cache.get(hashes[1]) is not None
    assert ComponentCache(engine, tmp_path / "missing", options).warm(5) == []


def test_publish_compiles_with_the_runners_engine_configuration(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With EXTGATE_RUNNER_FUEL on, the artifact written at publish is the one runners look for."""
    from service.container import default_component_validator
    from service.settings import Settings

    monkeypatch.setenv("EXTGATE_RUNNER_FUEL", "true")
    data = wat_bytes("echo")
    validate = default_component_validator(Settings(data_dir=tmp_path))
    validate(data, hash_of(data))
    assert artifact_path(tmp_path / "compiled", hash_of(data), EngineOptions(consume_fuel=True)).is_file()
    assert not artifact_path(tmp_path / "compiled", hash_of(data), EngineOptions(consume_fuel=False)).exists()
