"""Runner benchmark: prints the numbers of issues 3 and 18, measured in the same run.

1. fresh-instance request for a trivial guest vs the raw wasmtime-py floor
   (Store + WASI config + instantiate + one call, same engine/linker/guest);
2. bodies through the guest (WAT echo and the Python demo guest): the bulk path
   (`handler-b64`, issue 18) against the plain `handler` path of a second runner with
   `runner_bulk_bodies=False` on the same artifacts, for 1 MiB in + 1 MiB out, 64 KiB and
   1 byte (ratios plain/bulk, same run);
3. first request after a process restart with a cached artifact (fresh subprocess).

    .venv/bin/python bench/bench_runner.py [--n 300]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

from wasmtime import Store, WasiConfig, wat2wasm  # noqa: E402

from runner.compiler import artifact_path, compile_component  # noqa: E402
from runner.contract.envelope import Keyring  # noqa: E402
from runner.contract.execute import ExecuteRequest  # noqa: E402
from runner.debug import NullDebugSink  # noqa: E402
from runner.executor import Runner  # noqa: E402
from runner.host.values import rec  # noqa: E402
from runner.settings import RunnerSettings  # noqa: E402
from runner.storage.sql import SqlKVStore  # noqa: E402

MIB = 1 << 20


def request(content_hash: str, path: str, body: bytes | None) -> ExecuteRequest:
    return ExecuteRequest.model_validate({
        "context": {"tenant_id": "t", "extension_id": "e", "install_id": "i", "content_hash": content_hash},
        "http": {"method": "POST", "path": path,
                 "body_b64": base64.b64encode(body).decode() if body is not None else None},
    })


def median_ms(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


FIRST_REQUEST_CHILD = """
import sys, time, json
sys.path.insert(0, {root!r})
from pathlib import Path
from runner.executor import Runner
from runner.settings import RunnerSettings
from runner.contract.envelope import Keyring
from runner.debug import NullDebugSink
from runner.storage.sql import SqlKVStore
from runner.contract.execute import ExecuteRequest
s = RunnerSettings(data_dir=Path({data!r}), runner_compiled_dir=Path({compiled!r}), runner_threads=1)
r = Runner(s, keyring=Keyring.generate("b"), kv_store=SqlKVStore("sqlite://", create_tables=True),
           debug_sink=NullDebugSink())
t = time.perf_counter(); warmed = r.warm() if {warm!r} else []; warm_ms = (time.perf_counter() - t) * 1000
req = ExecuteRequest.model_validate({{"context": {{"tenant_id": "t", "extension_id": "e", "content_hash": {h!r}}},
                                     "http": {{"method": "GET", "path": {path!r}}}}})
t = time.perf_counter(); resp = r.execute(req); first = (time.perf_counter() - t) * 1000
t = time.perf_counter(); r.execute(req); second = (time.perf_counter() - t) * 1000
print(json.dumps({{"first_ms": first, "second_ms": second, "warm_ms": warm_ms, "warmed": len(warmed),
                  "error": resp.error}}))
r.close()
"""


def first_request_after_restart(data: Path, compiled: Path, content_hash: str, path: str,
                                warm: bool) -> dict[str, float]:
    code = FIRST_REQUEST_CHILD.format(root=str(ROOT), data=str(data), compiled=str(compiled), h=content_hash,
                                      path=path, warm=warm)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--no-python-guest", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="extgate-bench-"))
    compiled = tmp / "compiled"
    echo = bytes(wat2wasm((ROOT / "tests/runner/guests/echo.wat").read_text()))
    echo_hash = compile_component(echo, compiled).content_hash
    hashes = {"wat-echo": echo_hash}
    if not args.no_python_guest:
        from build_guest import build

        wasm = build("demo")
        persistent = wasm.parent.parent / "compiled"
        report = compile_component(wasm, persistent)
        dst = artifact_path(compiled, report.content_hash)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(Path(report.artifact).read_bytes())
        dst.with_suffix(".json").write_text(Path(report.artifact).with_suffix(".json").read_text())
        hashes["python-demo"] = report.content_hash

    settings = RunnerSettings(data_dir=tmp, runner_compiled_dir=compiled, runner_threads=1)
    runner = Runner(settings, keyring=Keyring.generate("b"), kv_store=SqlKVStore("sqlite://", create_tables=True),
                    debug_sink=NullDebugSink())
    plain_runner = Runner(settings.model_copy(update={"runner_bulk_bodies": False}), keyring=Keyring.generate("p"),
                          kv_store=SqlKVStore("sqlite://", create_tables=True), debug_sink=NullDebugSink())
    engine = runner.engine.engine
    linker = runner.linker

    print(f"machine: {sys.platform}, python {sys.version.split()[0]}, n={args.n} (medians)")
    print("\n1. trivial guest, fresh Store + instance per request")
    for name, content_hash in hashes.items():
        component = runner.components.get(content_hash)
        empty = rec(context=rec(request_id="r", tenant_id="t", extension_id="e", install_id=None, version_id=None),
                    http=rec(method="GET", url="/echo", headers=[], body=None))

        def raw(component=component, empty=empty) -> None:  # type: ignore[no-untyped-def]
            store = Store(engine)
            try:
                store.set_wasi(WasiConfig())
                store.set_epoch_deadline(1000)
                inst = linker.instantiate(store, component)
                inst.get_func(store, "handler")(store, empty)
            finally:
                store.close()

        req = request(content_hash, "/echo", None)
        req.http.method = "GET"
        for _ in range(20):
            raw()
            runner.execute(req)
        floor = median_ms(raw, args.n)
        direct = median_ms(lambda req=req: runner._run(req, frozenset(), {}, time.monotonic() + 10), args.n)
        pooled = median_ms(lambda req=req: runner.execute(req), args.n)
        print(f"   {name:12s} raw floor {floor:6.2f} ms | runner (worker thread) {direct:6.2f} ms "
              f"= {direct / floor:4.2f}x | Runner.execute incl. pool hop {pooled:6.2f} ms = {pooled / floor:4.2f}x")

    print("\n2. request body in + the same response body out: plain `handler` vs bulk `handler-b64`")
    for label, size, n in (("1 MiB", MIB, max(5, args.n // 30)), ("64 KiB", 64 << 10, max(20, args.n // 5)),
                           ("1 byte", 1, args.n)):
        body = bytes(range(256)) * (size // 256) if size >= 256 else b"x" * size
        for name, content_hash in hashes.items():
            req = request(content_hash, "/echo", body)
            for r in (runner, plain_runner):
                resp = r.execute(req)
                assert resp.error is None and base64.b64decode(resp.body_b64 or "") == body, resp.error
            bulk_ms = median_ms(lambda req=req: runner.execute(req), n)
            plain_ms = median_ms(lambda req=req: plain_runner.execute(req), n)
            target = " (target 20 ms)" if size == MIB else " (target: no slower)" if size == 1 else ""
            print(f"   {label:6s} {name:12s} plain {plain_ms:7.2f} ms | bulk {bulk_ms:7.2f} ms "
                  f"= {plain_ms / bulk_ms:5.2f}x faster{target}")

    print("\n3. first request after a process restart (artifact cached on disk, never compiled)")
    for name, content_hash in hashes.items():
        for warm in (False, True):
            res = first_request_after_restart(tmp / f"restart-{name}", compiled, content_hash, "/hello", warm)
            how = f"warm start ({res['warmed']} loaded in {res['warm_ms']:.1f} ms)" if warm else "lazy load"
            print(f"   {name:12s} {how:34s} first {res['first_ms']:6.2f} ms, second {res['second_ms']:6.2f} ms "
                  f"(target 10 ms; error={res['error']})")
    runner.close()
    plain_runner.close()


if __name__ == "__main__":
    main()
