"""Noisy-neighbour benchmark: does one tenant's load slow another tenant's calls?

One `extgate serve`-style gateway process (uvicorn, embedded runner, `EXTGATE_RUNNER_THREADS`
= the pool, default 2). Tenant B calls `GET /hello` (the WAT echo guest) at a paced rate
(open loop: latency counts from when a request was due). Phase 1: B alone, its baseline.
Phase 2: tenant A keeps 4× the pool size of long-running calls in flight (the WAT fault
guest's `/loop`, which spins until the deadline `EXTGATE_GATEWAY_TIMEOUT_MS`) while B runs
the same paced load again. The phases alternate (`--rounds`) so drift hits both alike.

Printed: B's p50/p99 alone and under A's load, the ratio of the p99s (goal ≤ 2), B's
non-200 answers (goal: no 5xx), and A's own throughput: calls that ran (504 at their
deadline: the guest had its full budget) and calls refused fast (503 `runner_busy`) per s.

    .venv/bin/python bench/bench_noisy_neighbour.py [--threads 2] [--rate 40] [--n 600]
        [--loop-ms 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import loadgen  # noqa: E402
from bench_gateway import free_port, serve  # noqa: E402
from wasmtime import wat2wasm  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")


def publish(c: Any, data_dir: Path, guest: str, name: str, endpoint: str, tenant: str) -> str:
    from runner.compiler import compile_component
    from service.registry import installs, publishing
    from service.registry.bundles import load_bundle_path

    wasm = bytes(wat2wasm((ROOT / "tests" / "runner" / "guests" / f"{guest}.wat").read_text()))
    bundle_dir = data_dir / f"bundle-{guest}"
    (bundle_dir / "dist").mkdir(parents=True)
    (bundle_dir / "dist" / "main.wasm").write_bytes(wasm)
    (bundle_dir / "manifest.json").write_text(json.dumps({
        "name": f"com.bench.{name}", "publisher": "bench", "version": "1.0.0", "runtime": "wasm-js@1",
        "capabilities": [], "api": {"endpoints": [{"method": "GET", "path": endpoint, "handler": "h"}]},
    }))
    published = publishing.publish_bundle(c.db, c.bundle_store, load_bundle_path(bundle_dir), signature=None,
                                          signature_policy=c.signature_policy, validate_component=None)
    compile_component(wasm, data_dir / "compiled", content_hash=published.content_hash)
    with c.db.session() as session:
        installs.create_install(session, tenant, published.slug, version=None, granted_capabilities=[])
    return str(published.slug)


def setup(data_dir: Path) -> dict[str, str]:
    from audit.config import AuditSettings
    from service.auth.tokens import mint_dev_token
    from service.container import build_container
    from service.settings import Settings

    settings = Settings(data_dir=data_dir, allow_dev_keys=True)
    c = build_container(settings, auto_migrate=True, validate_component=None,
                        audit_settings=AuditSettings(allow_dev_key=True, checkpoint_interval_seconds=3600))
    out = {
        "a_slug": publish(c, data_dir, "faults", "loop", "/loop", "tenant-a"),
        "b_slug": publish(c, data_dir, "echo", "echo", "/hello", "tenant-b"),
        "a_token": mint_dev_token(settings, tenant="tenant-a", subject="a-user", roles=["viewer"]),
        "b_token": mint_dev_token(settings, tenant="tenant-b", subject="b-user", roles=["viewer"]),
    }
    c.close()
    return out


async def paced(target: loadgen.Target, n: int, concurrency: int, rate: float) -> tuple[list[float], Counter[int]]:
    """Like loadgen.open_loop, but records every status instead of stopping at the first non-200."""
    conns = [await loadgen.Connection.open(target) for _ in range(concurrency)]
    for i in range(20):
        await conns[i % concurrency].send(target)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    next_index = 0
    t0 = time.perf_counter()

    async def client(conn: loadgen.Connection) -> None:
        nonlocal next_index
        while next_index < n:
            due = t0 + next_index / rate
            next_index += 1
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status, _ = await conn.send(target)
            latencies.append(time.perf_counter() - due)
            statuses[status] += 1

    try:
        await asyncio.gather(*(client(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    return latencies, statuses


async def noisy(target: loadgen.Target, in_flight: int, stop: asyncio.Event) -> tuple[Counter[int], float]:
    """Keep `in_flight` calls outstanding until `stop`; (statuses, seconds)."""
    statuses: Counter[int] = Counter()

    async def client() -> None:
        conn = await loadgen.Connection.open(target)
        try:
            while not stop.is_set():
                status, _ = await conn.send(target)
                statuses[status] += 1
                if status == 503:
                    await asyncio.sleep(0.05)  # a client honouring retry-after would wait longer
        finally:
            await conn.close()

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(client()) for _ in range(in_flight)]
    await stop.wait()
    await asyncio.gather(*tasks)
    return statuses, time.perf_counter() - t0


async def with_neighbour(a: loadgen.Target, b: loadgen.Target, in_flight: int, n: int, concurrency: int,
                         rate: float) -> tuple[list[float], Counter[int], Counter[int], float]:
    stop = asyncio.Event()
    noise = asyncio.create_task(noisy(a, in_flight, stop))
    await asyncio.sleep(1.0)  # A's calls fill the pool first
    lat, statuses = await paced(b, n, concurrency, rate)
    stop.set()
    a_statuses, a_seconds = await noise
    return lat, statuses, a_statuses, a_seconds


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2, help="EXTGATE_RUNNER_THREADS (the pool)")
    ap.add_argument("--rate", type=float, default=40.0, help="B's offered load, req/s")
    ap.add_argument("--n", type=int, default=600, help="B's requests per phase and round")
    ap.add_argument("--concurrency", type=int, default=4, help="B's clients")
    ap.add_argument("--loop-ms", type=int, default=2000, help="A's calls run this long (the gateway deadline)")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="extgate-bench-noisy-") as tmp:
        data_dir = Path(tmp)
        info = setup(data_dir)
        env = {"EXTGATE_DATA_DIR": str(data_dir), "EXTGATE_GATEWAY_RATE_LIMIT_BURST": "1000000",
               "EXTGATE_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000", "EXTGATE_RUNNER_THREADS": str(a.threads),
               "EXTGATE_GATEWAY_TIMEOUT_MS": str(a.loop_ms)}
        port = free_port()
        proc = serve([PY, "-m", "uvicorn", "--log-level", "warning", "--no-access-log", "--port", str(port),
                      "service.asgi:app"], env, port)
        try:
            base = f"http://127.0.0.1:{port}/api/ext"
            a_target = loadgen.Target.build("GET", f"{base}/{info['a_slug']}/loop",
                                            {"authorization": f"Bearer {info['a_token']}"})
            b_target = loadgen.Target.build("GET", f"{base}/{info['b_slug']}/hello",
                                            {"authorization": f"Bearer {info['b_token']}"})
            in_flight = 4 * a.threads
            alone: list[float] = []
            loaded: list[float] = []
            b_alone_status: Counter[int] = Counter()
            b_loaded_status: Counter[int] = Counter()
            a_status: Counter[int] = Counter()
            a_seconds = 0.0
            for _ in range(a.rounds):
                lat, st = asyncio.run(paced(b_target, a.n, a.concurrency, a.rate))
                alone += lat
                b_alone_status += st
                lat, st, ast, secs = asyncio.run(with_neighbour(a_target, b_target, in_flight, a.n,
                                                                a.concurrency, a.rate))
                loaded += lat
                b_loaded_status += st
                a_status += ast
                a_seconds += secs
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)

    b5xx = sum(v for k, v in b_loaded_status.items() if k >= 500)
    ratio = pct(loaded, 99) / pct(alone, 99)
    print(f"pool {a.threads} threads; A keeps {in_flight} calls of {a.loop_ms} ms in flight; "
          f"B paced at {a.rate:g} req/s, {a.n} requests x {a.rounds} rounds per phase")
    print(f"B alone:        p50 {pct(alone, 50):7.2f} ms  p99 {pct(alone, 99):7.2f} ms  "
          f"statuses {dict(b_alone_status)}")
    print(f"B with A:       p50 {pct(loaded, 50):7.2f} ms  p99 {pct(loaded, 99):7.2f} ms  "
          f"statuses {dict(b_loaded_status)}")
    print(f"B p99 ratio (with A / alone): {ratio:.2f}  (goal <= 2.00)   B 5xx: {b5xx}  (goal 0)")
    ran = a_status.get(504, 0) + a_status.get(200, 0)
    print(f"A: {ran / a_seconds:.2f} calls/s ran to their deadline, "
          f"{a_status.get(503, 0) / a_seconds:.2f} calls/s refused fast (503 runner_busy); statuses {dict(a_status)}")


if __name__ == "__main__":
    main()
