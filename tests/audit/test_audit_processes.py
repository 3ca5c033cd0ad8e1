"""Several writer processes share one contiguous, verifiable log; a crash loses nothing committed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from audit.anchors import load_checkpoints
from audit.log import RecordFilter
from audit.note import NoteSigner
from audit.sql import SqlAuditLog
from audit.verify import Status, verify_log
from tests.audit.conftest import ORIGIN

WRITER = Path(__file__).with_name("audit_writer_proc.py")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def spawn(url: str, writer: str, count: int, threads: int, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, str(WRITER), url, writer, str(count), str(threads), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_concurrent_processes_one_contiguous_log(
    database_url: str, engine: Engine, signer: NoteSigner, checkpoint_dir: Path
) -> None:
    procs = [spawn(database_url, str(w), 150, 8) for w in range(4)]
    results: list[int] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results += json.loads(out)
    assert sorted(results) == list(range(600))  # every caller got a distinct seq, no gaps
    log = SqlAuditLog(engine, origin=ORIGIN, signer=signer, checkpoint_dir=checkpoint_dir)
    assert log.size() == 600
    log.checkpoint()
    res = verify_log(engine, verifiers=log.verifiers, origin=ORIGIN, external=load_checkpoints(checkpoint_dir))
    assert res.status == Status.OK, res.to_json()
    assert res.records == 600 and res.anchored_size == 600
    # Each writer's records are all there, exactly once.
    for w in range(4):
        recs = log.query(RecordFilter(tenant_id=f"tenant-{w}"), limit=1000)
        assert sorted(r.parsed()["details"]["i"] for r in recs) == list(range(150))
    log.close(final_checkpoint=False)


def test_crash_between_append_and_checkpoint_loses_nothing(
    database_url: str, engine: Engine, signer: NoteSigner, checkpoint_dir: Path
) -> None:
    log = SqlAuditLog(engine, origin=ORIGIN, signer=signer, checkpoint_dir=checkpoint_dir)
    first = spawn(database_url, "a", 40, 4)
    first.communicate(timeout=60)
    log.checkpoint()  # anchored through 40
    crashed = spawn(database_url, "b", 60, 4, "--crash")
    out, _ = crashed.communicate(timeout=60)
    assert crashed.returncode == -signal.SIGKILL
    acked = json.loads(out)  # seqs the dead process was told were durable
    assert len(acked) == 60
    stored = {r.seq: r for r in log.query(RecordFilter(tenant_id="tenant-b"), limit=1000)}
    assert set(acked) <= set(stored)
    # The log is intact; the records after the last checkpoint are the unanchored tail.
    res = verify_log(
        engine, verifiers=log.verifiers, origin=ORIGIN, external=load_checkpoints(checkpoint_dir), max_tail_age=3600
    )
    assert res.status == Status.OK and res.unanchored == 60, res.to_json()
    # The next checkpoint (e.g. by a surviving replica) covers them.
    log.checkpoint()
    res = verify_log(
        engine, verifiers=log.verifiers, origin=ORIGIN, external=load_checkpoints(checkpoint_dir), strict=True
    )
    assert res.status == Status.OK and res.anchored_size == 100
    log.close(final_checkpoint=False)
