"""Body benchmark through the gateway on the JavaScript example extension (issue 18).

Publishes `examples/js-notes` (a ~12 MB componentize-js guest, built and cached by
`make -C examples js-notes`), installs it, and starts the gateway (`service.asgi:app`,
embedded runner, full pipeline) twice on the same data: once calling the bulk export
(`handler-b64`, the default) and once with `EXTGATE_RUNNER_BULK_BODIES=false` (the plain
`handler`: the baseline, measured in the same run). Each phase is a closed loop with one
client, so latencies are service times, not queueing. `POST /echo` takes JSON and answers
`{"received": <the same JSON>}`, so a body of N bytes goes in and ~N comes out.

Targets: bulk 64 KiB echo p50 <= 1.5x the bulk `/hello` p50, 1 MiB echo <= 10x.

    .venv/bin/python bench/bench_bodies.py [--n 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import loadgen  # noqa: E402
from bench_gateway import PY, free_port, pct, serve  # noqa: E402

KIB, MIB = 1 << 10, 1 << 20


def build_js_notes() -> Path:
    out = subprocess.run(["make", "-s", "-C", str(ROOT / "examples"), "js-notes"], check=True,  # noqa: S607
                         capture_output=True, text=True, timeout=900)
    return Path(out.stdout.strip().splitlines()[-1])


def setup(data_dir: Path) -> dict[str, Any]:
    """Publish + install js-notes for tenant `bench`; compile its artifact (with the transform)."""
    from audit.config import AuditSettings
    from runner.compiler import bulk_summary, compile_component
    from service.auth.tokens import mint_dev_token
    from service.container import build_container
    from service.registry import install_config, installs, publishing
    from service.registry.bundles import load_bundle_path
    from service.settings import Settings

    settings = Settings(data_dir=data_dir, allow_dev_keys=True)
    c = build_container(settings, auto_migrate=True, validate_component=None,
                        audit_settings=AuditSettings(allow_dev_key=True, checkpoint_interval_seconds=3600))
    bundle_dir = data_dir / "bundle"
    (bundle_dir / "dist").mkdir(parents=True)
    shutil.copyfile(build_js_notes(), bundle_dir / "dist" / "main.wasm")
    shutil.copyfile(ROOT / "examples" / "js-notes" / "manifest.json", bundle_dir / "manifest.json")
    bundle = load_bundle_path(bundle_dir)
    published = publishing.publish_bundle(c.db, c.bundle_store, bundle, signature=None,
                                          signature_policy=c.signature_policy, validate_component=None)
    report = compile_component(bundle.component, data_dir / "compiled", content_hash=published.content_hash)
    with c.db.session() as session:
        install_id = installs.create_install(session, "bench", published.slug, version=None,
                                             granted_capabilities=["cap:secrets.get", "cap:storage.kv"]).id
    install_config.set_config(c.db, "bench", install_id, {"greeting": "hi"})
    token = mint_dev_token(settings, tenant="bench", subject="bench-user", roles=["editor"])
    c.close()
    return {"slug": published.slug, "token": token, "artifact": bulk_summary(report)}


def echo_body(size: int) -> bytes:
    """A JSON document of `size` bytes (non-ASCII included, as real payloads have)."""
    head = json.dumps({"s": ""}).encode()
    unit = "abcdefghijklmnopqrstuvwxyz0123456789é"  # 38 bytes in UTF-8
    text = (unit * (size // 38 + 1)).encode()[: max(0, size - len(head))].decode("utf-8", errors="ignore")
    doc = json.dumps({"s": text}, ensure_ascii=False).encode()
    return doc + b" " * (size - len(doc))


async def measure(method: str, url: str, headers: dict[str, str], body: bytes | None, n: int) -> list[float]:
    target = loadgen.Target.build(method, url, headers, body)
    conn = await loadgen.Connection.open(target)
    try:  # a benchmark of error answers would be meaningless: check one answer first
        status, answer = await conn.send(target)
    finally:
        await conn.close()
    if status != 200 or (body is not None and json.loads(answer) != {"received": json.loads(body)}):
        raise RuntimeError(f"{method} {url}: {status} {answer[:200]!r}")
    latencies, _ = await loadgen.closed_loop(target, n, 1)
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="requests per case per round (1 MiB: n/10)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating plain/bulk server rounds")
    a = ap.parse_args()
    cases = [("/hello", "GET", None, a.n), ("/echo 1 B", "POST", echo_body(12), a.n),
             ("/echo 64 KiB", "POST", echo_body(64 * KIB), a.n), ("/echo 1 MiB", "POST", echo_body(MIB),
                                                                   max(10, a.n // 10))]
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="extgate-bench-bodies-") as tmp:
        data_dir = Path(tmp)
        info = setup(data_dir)
        base_env = {"EXTGATE_DATA_DIR": str(data_dir), "EXTGATE_GATEWAY_RATE_LIMIT_BURST": "1000000",
                    "EXTGATE_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000", "EXTGATE_RUNNER_THREADS": "2"}
        headers = {"authorization": f"Bearer {info['token']}", "content-type": "application/json"}
        for _ in range(a.rounds):
            for mode in ("plain", "bulk"):
                env = {**base_env, "EXTGATE_RUNNER_BULK_BODIES": "true" if mode == "bulk" else "false"}
                port = free_port()
                proc = serve([PY, "-m", "uvicorn", "--log-level", "warning", "--no-access-log", "--port", str(port),
                              "service.asgi:app"], env, port)
                try:
                    base = f"http://127.0.0.1:{port}/api/ext/{info['slug']}"
                    for label, method, body, n in cases:
                        path = label.split()[0]
                        asyncio.run(measure(method, base + path, headers, body, 3))  # warm (load, JIT, caches)
                        results.setdefault((mode, label), []).extend(
                            asyncio.run(measure(method, base + path, headers, body, n)))
                finally:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(10)

    print(f"bodies through the gateway, js-notes ({info['artifact']}), 1 client, {a.rounds} rounds, "
          f"cpus={os.cpu_count()}")
    print(f"{'case':14} {'plain p50':>10} {'bulk p50':>10} {'plain/bulk':>11} {'bulk/hello':>11}")
    hello = pct(results[("bulk", "/hello")], 50)
    for label, *_ in cases:
        plain, bulk = pct(results[("plain", label)], 50), pct(results[("bulk", label)], 50)
        print(f"{label:14} {plain:8.2f} ms {bulk:8.2f} ms {plain / bulk:10.2f}x {bulk / hello:10.2f}x")
    print("goals: 64 KiB echo bulk/hello <= 1.5x, 1 MiB echo bulk/hello <= 10x, 1 B echo no slower than plain")


if __name__ == "__main__":
    main()
