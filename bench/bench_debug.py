"""Debug-stream benchmark (needs Redis; EXTGATE_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0).

1. publish: lines/s one runner process gets into Redis (publisher queue → pipelined XADD),
   rate limit lifted, 10 installs.
2. latency: runner write → SSE viewer, 50 viewers on one stream of a real server
   (uvicorn in this process, viewers on threads), 100 lines/s for 5 s; p50/p95/p99.

    .venv/bin/python bench/bench_debug.py [--lines 100000] [--viewers 50] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REDIS_URL = os.environ.get("EXTGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def bench_publish(lines: int) -> dict[str, float]:
    import redis

    from runner.debug import DebugEvent
    from runner.debug.config import DebugPublisherSettings
    from runner.debug.publisher import DebugPublisher
    from runner.debug.streams import RedisStreamWriter

    prefix = "dbgbench" + uuid.uuid4().hex[:6]
    s = DebugPublisherSettings(redis_url=REDIS_URL, key_prefix=prefix, rate_per_s=1e9, rate_burst=10**9,
                               queue_size=lines)
    pub = DebugPublisher(RedisStreamWriter(REDIS_URL, maxlen=s.stream_maxlen, ttl_s=60, connect_timeout_s=0.5,
                                           socket_timeout_s=2.0), s)
    events = [DebugEvent("bench", "ext", f"i{i % 10}", "v1", f"r{i}", "stdout", "info",
                         f"request handled in {i % 97} ms status=200 path=/api/items/{i}") for i in range(lines)]
    start = time.perf_counter()
    for e in events:
        pub.publish(e)
    enqueued = time.perf_counter() - start
    deadline = time.monotonic() + 120
    while pub.stats.written < lines and time.monotonic() < deadline:
        time.sleep(0.002)
    total = time.perf_counter() - start
    pub.close()
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=prefix + ":*", count=1000))
    if keys:
        r.delete(*keys)
    return {"lines": lines, "written": pub.stats.written, "publish_calls_per_s": round(lines / enqueued),
            "written_per_s": round(pub.stats.written / total), "seconds": round(total, 2)}


def bench_latency(viewers: int, seconds: float, rate: int) -> dict[str, float]:
    os.environ.update({
        "EXTGATE_DEBUG_REDIS_URL": REDIS_URL, "EXTGATE_DEBUG_KEY_PREFIX": "dbgbench" + uuid.uuid4().hex[:6],
        "EXTGATE_DEBUG_MAX_VIEWERS_PER_STREAM": str(viewers + 5), "EXTGATE_DEBUG_MAX_SESSIONS_PER_TENANT": "1000",
        "EXTGATE_DEBUG_BACKLOG_LINES": "0",
    })
    import httpx

    from runner.debug import DebugEvent
    from runner.debug.config import DebugPublisherSettings
    from runner.debug.factory import create_debug_sink
    from service.app import create_app
    from tests.debug.conftest import ServerThread
    from tests.gateway.conftest import TENANT, guest_manifest, install_for, publish_guest
    from tests.support import make_container, token

    tmp = Path(tempfile.mkdtemp(prefix="bench-debug-"))
    container = make_container(tmp, f"sqlite:///{tmp / 'db.sqlite'}")
    slug, ext_id, _ = publish_guest(container, tmp, "demo", tmp / "compiled-cache")
    install_id = install_for(container, TENANT, slug, guest_manifest("demo")["capabilities"])
    server = ServerThread(create_app(container=container))
    server.start()
    auth = {"authorization": f"Bearer {token(container, TENANT, 'operator', sub='bench')}"}
    urls = []
    for _ in range(viewers):
        resp = httpx.post(f"{server.url}/api/ext-debug/sessions", json={"extension": slug}, headers=auth, timeout=30)
        resp.raise_for_status()
        urls.append(server.url + resp.json()["stream_url"])
    total = int(seconds * rate)
    # Viewers run in their own process (one asyncio loop), like real clients would.
    import subprocess

    proc = subprocess.Popen([sys.executable, __file__, "--viewer-process", str(total)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(urls) + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "ready"
    pub = create_debug_sink(DebugPublisherSettings(rate_per_s=1e9, rate_burst=10**9))
    start = time.monotonic()
    for i in range(total):
        pub.publish(DebugEvent(TENANT, ext_id, install_id, "v1", f"r{i}", "stdout", "info", f"t {time.time():.6f}"))
        time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    latencies = json.loads(proc.stdout.readline())
    proc.wait(timeout=60)
    server.stop()
    close = getattr(pub, "close", None)
    if close:
        close()
    container.close()
    lat = sorted(latencies)
    q = statistics.quantiles(lat, n=100) if len(lat) > 100 else [float("nan")] * 99
    return {"viewers": viewers, "lines": total, "received": len(lat), "expected": total * viewers,
            "p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1), "p99_ms": round(q[98], 1),
            "max_ms": round(lat[-1], 1) if lat else float("nan")}


def viewer_process(total: int) -> None:
    """Read the URLs from stdin, follow all streams, print each line's latency (ms) as JSON."""
    import asyncio

    import httpx

    from service.cli.debug import parse_sse

    urls = json.loads(sys.stdin.readline())
    out: list[float] = []

    async def follow(client: httpx.AsyncClient, url: str, opened: asyncio.Event, counter: list[int]) -> None:
        got = 0
        async with client.stream("GET", url) as resp:
            buf: list[str] = []
            async for line in resp.aiter_lines():
                if not opened.is_set() and line.startswith("event: info"):
                    counter[0] += 1
                    if counter[0] == len(urls):
                        opened.set()
                buf.append(line)
                if line == "":
                    for event, _, data in parse_sse(iter(buf)):
                        if event == "log":
                            sent = float(json.loads(data)["message"].split()[1])
                            out.append((time.time() - sent) * 1000)
                            got += 1
                    buf = []
                    if got >= total:
                        return

    async def run() -> None:
        opened = asyncio.Event()
        counter = [0]
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=60.0),
                                     limits=httpx.Limits(max_connections=len(urls) + 5)) as client:
            tasks = [asyncio.create_task(follow(client, u, opened, counter)) for u in urls]
            await asyncio.wait_for(opened.wait(), 60)
            print("ready", flush=True)
            await asyncio.wait(tasks, timeout=120)

    asyncio.run(run())
    print(json.dumps(out), flush=True)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--viewer-process":
        viewer_process(int(sys.argv[2]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--viewers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=int, default=100)
    args = ap.parse_args()
    print(json.dumps({"publish": bench_publish(args.lines)}))
    print(json.dumps({"latency": bench_latency(args.viewers, args.seconds, args.rate)}))


if __name__ == "__main__":
    main()
