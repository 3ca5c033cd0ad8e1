"""Latency after the response (issue 18, part 4): would closing the Store after the response
has been sent lower the client-visible p50 without raising CPU per request?

On a large guest most of a small request's time is copy-on-write page faults on the guest's
heap snapshot (notes/bulk-body: ~0.6 ms of ~0.93 ms on the 12 MB JS guest). wasmtime's pooling
allocator with `linear_memory_keep_resident` avoids the faults but does its reset work in
`close`. This measures, in one run and per engine configuration, `Runner._run` for `GET /hello`
on the JavaScript example guest (`examples/js-notes`, bulk bodies on):

- total: what a client waits for today (the Store is closed before the answer is returned);
- close: the part a deferred close would move after the response;
- visible if deferred: total - close;
- CPU per request: process CPU time (all threads) / requests.

    .venv/bin/python bench/bench_close.py [--n 400]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import wasmtime  # noqa: E402
from wasmtime import Config  # noqa: E402
from wasmtime import _ffi as ffi  # noqa: E402

from runner.compiler import compile_component  # noqa: E402
from runner.contract.envelope import Keyring  # noqa: E402
from runner.contract.execute import ExecuteRequest  # noqa: E402
from runner.debug import NullDebugSink  # noqa: E402
from runner.engine import EngineOptions  # noqa: E402
from runner.executor import Runner  # noqa: E402
from runner.settings import RunnerSettings  # noqa: E402
from runner.storage.sql import SqlKVStore  # noqa: E402


@dataclass(frozen=True)
class PoolingResident(EngineOptions):
    """The runner's engine plus wasmtime's pooling allocator keeping linear memory resident
    (the C API has it; wasmtime-py does not wrap it). Same code flags: artifacts load as is."""

    def config(self) -> Config:
        cfg = super().config()
        pc = ffi.wasmtime_pooling_allocation_config_new()
        for setter, value in (("total_component_instances", 16), ("total_core_instances", 16 * 16),
                              ("max_core_instances_per_component", 16), ("total_memories", 16 * 4),
                              ("max_memories_per_component", 4), ("total_tables", 16 * 8),
                              ("max_tables_per_component", 8), ("table_elements", 20_000),
                              ("max_memory_size", 512 << 20), ("total_stacks", 16),
                              ("linear_memory_keep_resident", 64 << 20), ("table_keep_resident", 1 << 20)):
            getattr(ffi, f"wasmtime_pooling_allocation_config_{setter}_set")(pc, value)
        ffi.wasmtime_pooling_allocation_strategy_set(cfg.ptr(), pc)
        ffi.wasmtime_pooling_allocation_config_delete(pc)
        return cfg


CLOSE_TIMES: list[float] = []
_original_close = wasmtime.Store.close


def _timed_close(self: wasmtime.Store) -> None:
    started = time.perf_counter()
    _original_close(self)
    CLOSE_TIMES.append(time.perf_counter() - started)


def build_js_notes() -> Path:
    from bench_bodies import build_js_notes as build

    return build()


def measure(name: str, options: EngineOptions, compiled: Path, content_hash: str, n: int, tmp: Path) -> None:
    settings = RunnerSettings(data_dir=tmp / name, runner_compiled_dir=compiled, runner_threads=1)
    (tmp / name).mkdir(parents=True)
    runner = Runner(settings, keyring=Keyring.generate("c"), engine_options=options, debug_sink=NullDebugSink(),
                    kv_store=SqlKVStore("sqlite://", create_tables=True))
    req = ExecuteRequest.model_validate({
        "context": {"tenant_id": "t", "extension_id": "e", "install_id": "i", "content_hash": content_hash,
                    "config": {"greeting": "hi"}},
        "http": {"method": "GET", "path": "/hello"}})
    for _ in range(20):
        resp = runner._run(req, frozenset(), {}, time.monotonic() + 10)
        assert resp.error is None and resp.status == 200, resp
    totals, closes = [], []
    cpu0 = time.process_time()
    for _ in range(n):
        CLOSE_TIMES.clear()
        started = time.perf_counter()
        runner._run(req, frozenset(), {}, time.monotonic() + 10)
        totals.append(time.perf_counter() - started)
        closes.append(sum(CLOSE_TIMES))  # this request's Store (a collected earlier one may add a little)
    cpu_ms = (time.process_time() - cpu0) * 1000 / n
    close = statistics.median(closes) * 1000
    total = statistics.median(totals) * 1000
    visible = statistics.median(t - c for t, c in zip(totals, closes, strict=True)) * 1000
    print(f"   {name:18s} total p50 {total:6.3f} ms | close p50 {close:6.3f} ms | visible if close deferred "
          f"{visible:6.3f} ms | CPU/request {cpu_ms:6.3f} ms")
    runner.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    wasmtime.Store.close = _timed_close  # type: ignore[method-assign,assignment]
    with tempfile.TemporaryDirectory(prefix="extgate-bench-close-") as tmp_name:
        tmp = Path(tmp_name)
        compiled = tmp / "compiled"
        report = compile_component(build_js_notes(), compiled)
        print(f"GET /hello on js-notes through Runner._run, n={a.n} per round, {a.rounds} rounds")
        configs: list[tuple[str, EngineOptions]] = [("default", EngineOptions()),
                                                    ("pooling+resident", PoolingResident())]
        for round_no in range(a.rounds):
            for i, (name, options) in enumerate(configs):
                measure(f"{name}", options, compiled, report.content_hash, a.n, tmp / f"r{round_no}-{i}")


if __name__ == "__main__":
    main()
