"""Audit log benchmark: append throughput with concurrent writer processes, and verify rate.

    .venv/bin/python bench/bench_audit.py                     # PostgreSQL (127.0.0.1, fresh database)
    .venv/bin/python bench/bench_audit.py --sqlite            # SQLite file instead
    .venv/bin/python bench/bench_audit.py --writers 4 --callers 64 --seconds 10

Each writer process is one gateway replica: one `SqlAuditLog` (group commit, one writer
thread) fed by `--callers` concurrent requests that each append and wait for durability in a
loop: asyncio tasks awaiting `append_async` (default, like an ASGI worker) or threads calling
`append` (`--mode threads`). Reports aggregate appends/s, per-append latency percentiles, average
records per transaction, then runs `verify_log` over everything and reports records/s.
Targets (issue 6): >= 10,000 appends/s on PostgreSQL with 4 writers; verify >= 100,000 records/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from audit.note import NoteSigner  # noqa: E402
from audit.records import Actor, AuditEvent  # noqa: E402
from audit.schema import create_schema  # noqa: E402
from audit.sql import SqlAuditLog  # noqa: E402
from audit.verify import verify_log  # noqa: E402
from service.db.backends import engine_for_url  # noqa: E402

PG_ADMIN = os.environ.get("EXTGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def make_event(wid: int, cid: int, i: int) -> AuditEvent:
    return AuditEvent(
        action="gateway.decision",
        outcome="allow" if i % 4 else "deny",
        tenant_id=f"tenant-{cid % 16}",
        actor=Actor(f"user-{i % 100}", tenant=f"tenant-{cid % 16}", roles=("viewer",)),
        resource=f"install:inst-{cid}/endpoint:GET /items/{{id}}",
        policy_ids=("tenant-default-permit",),
        policy_revision="sha256:4f2a",
        request_id=f"{wid}-{cid}-{i}",
        details={"reasons": ["permit"], "latency_us": 180, "method": "GET"},
    )


def writer(url: str, wid: int, callers: int, seconds: float, start_at: float, mode: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    engine = engine_for_url(url)
    log = SqlAuditLog(engine, max_batch=1000)
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = start_at + seconds

    def caller(cid: int) -> None:
        mine: list[float] = []
        i = 0
        while time.time() < start_at:
            time.sleep(0.001)
        while time.time() < stop_at:
            ev = make_event(wid, cid, i)
            t0 = time.perf_counter()
            log.append(ev)
            mine.append(time.perf_counter() - t0)
            i += 1
        with lock:
            latencies.extend(mine)

    async def async_caller(cid: int) -> None:
        i = 0
        while time.time() < stop_at:
            ev = make_event(wid, cid, i)
            t0 = time.perf_counter()
            await log.append_async(ev)
            latencies.append(time.perf_counter() - t0)
            i += 1

    async def run_async() -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(async_caller(c) for c in range(callers)))

    if mode == "async":  # one event loop with `callers` concurrent requests, like an ASGI worker
        asyncio.run(run_async())
    else:
        threads = [threading.Thread(target=caller, args=(c,)) for c in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    stats = log.stats
    log.close(final_checkpoint=False)
    engine.dispose()
    out.put({"n": len(latencies), "lat": latencies, "batches": stats.batches})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sqlite", action="store_true")
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--callers", type=int, default=64, help="concurrent appending threads per writer process")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--mode", choices=["async", "threads"], default="async", help="how callers run in a writer")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    admin = None
    if args.sqlite:
        url = f"sqlite:///{tmp / 'audit.db'}"
    else:
        name = "bench_audit_" + uuid.uuid4().hex[:8]
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    try:
        engine = engine_for_url(url)
        create_schema(engine)
        ctx = mp.get_context("spawn")
        out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        start_at = time.time() + 3.0
        procs = [
            ctx.Process(target=writer, args=(url, w, args.callers, args.seconds, start_at, args.mode, out))
            for w in range(args.writers)
        ]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
        total = sum(r["n"] for r in results)
        batches = sum(r["batches"] for r in results)
        lat = sorted(x for r in results for x in r["lat"])

        def pct(q: float) -> float:
            return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

        backend = "SQLite" if args.sqlite else "PostgreSQL"
        summary = {
            "backend": backend,
            "writers": args.writers,
            "callers_per_writer": args.callers,
            "caller_mode": args.mode,
            "appends": total,
            "appends_per_s": round(total / args.seconds),
            "records_per_txn": round(total / max(1, batches), 1),
            "latency_ms": {
                "p50": round(pct(0.5), 2),
                "p99": round(pct(0.99), 2),
                "mean": round(statistics.mean(lat) * 1000, 2),
            },
        }
        signer = NoteSigner("bench/audit", Ed25519PrivateKey.generate())
        log = SqlAuditLog(engine, origin="bench/audit", signer=signer, checkpoint_dir=tmp / "checkpoints")
        log.checkpoint()
        res = verify_log(engine, verifiers=log.verifiers, origin="bench/audit")
        summary["verify"] = {
            "status": str(res.status),
            "records": res.records,
            "seconds": round(res.elapsed, 2),
            "records_per_s": round(res.records / res.elapsed),
        }
        print(json.dumps(summary, indent=2))
        log.close(final_checkpoint=False)
        engine.dispose()
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
