"""The tamper matrix: each case detected by verify against exported checkpoints (SQLite and PostgreSQL).

The log has 250 records, signed checkpoints at 100 and 200 (in the database and exported as
files), and 50 records after the last checkpoint. Tampering disables the guards first, as a
DBA or superuser would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from audit.anchors import load_checkpoints
from audit.canonical import canonical_json
from audit.merkle import CompactRange, leaf_hash
from audit.note import Checkpoint, NoteSigner
from audit.sql import SqlAuditLog
from audit.verify import Kind, Status, VerifyResult, verify_log
from tests.audit.conftest import ORIGIN, event, tamper

LogFactory = Callable[..., SqlAuditLog]


@pytest.fixture
def log(make_log: LogFactory) -> SqlAuditLog:
    log = make_log()
    log.append_many([event(i) for i in range(100)])
    log.checkpoint()
    log.append_many([event(i) for i in range(100, 200)])
    log.checkpoint()
    log.append_many([event(i) for i in range(200, 250)])
    return log


def run_verify(log: SqlAuditLog, *, external: bool = True, **kw: object) -> VerifyResult:
    anchors = load_checkpoints(log.checkpoint_dir) if external and log.checkpoint_dir else []
    return verify_log(log.engine, verifiers=log.verifiers, origin=ORIGIN, external=anchors, **kw)  # type: ignore[arg-type]


def edited_body(engine: Engine, seq: int) -> tuple[bytes, dict[str, object]]:
    with engine.connect() as conn:
        body = bytes(conn.execute(sa.text("SELECT body FROM audit_record WHERE seq = :s"), {"s": seq}).scalar_one())
    doc = json.loads(body)
    doc["outcome"] = "allow" if doc["outcome"] == "deny" else "deny"
    return canonical_json(doc), doc


def sql_update(engine: Engine, stmt: str, **params: object) -> None:
    """A parametrized UPDATE/DELETE with the guards disabled."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_record DISABLE TRIGGER USER")
            conn.exec_driver_sql("ALTER TABLE audit_checkpoint DISABLE TRIGGER USER")
            conn.exec_driver_sql("ALTER TABLE audit_head DISABLE TRIGGER USER")
        else:
            for name in [r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='trigger'")]:
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
        conn.execute(sa.text(stmt), params)
    tamper(engine)  # re-enable / recreate the guards


def test_baseline_ok(log: SqlAuditLog) -> None:
    res = run_verify(log, max_tail_age=3600)
    assert res.status == Status.OK, res.to_json()
    assert res.records == 250 and res.signed_size == 200 and res.anchored_size == 200 and res.unanchored == 50
    assert res.external_valid == 2 and res.checkpoints_valid == 2
    # The 50 records after the last checkpoint are protected only by the database.
    assert run_verify(log, strict=True).status == Status.UNVERIFIABLE
    assert run_verify(log, max_tail_age=0, now_us=2**62).status == Status.UNVERIFIABLE
    log.checkpoint()
    assert run_verify(log, strict=True).status == Status.OK


def test_row_edited(log: SqlAuditLog) -> None:
    new_body, doc = edited_body(log.engine, 123)
    sql_update(
        log.engine, "UPDATE audit_record SET body = :b, outcome = :o WHERE seq = 123", b=new_body, o=doc["outcome"]
    )
    res = run_verify(log)
    assert res.status == Status.TAMPERED and res.exit_code == 1
    assert res.first is not None and (res.first.kind, res.first.seq) == (Kind.EDITED, 123)


def test_row_edited_with_recomputed_hash(log: SqlAuditLog) -> None:
    new_body, doc = edited_body(log.engine, 123)
    sql_update(
        log.engine,
        "UPDATE audit_record SET body = :b, outcome = :o, leaf_hash = :h WHERE seq = 123",
        b=new_body,
        o=doc["outcome"],
        h=leaf_hash(new_body),
    )
    res = run_verify(log)
    assert res.status == Status.TAMPERED
    first = res.first
    assert first is not None and first.kind == Kind.EDITED
    assert first.seq <= 123 <= (first.seq_end or 0)
    assert (first.seq, first.seq_end) == (100, 199)  # between the last matching and the failing checkpoint


def test_unanchored_row_edited_with_recomputed_hash_caught_by_head(log: SqlAuditLog) -> None:
    new_body, doc = edited_body(log.engine, 230)
    sql_update(
        log.engine,
        "UPDATE audit_record SET body = :b, outcome = :o, leaf_hash = :h WHERE seq = 230",
        b=new_body,
        o=doc["outcome"],
        h=leaf_hash(new_body),
    )
    res = run_verify(log)
    assert res.status == Status.TAMPERED
    assert res.first is not None and res.first.kind == Kind.EDITED and res.first.seq == 200


def test_row_deleted(log: SqlAuditLog) -> None:
    sql_update(log.engine, "DELETE FROM audit_record WHERE seq = 150")
    res = run_verify(log)
    assert res.status == Status.TAMPERED
    assert res.first is not None and (res.first.kind, res.first.seq) == (Kind.DELETED, 150)


def test_two_rows_swapped(log: SqlAuditLog) -> None:
    cols = ["ts", "tenant_id", "action", "outcome", "actor_id", "resource", "request_id", "body", "leaf_hash"]
    with log.engine.connect() as conn:
        rows = {
            r["seq"]: dict(r)
            for r in conn.execute(sa.text("SELECT * FROM audit_record WHERE seq IN (60, 61)")).mappings()
        }
    tamper(log.engine, "DELETE FROM audit_record WHERE seq IN (60, 61)")
    insert = sa.text(
        f"INSERT INTO audit_record (seq, {', '.join(cols)}) VALUES (:seq, {', '.join(':' + c for c in cols)})"
    )
    with log.engine.begin() as conn:
        for seq, other in ((60, 61), (61, 60)):
            conn.execute(insert, {"seq": seq, **{c: rows[other][c] for c in cols}})
    res = run_verify(log)
    assert res.status == Status.TAMPERED
    assert res.first is not None and (res.first.kind, res.first.seq) == (Kind.REORDERED, 60)


def test_tail_truncated(log: SqlAuditLog) -> None:
    # A thorough DBA: cut the log at 180, drop the checkpoints above it, rewind the head.
    leaves = log.leaf_hashes(180)
    cr = CompactRange()
    cr.extend(leaves)
    sql_update(log.engine, "DELETE FROM audit_record WHERE seq >= 180")
    sql_update(log.engine, "DELETE FROM audit_checkpoint WHERE size > 180")
    sql_update(log.engine, "UPDATE audit_head SET size = :s, frontier = :f", s=180, f=cr.to_bytes())
    res = run_verify(log)
    assert res.status == Status.TAMPERED
    assert res.first is not None and (res.first.kind, res.first.seq) == (Kind.TRUNCATED, 180)
    # Without the exported checkpoints this is indistinguishable from an unanchored tail.
    assert run_verify(log, external=False, max_tail_age=3600).status == Status.OK


def test_tail_truncated_simple(log: SqlAuditLog) -> None:
    sql_update(log.engine, "DELETE FROM audit_record WHERE seq >= 240")
    res = run_verify(log, external=False)
    assert res.first is not None and (res.first.kind, res.first.seq) == (Kind.TRUNCATED, 240)


def test_forged_checkpoint(log: SqlAuditLog, tmp_path: Path) -> None:
    attacker = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    size, root = log.root()
    note = Checkpoint(ORIGIN, size, root).sign([attacker])
    with log.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO audit_checkpoint (size, root, note, key_id, created_at) VALUES (:s, :r, :n, 'x', 0)"),
            {"s": size, "r": root, "n": note},
        )
    res = run_verify(log)
    # Signed by a key we do not trust: no anchor, and no evidence of tampering either (the
    # records still match every trusted checkpoint). Unverifiable, naming the key.
    assert res.status == Status.UNVERIFIABLE and res.exit_code == 2 and res.findings == []
    assert any(attacker.verifier.key_id.hex() in w and "EXTGATE_AUDIT_TRUSTED_KEYS" in w for w in res.warnings)
    assert res.signed_size == 200


def test_forged_checkpoint_over_edited_records_is_still_tampering(log: SqlAuditLog) -> None:
    new_body, doc = edited_body(log.engine, 220)
    sql_update(log.engine, "UPDATE audit_record SET body = :b, outcome = :o, leaf_hash = :h WHERE seq = 220",
               b=new_body, o=doc["outcome"], h=leaf_hash(new_body))
    res = run_verify(log)
    assert res.status == Status.TAMPERED


def test_rotated_signing_key_not_trusted_is_a_configuration_error(
    make_log: LogFactory, signer: NoteSigner
) -> None:
    """Rotating the signing key without trusting the old one is reported as what it is."""
    old = make_log()
    old.append_many([event(i) for i in range(10)])
    old.checkpoint()
    old.close(final_checkpoint=False)
    rotated = make_log(signer=NoteSigner(ORIGIN, Ed25519PrivateKey.generate()))
    rotated.append_many([event(i) for i in range(10, 20)])
    rotated.checkpoint()
    anchors = load_checkpoints(rotated.checkpoint_dir) if rotated.checkpoint_dir else []
    res = verify_log(rotated.engine, verifiers=rotated.verifiers, origin=ORIGIN, external=anchors)
    assert res.status == Status.UNVERIFIABLE and res.findings == []
    assert any(signer.verifier.key_id.hex() in w and "not trusted" in w for w in res.warnings), res.warnings
    trusted = verify_log(rotated.engine, verifiers=[*rotated.verifiers, signer.verifier], origin=ORIGIN,
                         external=anchors)
    assert trusted.status == Status.OK, trusted.to_json()


def test_checkpoint_row_altered(log: SqlAuditLog) -> None:
    sql_update(log.engine, "UPDATE audit_checkpoint SET root = :r WHERE size = 100", r=b"\x00" * 32)
    res = run_verify(log)
    assert res.first is not None and res.first.kind == Kind.BAD_SIGNATURE and res.first.seq == 100


def test_resigned_history_with_stolen_key_caught_by_pinned_checkpoint(log: SqlAuditLog) -> None:
    # The attacker has the signing key: rewrites record 50, re-signs every checkpoint.
    new_body, doc = edited_body(log.engine, 50)
    sql_update(
        log.engine,
        "UPDATE audit_record SET body = :b, outcome = :o, leaf_hash = :h WHERE seq = 50",
        b=new_body,
        o=doc["outcome"],
        h=leaf_hash(new_body),
    )
    leaves = log.leaf_hashes(250)
    assert log.signer is not None
    for size in (100, 200):
        cr = CompactRange()
        cr.extend(leaves[:size])
        note = Checkpoint(ORIGIN, size, cr.root()).sign([log.signer])
        sql_update(
            log.engine, "UPDATE audit_checkpoint SET root = :r, note = :n WHERE size = :s", r=cr.root(), n=note, s=size
        )
    cr = CompactRange()
    cr.extend(leaves)
    sql_update(log.engine, "UPDATE audit_head SET frontier = :f", f=cr.to_bytes())
    assert run_verify(log, external=False, max_tail_age=3600).status == Status.OK  # undetectable from inside
    res = run_verify(log)  # the exported files still hold the honest roots
    assert res.status == Status.TAMPERED
    kinds = {f.kind for f in res.findings}
    assert Kind.FORKED in kinds and Kind.EDITED in kinds


@pytest.mark.slow
def test_parallel_ranges_agree_with_single_scan(log: SqlAuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large logs are verified in aligned ranges by worker processes; the merge must match."""
    import audit.verify as verify_mod

    monkeypatch.setattr(verify_mod, "_RANGE", 64)  # 250 records -> ranges of 64 (perfect subtrees)

    def both() -> tuple[VerifyResult, VerifyResult]:
        return run_verify(log, workers=1), run_verify(log, workers=2)

    single, parallel = both()
    assert single.status == parallel.status == Status.OK
    assert parallel.records == 250 and parallel.signed_size == 200
    new_body, doc = edited_body(log.engine, 130)
    sql_update(
        log.engine,
        "UPDATE audit_record SET body = :b, outcome = :o, leaf_hash = :h WHERE seq = 130",
        b=new_body,
        o=doc["outcome"],
        h=leaf_hash(new_body),
    )
    single, parallel = both()
    assert [f.to_json() for f in single.findings] == [f.to_json() for f in parallel.findings]
    assert parallel.first is not None and (parallel.first.kind, parallel.first.seq) == (Kind.EDITED, 100)
    sql_update(log.engine, "DELETE FROM audit_record WHERE seq = 70")
    single, parallel = both()
    assert single.status == parallel.status == Status.TAMPERED
    assert [f.to_json() for f in single.findings] == [f.to_json() for f in parallel.findings]
    assert parallel.first is not None and (parallel.first.kind, parallel.first.seq) == (Kind.DELETED, 70)


def test_filter_column_changed(log: SqlAuditLog) -> None:
    # Hiding a record from a tenant's view by editing the (unhashed) tenant column.
    sql_update(log.engine, "UPDATE audit_record SET tenant_id = 'other' WHERE seq = 42")
    res = run_verify(log)
    assert res.status == Status.TAMPERED
    assert res.first is not None and (res.first.kind, res.first.seq) == (Kind.EDITED, 42)
    assert "columns" in res.first.detail
