"""Admin change throughput: the change and its audit record in one transaction, against the
previous way (commit the change, then append the record through the group-commit writer).

Both run in the same process, on the same database, alternating in rounds (this machine is
noisy): N config writes to one install each, by T threads. Prints changes/s for each and
the ratio atomic / change-then-record (goal: >= 0.8x). PostgreSQL by default (a throwaway
database on EXTGATE_TEST_PG_URL), `--sqlite` for the embedded default. No assertions.

    .venv/bin/python bench/bench_admin.py [--n 400] [--threads 4] [--rounds 3] [--sqlite]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from audit.records import Actor, AuditEvent  # noqa: E402
from service.commands import Caller, CommandContext, install_data  # noqa: E402
from service.registry import install_config  # noqa: E402
from tests.support import make_container, write_bundle  # noqa: E402

PG_ADMIN_URL = os.environ.get("EXTGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def change_then_record(c, caller: Caller, tenant: str, install_id: str, i: int) -> None:  # type: ignore[no-untyped-def]
    """How the API did it before: commit the change, then append its record (awaited)."""
    row = install_config.set_config(c.db, tenant, install_id, {"k": str(i)})
    c.audit.append(AuditEvent(action="admin.install.config.write", outcome="success", tenant_id=tenant,
                              actor=caller.actor, resource=f"install:{install_id}",
                              details={"config_version": row.version, "keys": ["k"]}), timeout=30)


def atomic(c, caller: Caller, tenant: str, install_id: str, i: int) -> None:  # type: ignore[no-untyped-def]
    install_data.set_config(CommandContext(c), caller, tenant, install_id, {"k": str(i)})


def run(fn: Callable[..., None], c, caller: Caller, installs: list[tuple[str, str]], n: int,  # type: ignore[no-untyped-def]
        threads: int) -> float:
    per = n // threads

    def worker(k: int) -> None:
        tenant, install_id = installs[k]
        for i in range(per):
            fn(c, caller, tenant, install_id, i)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return per * threads / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sqlite", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-admin-"))
    name = "extgate_bench_" + uuid.uuid4().hex[:12]
    admin = None
    if args.sqlite:
        url = f"sqlite:///{tmp / 'extgate.db'}"
    else:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    c = make_container(tmp, url)
    try:
        from service.registry import installs as registry_installs
        from service.registry import publishing
        from service.registry.bundles import load_bundle_path

        bundle = load_bundle_path(write_bundle(tmp / "bundle"))
        publishing.publish_bundle(c.db, c.bundle_store, bundle, signature=None,
                                  signature_policy=c.signature_policy, validate_component=None)
        installs = []  # one install per thread (own tenant): no compare-and-set retries between threads
        for k in range(args.threads):
            with c.db.session() as session:
                row = registry_installs.create_install(session, f"t{k}", "acme.com.acme.tickets", version=None,
                                                       granted_capabilities=[])
                installs.append((f"t{k}", row.id))
        caller = Caller(Actor("bench", type="operator"))
        backend = "SQLite" if args.sqlite else "PostgreSQL"
        print(f"{backend}: {args.n} config writes per variant and round, {args.threads} threads")
        ratios = []
        for r in range(args.rounds):
            before = run(change_then_record, c, caller, installs, args.n, args.threads)
            now = run(atomic, c, caller, installs, args.n, args.threads)
            ratios.append(now / before)
            print(f"round {r + 1}: change-then-record {before:7.1f}/s   atomic {now:7.1f}/s   "
                  f"ratio {now / before:4.2f}x (goal >= 0.8x)")
        print(f"ratio atomic / change-then-record: {min(ratios):.2f}x - {max(ratios):.2f}x")
    finally:
        c.close()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
