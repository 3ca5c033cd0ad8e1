"""Compare gateway builds in one run: each build's added latency over the same runner.

A build is a checkout of this repository (for example a `git worktree` of another commit).
Each round starts one build's gateway, paces it, stops it, then paces the runner direct, so
only one gateway shares the cores at a time and machine drift hits every build alike.
Prints, per build, the paced p50/p90 and the added p50 over the runner, and the gateway
process's CPU per request (its live threads).

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/ab_gateway.py --build before=/tmp/before --build now=. [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_gateway as bg  # noqa: E402


def setup_in(root: Path, data_dir: Path) -> dict[str, str]:
    """Run `bench_gateway.setup` of the build at `root` (its own code and migrations)."""
    code = ("import json, sys; from pathlib import Path; sys.path.insert(0, 'bench'); import bench_gateway as bg; "
            f"print(json.dumps(bg.setup(Path({str(data_dir)!r}), None)))")
    out = subprocess.run([bg.PY, "-c", code], cwd=root, check=True, capture_output=True, text=True)  # noqa: S603
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def live_threads_cpu(pid: int) -> float:
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", action="append", required=True, help="NAME=PATH of a checkout")
    ap.add_argument("--rate", type=float, default=110.0)
    ap.add_argument("--n", type=int, default=1000, help="requests per target per round")
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    builds = {name: Path(path).resolve() for name, _, path in (b.partition("=") for b in a.build)}

    with tempfile.TemporaryDirectory(prefix="extgate-ab-") as tmp:
        data_dir = Path(tmp) / "runner"
        info = bg.setup(data_dir, None)
        env = {"EXTGATE_DATA_DIR": str(data_dir), "EXTGATE_GATEWAY_RATE_LIMIT_BURST": "1000000",
               "EXTGATE_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000", "EXTGATE_RUNNER_THREADS": "2"}
        # Each build gets a data directory set up by its own code: a build's schema (migrations)
        # and policy store may be ahead of or behind another's.
        build_env: dict[str, dict[str, str]] = {}
        build_info: dict[str, dict[str, str]] = {}
        for name, root in builds.items():
            build_dir = Path(tmp) / f"build-{name}"
            build_info[name] = setup_in(root, build_dir)
            build_env[name] = {**env, "EXTGATE_DATA_DIR": str(build_dir)}
        runner_port = bg.free_port()
        runner = bg.serve([str(ROOT / ".venv" / "bin" / "extgate"), "runner", "serve", "--port", str(runner_port)],
                       env, runner_port, ROOT)
        runner_call = ("POST", f"http://127.0.0.1:{runner_port}/v1/execute", info["execute_headers"],
                       info["execute"].encode())
        latencies: dict[str, list[float]] = {"runner": [], **{name: [] for name in builds}}
        cpu: dict[str, list[float]] = {name: [] for name in builds}
        try:
            for _ in range(a.rounds):
                for name, root in builds.items():
                    port = bg.free_port()
                    gw = bg.serve([bg.PY, "-m", "uvicorn", "--log-level", "warning", "--no-access-log",
                                "--port", str(port), "service.asgi:app"], build_env[name], port, root)
                    try:
                        mine = build_info[name]
                        call = ("GET", f"http://127.0.0.1:{port}/api/ext/{mine['slug']}/hello",
                                {"authorization": f"Bearer {mine['token']}"}, None)
                        asyncio.run(bg.paced_load(*call, n=300, concurrency=16, rate=a.rate))  # type: ignore[arg-type]
                        before = live_threads_cpu(gw.pid)
                        latencies[name] += asyncio.run(bg.paced_load(*call, n=a.n, concurrency=16,  # type: ignore[arg-type]
                                                                     rate=a.rate))
                        cpu[name].append((live_threads_cpu(gw.pid) - before) * 1000 / a.n)
                    finally:
                        stop(gw)
                    latencies["runner"] += asyncio.run(bg.paced_load(*runner_call, n=a.n,  # type: ignore[arg-type]
                                                                     concurrency=16, rate=a.rate))
        finally:
            stop(runner)

    base = bg.pct(latencies["runner"], 50)
    print(f"paced at {a.rate:.0f} req/s, {a.rounds} rounds x {a.n} requests, 16 clients")
    for name, lat in latencies.items():
        line = f"{name:12} p50 {bg.pct(lat, 50):6.2f} ms  p90 {bg.pct(lat, 90):6.2f} ms"
        if name in cpu:
            per_round = sorted(cpu[name])
            line += (f"  added p50 {bg.pct(lat, 50) - base:+.2f} ms"
                     f"  CPU/request {per_round[len(per_round) // 2]:.2f} ms (median of rounds)")
        print(line)


if __name__ == "__main__":
    main()
