"""Host imports that move bytes (issue 18, part 3): `storage.put` + `storage.get` of a 256 KiB
value and an `http.fetch` of a 1 MiB body, through the runner with the Python demo guest
(componentize-py), with 1-byte values/bodies as the floor.

Two artifacts of the same guest in the same run: "plain imports" (only the export transform:
each `list<u8>` an import carries crosses wasmtime-py's C API one value per byte, the state
before bulk imports) and "bulk imports" (what `compile_component` builds: storage get/put and
http.fetch move their bytes as radix-64 text through an in-guest adapter). Bodies cross in bulk
in both.

    .venv/bin/python bench/bench_imports.py [--n 15]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

from runner.bulk.imports import export_only_artifact  # noqa: E402
from runner.compiler import artifact_path, compile_component  # noqa: E402
from runner.contract.envelope import Keyring  # noqa: E402
from runner.contract.execute import ExecuteRequest, ExecuteResponse  # noqa: E402
from runner.debug import NullDebugSink  # noqa: E402
from runner.executor import Runner  # noqa: E402
from runner.settings import RunnerSettings  # noqa: E402
from runner.storage.sql import SqlKVStore  # noqa: E402

KIB, MIB = 1 << 10, 1 << 20
SIZES = {"1 B": 1, "256 KiB": 256 * KIB, "1 MiB": MIB}


def upstream() -> str:
    """A local server answering GET /<n> with n bytes."""
    bodies: dict[int, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            n = int(self.path.strip("/"))
            body = bodies.setdefault(n, bytes(range(256)) * (n // 256) + b"x" * (n % 256))
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://localhost:{server.server_address[1]}"


def request(content_hash: str, method: str, path: str, body: bytes | None, grants: dict[str, object],
            query: dict[str, str] | None = None) -> ExecuteRequest:
    doc: dict[str, object] = {
        "context": {"tenant_id": "t", "extension_id": "e", "install_id": "i", "content_hash": content_hash},
        "http": {"method": method, "path": path, "query": query or {},
                 "body_b64": base64.b64encode(body).decode() if body is not None else None},
        **grants,
    }
    return ExecuteRequest.model_validate(doc)


def median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def ok(resp: ExecuteResponse) -> dict[str, object]:
    assert resp.error is None and resp.status == 200, (resp.error, resp.status, resp.body_b64 and resp.body_b64[:80])
    doc: dict[str, object] = json.loads(base64.b64decode(resp.body_b64 or ""))
    return doc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=15)
    a = ap.parse_args()
    from build_guest import build

    with tempfile.TemporaryDirectory(prefix="extgate-bench-imports-") as tmp:
        wasm = build("demo")
        persistent = wasm.parent.parent / "compiled"
        report = compile_component(wasm, persistent)
        assert report.bulk_imports, report.bulk_imports_note
        baseline_hash = "sha256:" + hashlib.sha256(wasm.read_bytes() + b"imports plain").hexdigest()
        export_only_artifact(wasm.read_bytes(), artifact_path(persistent, baseline_hash))
        settings = RunnerSettings(data_dir=Path(tmp), runner_compiled_dir=persistent, runner_threads=1,
                                  runner_fetch_allow_private_networks=True)
        runner = Runner(settings, keyring=Keyring.generate("b"), debug_sink=NullDebugSink(),
                        kv_store=SqlKVStore(f"sqlite:///{tmp}/kv.db", create_tables=True))
        base = upstream()
        storage_caps: dict[str, object] = {"providers": ["cap:storage.kv"]}
        fetch_caps: dict[str, object] = {"providers": ["cap:http.fetch"], "egress": {"allowed_hosts": ["localhost"]}}
        print(f"imports through the runner, Python demo guest (bodies in bulk), medians of {a.n}")
        rows: dict[tuple[str, str], float] = {}
        for label, size in SIZES.items():
            value = bytes(range(256)) * (size // 256) + b"y" * (size % 256)
            for variant, h in (("plain imports", baseline_hash), ("bulk imports", report.content_hash)):
                put_ms = get_ms = float("nan")
                if size <= 256 * KIB:  # the demo answers the value as JSON text: 1 MiB would pass the response cap
                    put = request(h, "PUT", "/kv/bench/k", value, storage_caps)
                    get = request(h, "GET", "/kv/bench/k", None, storage_caps)
                    assert ok(runner.execute(put))["key"] == "k"
                    assert len(str(ok(runner.execute(get))["value"]).encode()) >= size
                    put_ms = median_ms(partial(runner.execute, put), a.n)
                    get_ms = median_ms(partial(runner.execute, get), a.n)
                fetch = request(h, "GET", "/fetch", None, fetch_caps, query={"url": f"{base}/{size}"})
                assert ok(runner.execute(fetch)) == {"status": 200, "length": size}
                fetch_ms = median_ms(partial(runner.execute, fetch), a.n)
                rows[(variant, f"storage {label}")] = put_ms + get_ms
                rows[(variant, f"fetch {label}")] = fetch_ms
                print(f"   {label:8s} {variant:13s} storage put {put_ms:7.2f} ms + get {get_ms:7.2f} ms = "
                      f"{put_ms + get_ms:7.2f} ms | http.fetch {fetch_ms:7.2f} ms")
        runner.close()
    for what, label in (("storage", "1 B"), ("storage", "256 KiB"), ("fetch", "1 B"), ("fetch", "1 MiB")):
        before, after = rows[("plain imports", f"{what} {label}")], rows[("bulk imports", f"{what} {label}")]
        print(f"{what} {label}: plain imports {before:.1f} ms, bulk imports {after:.1f} ms = {before / after:.2f}x")

if __name__ == "__main__":
    main()
