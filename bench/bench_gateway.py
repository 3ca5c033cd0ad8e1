"""Gateway benchmark: ratios measured in one run with one load generator.

1. Full-pipeline throughput vs a bare FastAPI/uvicorn hello endpoint: 16 clients in a
   closed loop (each sends its next request when the last one answers), so every target
   is saturated and the latencies of this phase are mostly queueing (16 / throughput).
2. Added latency of the gateway over calling the runner directly, same guest, 16
   concurrent clients at a paced load (open loop, a fixed offered rate that both targets
   sustain; default 30% of the slower of runner and gateway, measured in this run): p50/p99 of
   `GET /api/ext/<slug>/hello` on `extgate serve`-style uvicorn (embedded runner, full
   pipeline: JWT, install lookup, Cedar, rate limit, durable audit append, config/secrets
   load, dispatch) minus p50/p99 of `POST /v1/execute` on `extgate runner serve` with the
   equivalent execute request. A request's latency counts from the moment it was due.

Every server is its own uvicorn process (one worker); the load generator is
`bench/loadgen.py` in this process (keep-alive HTTP/1.1 connections, pre-built requests:
cheap, so it takes little of the two cores from the servers), identical for all targets. Guest: the WAT echo
guest (trivial), so the numbers are the pipeline's, not the guest's.

    .venv/bin/python bench/bench_gateway.py [--n 3000] [--concurrency 16] [--paced-n 2000]
        [--rate REQ_PER_S] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import loadgen  # noqa: E402
from wasmtime import wat2wasm  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")

HELLO_APP = """
from fastapi import FastAPI
app = FastAPI()
@app.get("/hello")
async def hello():
    return {"message": "hello"}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(data_dir: Path, database_url: str | None) -> dict[str, Any]:
    """Publish the WAT echo guest, install it for tenant `bench`, compile its artifact."""
    from audit.config import AuditSettings
    from runner.compiler import compile_component
    from service.auth.tokens import mint_dev_token
    from service.container import build_container
    from service.registry import install_config, install_secrets, installs, publishing
    from service.registry.bundles import load_bundle_path
    from service.settings import Settings

    settings = Settings(data_dir=data_dir, database_url=database_url, allow_dev_keys=True)
    c = build_container(settings, auto_migrate=True, validate_component=None,
                        audit_settings=AuditSettings(allow_dev_key=True, checkpoint_interval_seconds=3600))
    wasm = bytes(wat2wasm((ROOT / "tests" / "runner" / "guests" / "echo.wat").read_text()))
    bundle_dir = data_dir / "bench-bundle"
    (bundle_dir / "dist").mkdir(parents=True)
    (bundle_dir / "dist" / "main.wasm").write_bytes(wasm)
    (bundle_dir / "manifest.json").write_text(json.dumps({
        "name": "com.bench.echo", "publisher": "bench", "version": "1.0.0", "runtime": "wasm-js@1",
        "capabilities": ["cap:secrets.get"],
        "api": {"endpoints": [{"method": "GET", "path": "/hello", "handler": "hello"}]},
    }))
    published = publishing.publish_bundle(c.db, c.bundle_store, load_bundle_path(bundle_dir), signature=None,
                                          signature_policy=c.signature_policy, validate_component=None)
    compile_component(wasm, data_dir / "compiled", content_hash=published.content_hash)
    with c.db.session() as session:
        install_id = installs.create_install(session, "bench", published.slug, version=None,
                                             granted_capabilities=["cap:secrets.get"]).id
    install_config.set_config(c.db, "bench", install_id, {"greeting": "hi"})
    install_secrets.set_secrets(c.db, c.keyring, "bench", install_id, {"api_key": "bench-secret"})
    tok = mint_dev_token(settings, tenant="bench", subject="bench-user", roles=["viewer"])
    # The runner-direct request: what the gateway would send for the same call.
    from service.gateway.execute import CallInput, build_execute
    from service.gateway.installs import find_install, load_material

    info = find_install(c.db.engine, "bench", published.slug)
    assert info is not None
    principal = c.verifier.verify(tok)
    call = CallInput("bench-rid", "GET", "/hello", {}, {}, b"", None)
    req, headers = build_execute(call, principal, info, load_material(c.db.engine, info),
                                 timeout_ms=30_000, memory_mb=None)
    runner_token = settings.effective_runner_token
    c.close()
    return {"slug": published.slug, "token": tok, "execute": req.model_dump_json(exclude_none=True),
            "execute_headers": {**headers, "authorization": f"Bearer {runner_token}",
                                "content-type": "application/json"}}


def serve(args: list[str], env: dict[str, str], port: int, root: Path = ROOT) -> subprocess.Popen[bytes]:
    """Start a server from the checkout at `root` and wait until it accepts connections."""
    proc = subprocess.Popen(args, env={**os.environ, **env, "PYTHONPATH": str(root)}, cwd=root,  # noqa: S603
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError(f"server {args} did not start")


async def load(method: str, url: str, headers: dict[str, str], body: bytes | None, n: int,
               concurrency: int) -> tuple[list[float], float]:
    return await loadgen.closed_loop(loadgen.Target.build(method, url, headers, body), n, concurrency)


async def paced_load(method: str, url: str, headers: dict[str, str], body: bytes | None, n: int,
                     concurrency: int, rate: float) -> list[float]:
    return await loadgen.open_loop(loadgen.Target.build(method, url, headers, body), n, concurrency, rate)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a whole process (all its threads), from /proc; 0 where absent."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if q < 100 else max(values) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--paced-n", type=int, default=2000, help="requests per target in the paced phase")
    ap.add_argument("--paced-rounds", type=int, default=4,
                    help="alternating runner/gateway rounds in the paced phase (pairs them against drift)")
    ap.add_argument("--rate", type=float, default=None,
                    help="paced offered load, req/s (default: 30%% of the slower target's saturated throughput)")
    ap.add_argument("--database-url", default=None, help="default: embedded SQLite")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="extgate-bench-gw-") as tmp:
        data_dir = Path(tmp)
        info = setup(data_dir, a.database_url)
        env = {"EXTGATE_DATA_DIR": str(data_dir), "EXTGATE_GATEWAY_RATE_LIMIT_BURST": "1000000",
               "EXTGATE_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000", "EXTGATE_RUNNER_THREADS": "2"}
        if a.database_url:
            env["EXTGATE_DATABASE_URL"] = a.database_url
            env["EXTGATE_ALLOW_DEV_KEYS"] = "1"  # a benchmark, not a deployment
            env["EXTGATE_AUDIT_ALLOW_DEV_KEY"] = "1"
        ports = {name: free_port() for name in ("runner", "gateway", "hello")}
        hello_file = data_dir / "hello_app.py"
        hello_file.write_text(HELLO_APP)
        uv = [PY, "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
        procs = [
            serve([str(ROOT / ".venv" / "bin" / "extgate"), "runner", "serve", "--port", str(ports["runner"])],
                  env, ports["runner"]),
            serve([*uv, "--port", str(ports["gateway"]), "service.asgi:app"], env, ports["gateway"]),
            serve([*uv, "--app-dir", str(data_dir), "--port", str(ports["hello"]), "hello_app:app"], env,
                  ports["hello"]),
        ]
        try:
            gw_url = f"http://127.0.0.1:{ports['gateway']}/api/ext/{info['slug']}/hello"
            runner_url = f"http://127.0.0.1:{ports['runner']}/v1/execute"
            hello_url = f"http://127.0.0.1:{ports['hello']}/hello"
            gw_headers = {"authorization": f"Bearer {info['token']}"}
            results: dict[str, tuple[list[float], float]] = {}
            pids = {"runner": procs[0].pid, "gateway": procs[1].pid, "hello": procs[2].pid}
            cpu_ms: dict[str, float] = {}
            # Interleave rounds so machine noise hits every target alike.
            for _ in range(2):
                for name, args in (
                    ("runner", ("POST", runner_url, info["execute_headers"], info["execute"].encode())),
                    ("gateway", ("GET", gw_url, gw_headers, None)),
                    ("hello", ("GET", hello_url, {}, None)),
                ):
                    before = cpu_seconds(pids[name])
                    lat, rps = asyncio.run(load(*args, n=a.n // 2, concurrency=a.concurrency))  # type: ignore[arg-type]
                    cpu_ms[name] = cpu_ms.get(name, 0.0) + (cpu_seconds(pids[name]) - before) * 1000 / a.n
                    prev = results.get(name, ([], 0.0))
                    results[name] = (prev[0] + lat, prev[1] + rps / 2)
            # Both targets must sustain the offered load comfortably: 30% of the slower one.
            rate = a.rate or round(0.3 * min(results["runner"][1], results["gateway"][1]))
            paced: dict[str, list[float]] = {"runner": [], "gateway": []}
            round_added: list[float] = []
            for _ in range(a.paced_rounds):
                this_round: dict[str, list[float]] = {}
                for name, args in (
                    ("runner", ("POST", runner_url, info["execute_headers"], info["execute"].encode())),
                    ("gateway", ("GET", gw_url, gw_headers, None)),
                ):
                    this_round[name] = asyncio.run(paced_load(
                        *args, n=a.paced_n // a.paced_rounds, concurrency=a.concurrency, rate=rate))  # type: ignore[arg-type]
                    paced[name] += this_round[name]
                round_added.append(pct(this_round["gateway"], 50) - pct(this_round["runner"], 50))
        finally:
            for p in procs:
                os.killpg(p.pid, signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)

    print(f"gateway benchmark: n={a.n} per target, {a.concurrency} concurrent clients, "
          f"db={'postgresql' if a.database_url else 'sqlite'}, cpus={os.cpu_count()}")
    print(f"saturated (closed loop): {'target':10} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for name, (lat, rps) in results.items():
        print(f"{'':25}{name:10} {pct(lat, 50):8.2f} {pct(lat, 99):8.2f} {rps:8.0f}")
    g, r, h = results["gateway"], results["runner"], results["hello"]
    print(f"throughput gateway / bare hello: {g[1] / h[1]:.2f}x (goal >= 0.5); gateway / runner direct: "
          f"{g[1] / r[1]:.2f}x")
    print("server CPU per request (all threads, saturated phase): "
          + ", ".join(f"{name} {ms:.2f} ms" for name, ms in cpu_ms.items()))
    print(f"saturated added latency (gateway - runner direct, queueing): p50 {pct(g[0], 50) - pct(r[0], 50):.2f} ms, "
          f"p99 {pct(g[0], 99) - pct(r[0], 99):.2f} ms")
    print(f"paced at {rate:.0f} req/s:{'':10} {'target':10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, lat in paced.items():
        print(f"{'':25}{name:10} {pct(lat, 50):8.2f} {pct(lat, 99):8.2f}")
    pg, pr = paced["gateway"], paced["runner"]
    print(f"added latency (gateway - runner direct), paced: p50 {pct(pg, 50) - pct(pr, 50):.2f} ms (goal <= 1), "
          f"p99 {pct(pg, 99) - pct(pr, 99):.2f} ms (goal <= 5)")
    print("added p50 per paced round (noise): " + " ".join(f"{x:.2f}" for x in round_added) + " ms")


if __name__ == "__main__":
    main()
