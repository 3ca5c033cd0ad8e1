"""`extgate policy replay` end to end: re-deciding recorded traffic with a candidate bundle.

Seeds N decision records (default 20,000) into a temporary SQLite audit log, as the
gateway writes them: each names its request and entity snapshot (stored once per distinct
snapshot in `audit_blob`). The traffic has a realistic spread: several tenants, hundreds of
users with different roles, dozens of installs, reads and writes on varied paths, some
execution records in between, a few records from before snapshots existed.

Then it times `service.policy.recorded.replay` with a candidate bundle (the shipped policies
plus a change freeze on one tenant's installs) end to end — paging records out of SQLite,
parsing them, fetching and parsing snapshots, deciding, grouping flips — and, in the same
run, the raw engine decision rate (`PolicyEngine.decide` on prebuilt entity handles, the
per-decision floor replay cannot beat without memoising). Prints decisions/s for both and
their ratio (target: replay >= 5,000 decisions/s). No assertions: run `make bench`.
"""

from __future__ import annotations

import gc
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audit.log import RecordFilter  # noqa: E402
from audit.records import AuditEvent  # noqa: E402
from audit.schema import create_schema  # noqa: E402
from audit.sql import SqlAuditLog  # noqa: E402
from service.auth.principal import Principal  # noqa: E402
from service.db.backends import engine_for_url  # noqa: E402
from service.policy.bundle import compile_bundle  # noqa: E402
from service.policy.engine import PolicyEngine  # noqa: E402
from service.policy.model import EndpointMatch, InstallFacts  # noqa: E402
from service.policy.recorded import replay  # noqa: E402
from service.policy.source import BundleSource  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
ROUNDS = 3
TENANTS = ["acme", "globex", "initech", "umbrella"]
ROLES = [("viewer",), ("editor",), ("admin",), ("viewer", "operator"), ("editor", "operator"), ()]
TEMPLATES = [("GET", "/items/:id"), ("GET", "/items"), ("POST", "/items"), ("PUT", "/items/:id"),
             ("DELETE", "/items/:id"), ("GET", "/reports/:year"), ("PATCH", "/settings")]


def traffic(rng: random.Random) -> tuple[list[Principal], list[InstallFacts]]:
    users = [Principal(f"user-{i}", rng.choice(TENANTS), frozenset(rng.choice(ROLES))) for i in range(400)]
    installs = [InstallFacts(t, f"{t}-inst-{j}", f"ext-{j}", f"pub.ext{j}",
                             frozenset(rng.sample(["cap:debug.logs", "cap:storage.kv", "cap:secrets.get"], 2)))
                for t in TENANTS for j in range(10)]
    return users, installs


def seed(log: SqlAuditLog, engine: PolicyEngine, n: int, rng: random.Random) -> list[tuple]:
    users, installs = traffic(rng)
    by_tenant = {t: [i for i in installs if i.tenant == t] for t in TENANTS}
    requests: list[tuple] = []
    events: list[AuditEvent] = []
    for k in range(n):
        who = rng.choice(users)
        # most calls stay in the caller's tenant; a few probe another one
        inst = rng.choice(by_tenant[who.tenant] if rng.random() < 0.95 else installs)
        method, template = rng.choice(TEMPLATES)
        path = template.replace(":id", str(rng.randrange(10_000))).replace(":year", str(rng.randrange(2015, 2027)))
        d = engine.decide_invoke(who, inst, method, EndpointMatch(True, template), path=path)
        assert d.inputs is not None
        rec, att = d.inputs.record()
        requests.append((d.inputs.principal, d.inputs.action, d.inputs.resource, d.inputs.context,
                         d.inputs.entities.decode()))
        details: dict = {"method": method, "path": path, "decision": rec}
        if k % 500 == 0:  # written before decision records named their snapshot
            details.pop("decision")
            att = {}
        events.append(AuditEvent(
            action="gateway.decision", outcome="allow" if d.allowed else "deny", tenant_id=inst.tenant,
            resource=f"install:{inst.install_id}/endpoint:{method} {template}", policy_ids=d.policy_ids,
            policy_revision=d.revision, request_id=f"req-{k}", details=details, attachments=att))
        if d.allowed and k % 3 == 0:
            events.append(AuditEvent(action="execution.complete", outcome="success", tenant_id=inst.tenant,
                                     request_id=f"req-{k}", details={"status": 200, "duration_ms": 3}))
        if len(events) >= 2000:
            log.append_many(events)
            events = []
    if events:
        log.append_many(events)
    return requests


def raw_rate(candidate: PolicyEngine, requests: list[tuple]) -> float:
    handles = {text: candidate.entities(text) for *_rest, text in requests}
    work = [(p, a, r, c, handles[text]) for p, a, r, c, text in requests]
    gc.disable()
    try:
        t0 = time.perf_counter()
        for p, a, r, c, h in work:
            candidate.decide(p, a, r, c, h)
        return len(work) / (time.perf_counter() - t0)
    finally:
        gc.enable()


def main() -> None:
    rng = random.Random(7)
    tmp = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    try:
        policies = tmp / "candidate"
        shutil.copytree(ROOT / "policies", policies)
        shipped = PolicyEngine(compile_bundle(BundleSource.from_dir(policies)))
        (policies / "freeze.cedar").write_text(
            '@id("freeze.globex")\n@reason("Globex change freeze.")\n'
            'forbid (principal, action == ExtGate::Action::"write", resource is ExtGate::Install)\n'
            'when { resource.tenant == ExtGate::Tenant::"globex" };\n')
        candidate = PolicyEngine(compile_bundle(BundleSource.from_dir(policies)))
        engine = engine_for_url(f"sqlite:///{tmp / 'audit.db'}")
        create_schema(engine)
        log = SqlAuditLog(engine)
        t0 = time.perf_counter()
        requests = seed(log, shipped, N, rng)
        log.close(final_checkpoint=False)
        print(f"seeded {N} decisions ({log.size()} records, {log.blob_count()} distinct snapshots) "
              f"in {time.perf_counter() - t0:.1f} s")
        reader = SqlAuditLog(engine)  # read only: replay never appends
        for i in range(ROUNDS):
            t0 = time.perf_counter()
            report = replay(reader, candidate, RecordFilter())
            elapsed = time.perf_counter() - t0
            raw = raw_rate(candidate, requests)
            rate = report.read / elapsed
            print(f"round {i + 1}: replay {report.read} read, {report.replayed} replayed, "
                  f"{sum(report.skipped.values())} skipped, {report.flips} flips in {elapsed:.2f} s: "
                  f"{rate:8.0f} decisions/s (target >= 5000); raw engine decide {raw:8.0f} decisions/s; "
                  f"ratio replay / raw {rate / raw:5.2f}x")
        engine.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
