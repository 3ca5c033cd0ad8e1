"""Bulk imports (runner/bulk/imports.py): storage get/put and http.fetch move their bytes as
radix-64 text through an in-guest adapter. Every case runs the same guest twice on one runner:
as published (bulk imports) and as a baseline artifact with plain imports (export transform
only), under different installs, and compares the answers and the stored bytes."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runner.bulk.imports import export_only_artifact, transform_imports
from runner.bulk.transform import TransformRefused, transform
from runner.compiler import artifact_path, compile_component, load_report
from runner.executor import Runner
from runner.host import bulk_http, bulk_storage
from tests.runner.conftest import make_request, wat_bytes

RNG = random.Random(1803)
ALL_BYTES = bytes(range(256)) * 4
VALUES = [b"", b"x", b"xy", b"xyz", b"\x00", ALL_BYTES, RNG.randbytes(4097), RNG.randbytes(256 << 10)]


def _pair(compiled_dir: Path, wasm: Path) -> tuple[str, str]:
    """(bulk-imports hash, plain-imports baseline hash) of one guest, both in `compiled_dir`."""
    data = wasm.read_bytes()
    bulk = compile_component(data, compiled_dir, content_hash="sha256:" + hashlib.sha256(data).hexdigest())
    baseline = "sha256:" + hashlib.sha256(data + b"imports plain").hexdigest()
    if not artifact_path(compiled_dir, baseline).is_file():
        export_only_artifact(data, artifact_path(compiled_dir, baseline))
    return bulk.content_hash, baseline


@pytest.fixture(scope="module")
def demo_pair(compiled_dir: Path) -> tuple[str, str]:
    from build_guest import build

    return _pair(compiled_dir, build("demo"))


@pytest.fixture(scope="module")
def js_pair(compiled_dir: Path) -> tuple[str, str]:
    from tests.sdk.conftest import build_js_notes

    return _pair(compiled_dir, build_js_notes())


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            n = int(self.path.strip("/"))
            body = (ALL_BYTES * (n // len(ALL_BYTES) + 1))[:n]
            self.send_response(200)
            self.send_header("content-length", str(n))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()


def _call(runner: Runner, content_hash: str, install: str, method: str, path: str, body: bytes | None = None,
          **extra: Any) -> dict[str, object]:
    resp = runner.execute(make_request(content_hash, path, method=method, body=body, install=install,
                                       request_id="req-imports", **extra))
    return resp.model_dump()


def test_published_guests_get_bulk_imports(compiled_dir: Path, demo_pair: tuple[str, str],
                                           js_pair: tuple[str, str]) -> None:
    for content_hash, _ in (demo_pair, js_pair):
        report = load_report(compiled_dir, content_hash)
        assert report is not None
        assert report.bulk_imports == ["alga:extension/storage.get", "alga:extension/storage.put",
                                       "alga:extension/http.fetch"]
        assert not any(name.startswith("extgate:bulk/") for name in report.imports)


@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{len(v)}B")
def test_storage_values_are_identical(runner: Runner, demo_pair: tuple[str, str], value: bytes) -> None:
    bulk, plain = demo_pair
    answers = []
    for content_hash, install in ((bulk, "i-bulk"), (plain, "i-plain")):
        put = _call(runner, content_hash, install, "PUT", "/kv/ns/k", value, providers=["cap:storage.kv"])
        get = _call(runner, content_hash, install, "GET", "/kv/ns/k", providers=["cap:storage.kv"])
        stored = runner.kv.get("t1", install, "ns", "k")
        assert stored.value == value  # what the host received, byte for byte
        answers.append((put, get))
    assert answers[0] == answers[1]
    get_doc = json.loads(base64.b64decode(str(answers[0][1]["body_b64"])))
    assert get_doc["value"] == value.decode("utf-8", "replace")  # what the guest got back


def test_storage_errors_are_identical(runner: Runner, demo_pair: tuple[str, str]) -> None:
    for path, method, providers in (("/kv/ns/missing", "GET", ["cap:storage.kv"]),
                                    ("/kv/ns/k", "PUT", []), ("/kv/ns/k", "GET", [])):
        answers = [_call(runner, h, "i-err", method, path, b"v" if method == "PUT" else None, providers=providers)
                   for h in demo_pair]
        assert answers[0] == answers[1], path


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4097, 65536, 1 << 20])
def test_fetched_bodies_are_identical(runner: Runner, demo_pair: tuple[str, str], upstream: str, size: int) -> None:
    answers = [_call(runner, h, "i-fetch", "GET", "/fetch", providers=["cap:http.fetch"],
                     query={"url": f"{upstream}/{size}"}, egress={"allowed_hosts": ["localhost"]})
               for h in demo_pair]
    assert answers[0] == answers[1]
    assert json.loads(base64.b64decode(str(answers[0]["body_b64"]))) == {"status": 200, "length": size}


def test_js_guest_notes_are_identical(runner: Runner, js_pair: tuple[str, str]) -> None:
    text = "é 日本 🙂 " + "x" * 70_000
    answers = []
    for content_hash, install in zip(js_pair, ("js-bulk", "js-plain"), strict=True):
        put = _call(runner, content_hash, install, "PUT", "/notes/n1", json.dumps({"text": text}).encode(),
                    providers=["cap:storage.kv"], headers={"content-type": "application/json"},
                    config={"max-note-length": "100000"})
        get = _call(runner, content_hash, install, "GET", "/notes/n1", providers=["cap:storage.kv"])
        answers.append((put, get))
    assert answers[0] == answers[1]
    assert json.loads(base64.b64decode(str(answers[0][1]["body_b64"])))["text"] == text


def test_components_without_shim_imports_keep_plain_imports() -> None:
    with pytest.raises(TransformRefused):
        transform_imports(transform(wat_bytes("echo")).component)


def test_import_transform_is_deterministic() -> None:
    from build_guest import build

    data = transform(build("demo").read_bytes()).component
    assert transform_imports(data).component == transform_imports(data).component
    with pytest.raises(TransformRefused, match="already imports"):
        transform_imports(transform_imports(data).component)


def test_text_no_adapter_writes_fails_closed() -> None:
    """A guest may import extgate:bulk/* itself: malformed text is an error value, never a trap."""
    from wasmtime.component import Record

    entry = Record()
    fields: dict[str, Any] = {"namespace": "ns", "key": "k", "value": "0", "revision": None}
    for k, v in fields.items():
        setattr(entry, k, v)
    assert bulk_storage.put(None, entry) == "internal"
    request = Record()
    fields = {"method": "GET", "url": "https://x.example/", "headers": [], "body": "00\x00"}
    for k, v in fields.items():
        setattr(request, k, v)
    assert bulk_http.fetch(None, request) == "internal"


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 255, 4097])
def test_fetch_adapter_moves_request_and_response_bodies(size: int) -> None:
    """No example guest sends a fetch body, so the adapter's outgoing path is driven directly:
    its core function is called with the original signature over a real memory, and a fake
    fast import checks the text it receives and answers a body as text."""
    from wasmtime import Engine, FuncType, Instance, Limits, Memory, MemoryType, Module, Store, ValType
    from wasmtime import Func as CoreFunc

    from runner.bulk import codec
    from runner.bulk.imports import _adapter_module, _Slot, supported_imports

    spec = next(s for s in supported_imports() if s.function == "fetch")
    module_bytes, signatures = _adapter_module([_Slot(spec, 0, (0, "$imports"), 0, 0)])
    store = Store(Engine())
    memory = Memory(store, MemoryType(Limits(2, None)))
    heap = [4096]

    def realloc(old: int, old_size: int, align: int, new_size: int) -> int:
        assert old == 0
        start = -(-heap[0] // align) * align
        heap[0] = start + new_size
        return start

    sent = RNG.randbytes(size)
    answer = RNG.randbytes(size * 2 + 1)
    seen: list[bytes] = []

    def fast_fetch(*args: int) -> None:
        body_disc, body_ptr, body_len, retptr = args[6], args[7], args[8], args[9]
        assert body_disc == 1
        seen.append(codec.bytes_from_radix64(bytes(memory.read(store, body_ptr, body_ptr + body_len)).decode()))
        text = codec.radix64_from_bytes(answer).encode()
        at = realloc(0, 0, 1, len(text))
        memory.write(store, text, at)
        record = bytearray(28)  # result tag 0 (ok), http-response at 4: status, headers, body option at 16
        record[4:6] = (200).to_bytes(2, "little")
        record[16] = 1
        record[20:24], record[24:28] = at.to_bytes(4, "little"), len(text).to_bytes(4, "little")
        memory.write(store, bytes(record), retptr)

    i32 = ValType.i32()
    ten = FuncType([i32] * 10, [])
    assert signatures == ["(param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)"]
    instance = Instance(store, Module(store.engine, module_bytes), [
        memory, CoreFunc(store, FuncType([i32] * 4, [i32]), realloc), CoreFunc(store, ten, fast_fetch)])
    body_at = realloc(0, 0, 1, size)
    memory.write(store, sent, body_at)
    retptr = realloc(0, 0, 4, 28)
    adapted = instance.exports(store)["adapted0"]
    assert isinstance(adapted, CoreFunc)
    adapted(store, 0, 0, 0, 0, 0, 0, 1, body_at, size, retptr)
    assert seen == [sent]
    out = bytes(memory.read(store, retptr, retptr + 28))
    ptr, length = int.from_bytes(out[20:24], "little"), int.from_bytes(out[24:28], "little")
    assert bytes(memory.read(store, ptr, ptr + length)) == answer
