"""Cost of metrics and tracing on the gateway: the same gateway with `EXTGATE_METRICS_ENABLED`
on and off, and with OpenTelemetry tracing at 100% sampling, measured in one run, one at a
time, in alternating rounds (machine drift hits all alike).

Per round and setting: start `service.asgi:app` (one uvicorn worker, embedded runner, SQLite,
the WAT echo guest of bench_gateway), warm it, then
  - saturated: 16 clients in a closed loop → throughput;
  - paced: a fixed offered rate (30% of the off build's saturated throughput from the first
    round) → p50/p99 latency;
and, with metrics on, one scrape of `/metrics` (its size and time are printed).
Prints on/off ratios of throughput and paced p50 (goal: throughput ≥ 0.95×, p50 ≤ 1/0.95×),
and the cost of tracing over metrics on (no goal: reported).

With metrics off the HTTP middleware and `/metrics` are gone; the domain counters (policy
decisions, runner calls, audit batches) still count: they are plain in-memory increments.

    .venv/bin/python bench/bench_metrics.py [--rounds 3] [--n 2000] [--paced-n 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_gateway as bg  # noqa: E402

# name → environment. "traced": metrics on and OpenTelemetry at 100% sampling, exported by the
# console exporter to /dev/null (bench_gateway.serve discards stdout): the spans' full cost.
SETTINGS: dict[str, dict[str, str]] = {
    "on": {"EXTGATE_METRICS_ENABLED": "true"},
    "off": {"EXTGATE_METRICS_ENABLED": "false"},
    "traced": {"EXTGATE_METRICS_ENABLED": "true", "OTEL_TRACES_EXPORTER": "console",
               "OTEL_TRACES_SAMPLER": "always_on"},
}


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=2000, help="saturated requests per round and setting")
    ap.add_argument("--paced-n", type=int, default=1000, help="paced requests per round and setting")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--settings", default=",".join(SETTINGS), help="which of on,off,traced to measure")
    a = ap.parse_args()
    chosen = [name for name in a.settings.split(",") if name]
    settings = {name: SETTINGS[name] for name in chosen}

    saturated: dict[str, list[float]] = {name: [] for name in settings}
    paced: dict[str, list[float]] = {name: [] for name in settings}
    throughput: dict[str, list[float]] = {name: [] for name in settings}
    cpu_ms: dict[str, list[float]] = {name: [] for name in settings}  # server CPU per request
    scrape: list[tuple[int, float]] = []
    rate = 0.0
    with tempfile.TemporaryDirectory(prefix="extgate-bench-metrics-") as tmp:
        data_dir = Path(tmp)
        info = bg.setup(data_dir, None)
        base_env = {"EXTGATE_DATA_DIR": str(data_dir), "EXTGATE_GATEWAY_RATE_LIMIT_BURST": "1000000",
                    "EXTGATE_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000", "EXTGATE_RUNNER_THREADS": "2"}
        uv = [bg.PY, "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
        headers = {"authorization": f"Bearer {info['token']}"}
        for round_no in range(a.rounds):
            order = list(settings) if round_no % 2 == 0 else list(reversed(list(settings)))
            for name in order:
                port = bg.free_port()
                env = {**base_env, **settings[name]}
                proc = bg.serve([*uv, "--port", str(port), "service.asgi:app"], env, port)
                try:
                    url = f"http://127.0.0.1:{port}/api/ext/{info['slug']}/hello"
                    asyncio.run(bg.load("GET", url, headers, None, n=200, concurrency=4))  # warm-up
                    cpu_before = bg.cpu_seconds(proc.pid)
                    lat, rps = asyncio.run(bg.load("GET", url, headers, None, n=a.n, concurrency=a.concurrency))
                    cpu_ms[name].append((bg.cpu_seconds(proc.pid) - cpu_before) * 1000 / a.n)
                    saturated[name] += lat
                    throughput[name].append(rps)
                    if not rate:
                        rate = round(0.3 * rps)
                    paced[name] += asyncio.run(bg.paced_load("GET", url, headers, None, n=a.paced_n,
                                                             concurrency=a.concurrency, rate=rate))
                    if name == "on":
                        with httpx.Client(timeout=10) as client:  # keep-alive: the scrape, not the connect
                            for _ in range(5):
                                started = time.perf_counter()
                                body = client.get(f"http://127.0.0.1:{port}/metrics").content
                                scrape.append((len(body), (time.perf_counter() - started) * 1000))
                finally:
                    stop(proc)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    print(f"metrics on vs off: {a.rounds} alternating rounds, n={a.n} saturated + {a.paced_n} paced per round "
          f"and setting, {a.concurrency} clients, paced at {rate:.0f} req/s, cpus={os.cpu_count()}")
    print(f"{'setting':8} {'req/s':>8} {'CPU ms/req':>10} {'sat p50':>8} {'paced p50':>10} {'paced p99':>10}   "
          "per-round req/s")
    for name in settings:
        rounds = " ".join(f"{x:.0f}" for x in throughput[name])
        print(f"{name:8} {mean(throughput[name]):8.0f} {mean(cpu_ms[name]):10.3f} {bg.pct(saturated[name], 50):8.2f} "
              f"{bg.pct(paced[name], 50):10.2f} {bg.pct(paced[name], 99):10.2f}   {rounds}")
    if "on" in settings and "off" in settings:
        tput = mean(throughput["on"]) / mean(throughput["off"])
        p50 = bg.pct(paced["off"], 50) / bg.pct(paced["on"], 50)
        cpu = mean(cpu_ms["off"]) / mean(cpu_ms["on"])
        print(f"metrics on/off: throughput {tput:.3f}x (goal >= 0.95); paced p50 off/on {p50:.3f}x (goal >= 0.95); "
              f"CPU per request off/on {cpu:.3f}x")
    if "on" in settings and "traced" in settings:
        traced_tput = mean(throughput["traced"]) / mean(throughput["on"])
        traced_p50 = bg.pct(paced["traced"], 50) - bg.pct(paced["on"], 50)
        traced_cpu = mean(cpu_ms["traced"]) - mean(cpu_ms["on"])
        print(f"tracing at 100% sampling vs metrics on: throughput {traced_tput:.3f}x, paced p50 {traced_p50:+.2f} ms, "
              f"CPU per request {traced_cpu:+.3f} ms")
    if scrape:
        print(f"/metrics scrape: {scrape[-1][0]} bytes, {min(ms for _, ms in scrape):.1f} ms (fastest)")


if __name__ == "__main__":
    main()
