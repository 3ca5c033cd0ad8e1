"""The SQL log on SQLite and PostgreSQL: group commit, checkpoints, queries, proofs, guards, migration."""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from audit.anchors import load_checkpoints
from audit.log import AuditLog, AuditUnavailableError, NotCheckpointedError, RecordFilter, create_audit_log
from audit.merkle import root_of, verify_consistency
from audit.note import parse_checkpoint
from audit.records import AuditEvent, AuditRecordError
from audit.sql import SqlAuditLog
from audit.verify import Status, verify_inclusion_bundle, verify_log
from service.db.backends import engine_for_url
from tests.audit.conftest import ORIGIN, event

LogFactory = Callable[..., SqlAuditLog]


def test_concurrent_appends_are_contiguous_and_batched(make_log: LogFactory, engine: Engine) -> None:
    log = make_log()
    with ThreadPoolExecutor(32) as pool:
        seqs = list(pool.map(lambda i: log.append(event(i)), range(600)))
    assert sorted(seqs) == list(range(600))
    assert log.size() == 600
    assert log.stats.batches < 600  # a burst shares transactions
    rows = {r.seq: r.parsed() for r in log.query(RecordFilter(), limit=1000)}
    assert all(rows[s]["seq"] == s for s in rows)
    # The caller's own record is at its seq.
    seq = log.append(event(9999, request_id="mine"))
    assert log.get(seq).parsed()["request_id"] == "mine"


def test_async_append(make_log: LogFactory) -> None:
    log = make_log()

    async def main() -> list[int]:
        return await asyncio.gather(*(log.append_async(event(i)) for i in range(50)))

    assert sorted(asyncio.run(main())) == list(range(50))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_async_append_times_out_when_the_commit_does_not_come(make_log: LogFactory, engine: Engine) -> None:
    # Holds SQLite's write lock so the writer cannot commit.
    log = make_log(append_timeout=0.3)
    assert log.append(event(0)) == 0
    blocker = engine.raw_connection()
    blocker.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
    try:
        async def waited() -> float:
            started = asyncio.get_running_loop().time()
            with pytest.raises(AuditUnavailableError, match="timed out"):
                await log.append_async(event(1))
            return asyncio.get_running_loop().time() - started

        assert 0.25 <= asyncio.run(waited()) < 5
    finally:
        blocker.driver_connection.execute("ROLLBACK")  # type: ignore[union-attr]
        blocker.close()
    # The writer was only waiting: the record still lands, after the one before it.
    assert log.append(event(2)) == 2
    assert log.get(1).parsed()["request_id"] == "req-1"


def test_a_deferred_record_shares_the_next_awaited_commit_in_order(make_log: LogFactory) -> None:
    log = make_log(defer_seconds=5.0)
    outcome = log.submit(event(0, request_id="outcome-1"), defer=True)
    time.sleep(0.05)
    assert not outcome.done()  # waiting for company, not committed alone
    batches = log.stats.batches
    assert log.append(event(1, request_id="decision-2")) == 1  # awaited: commits both
    assert outcome.result(timeout=5) == 0  # queued first, committed first
    assert log.stats.batches == batches + 1
    assert [r.parsed()["request_id"] for r in log.query(RecordFilter())] == ["outcome-1", "decision-2"]


def test_a_deferred_record_alone_commits_after_the_defer_window(make_log: LogFactory) -> None:
    log = make_log(defer_seconds=0.2)
    started = time.monotonic()
    fut = log.submit(event(0), defer=True)
    assert fut.result(timeout=10) == 0
    assert 0.15 <= time.monotonic() - started < 5
    immediate = make_log(defer_seconds=0.0)
    started = time.monotonic()
    assert immediate.submit(event(1), defer=True).result(timeout=10) == 1
    assert time.monotonic() - started < 0.15


def test_close_commits_deferred_records(make_log: LogFactory) -> None:
    log = make_log(defer_seconds=30.0)
    futures = [log.submit(event(i), defer=True) for i in range(5)]
    log.close()
    assert [f.result(timeout=1) for f in futures] == list(range(5))


def test_invalid_event_fails_alone(make_log: LogFactory) -> None:
    log = make_log()
    with pytest.raises(AuditRecordError):
        log.submit(AuditEvent(action="x", outcome="ok", details={"f": 0.5}))
    assert log.append(event(1)) == 0


def test_closed_log_refuses(make_log: LogFactory) -> None:
    log = make_log()
    log.append(event(0))
    log.close()
    with pytest.raises(AuditUnavailableError):
        log.append(event(1))


def test_database_failure_reaches_the_caller(tmp_path: Path) -> None:
    eng = engine_for_url(f"sqlite:///{tmp_path / 'no-schema.db'}")
    log = SqlAuditLog(eng)
    with pytest.raises(AuditUnavailableError):
        log.append(event(0), timeout=10)
    assert log.health()["failures"] == 1
    log.close()
    eng.dispose()


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_writer_reconnects_after_its_session_is_killed(make_log: LogFactory, engine: Engine) -> None:
    log = make_log()
    assert log.append(event(0)) == 0
    # An operator (or a failover) ends the writer's kept session between two batches.
    with engine.connect() as conn:
        killed = conn.exec_driver_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).scalar()
    assert killed and killed >= 1
    # Nothing had been written in the dead session: the batch is retried once on a fresh one.
    assert log.append(event(1)) == 1
    assert log.health()["failures"] == 0
    assert log.size() == 2


def test_a_failed_batch_writes_nothing_and_the_next_one_continues(make_log: LogFactory, engine: Engine) -> None:
    log = make_log()
    assert log.append(event(0)) == 0
    # The insert fails mid-transaction (a duplicate seq): the head row must not advance.
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO audit_record (seq, ts, tenant_id, action, outcome, actor_id, resource, "
                    "request_id, body, leaf_hash) VALUES (1, 0, 't1', 'x', 'ok', 'a', 'r', 'q', :b, :h)"),
            {"b": b"{}", "h": b"\0" * 32},
        )
    with pytest.raises(AuditUnavailableError):
        log.append(event(1), timeout=10)
    assert log.size() == 1
    assert log.health()["failures"] == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_writer_commits_with_full_sync_and_checkpoints_beside_it(
    make_log: LogFactory, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import audit.sql

    monkeypatch.setattr(audit.sql, "WAL_CHECKPOINT_BATCHES", 20)
    log = make_log()
    log.append(event(0))
    assert log._wconn is not None
    pragma = log._wconn.driver_connection.execute  # type: ignore[union-attr]
    # 2 = FULL: the WAL is fsynced at every commit, so a returned seq survives power loss.
    assert pragma("PRAGMA synchronous").fetchone()[0] == 2
    # No commit of the writer copies the WAL into the database; the audit-wal thread does.
    assert pragma("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    for i in range(1, 101):  # one batch each
        assert log.append(event(i)) == i
    deadline = time.monotonic() + 10
    while log.health()["wal_checkpoints"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.health()["wal_checkpoints"] >= 1
    assert log.size() == 101
    assert verify_log(engine, verifiers=log.verifiers).status == Status.OK


def test_checkpoint_every_n_and_export(make_log: LogFactory, checkpoint_dir: Path) -> None:
    log = make_log(checkpoint_every=50, checkpoint_interval=3600)
    log.start()
    for i in range(60):
        log.append(event(i))
    _wait_for(lambda: (cp := log.latest_checkpoint()) and cp.size >= 50)
    for i in range(60, 110):
        log.append(event(i))
    _wait_for(lambda: (cp := log.latest_checkpoint()) and cp.size >= 100)
    for i in range(110, 120):
        log.append(event(i))
    log.close()  # final checkpoint at 120
    sizes = [cp.size for cp in log.checkpoints()]
    assert sizes[-1] == 120 and len(sizes) >= 3
    files = sorted(checkpoint_dir.iterdir())
    assert [int(f.name.split("-")[1].split(".")[0]) for f in files] == sizes
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o444 for f in files)
    latest = parse_checkpoint(files[-1].read_text())
    assert latest.checkpoint.origin == ORIGIN and latest.checkpoint.size == 120
    assert latest.checkpoint.root == log.root()[1]


def test_checkpoint_interval(make_log: LogFactory) -> None:
    log = make_log(checkpoint_every=1_000_000, checkpoint_interval=0.2)
    log.start()
    log.append(event(0))
    first = _wait_for(lambda: log.latest_checkpoint())
    log.append(event(1))
    second = _wait_for(lambda: (cp := log.latest_checkpoint()) and cp.size == 2 and cp)
    assert first and second and second.created_at > first.created_at


def _wait_for(fn: Callable[[], object], timeout: float = 10.0) -> object:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_checkpoint_same_size_is_reused(make_log: LogFactory) -> None:
    log = make_log()
    log.append(event(0))
    a = log.checkpoint()
    b = log.checkpoint()
    assert a == b
    assert log.maybe_checkpoint() is None


def test_query_filters_and_pagination(make_log: LogFactory) -> None:
    log = make_log()
    for i in range(30):
        log.append(event(i, tenant="a" if i % 2 else "b", ts=1_000 + i))
    log.append(event(100, tenant=None, action="policy.reload"))
    a = log.query(RecordFilter(tenant_id="a"), limit=100)
    assert [r.seq for r in a] == list(range(1, 30, 2))
    page1 = log.query(RecordFilter(tenant_id="a"), limit=5, descending=True)
    page2 = log.query(RecordFilter(tenant_id="a"), limit=5, descending=True, before_seq=page1[-1].seq)
    assert [r.seq for r in page1 + page2] == list(range(29, 9, -2))
    assert [r.seq for r in log.query(RecordFilter(since_us=1_020, until_us=1_023))] == [20, 21, 22]
    assert [r.seq for r in log.query(RecordFilter(action="policy."))] == [30]
    assert [r.seq for r in log.query(RecordFilter(request_id="req-7"))] == [7]
    assert len(list(log.iter_records(RecordFilter(), chunk=7))) == 31


def test_inclusion_and_consistency_proofs(make_log: LogFactory) -> None:
    log = make_log()
    for i in range(13):
        log.append(event(i))
    with pytest.raises(NotCheckpointedError):
        log.inclusion_proof(3)
    cp1 = log.checkpoint()
    for i in range(13, 40):
        log.append(event(i))
    cp2 = log.checkpoint()
    for seq in (0, 5, 12):
        bundle = log.inclusion_proof(seq).to_json()
        assert bundle["tree_size"] == 40
        ok, why = verify_inclusion_bundle(bundle, log.verifiers)
        assert ok, why
    old = log.inclusion_proof(5, tree_size=13).to_json()
    assert verify_inclusion_bundle(old, log.verifiers)[0]
    bad = dict(old, record=old["record"].replace("req-5", "req-6"), leaf_hash=None)
    assert not verify_inclusion_bundle(bad, log.verifiers)[0]
    assert not verify_inclusion_bundle(dict(old, seq=6), log.verifiers)[0]
    proof = log.consistency_proof(13, 40)
    assert verify_consistency(13, 40, cp1.root, cp2.root, proof)
    assert cp2.root == root_of(log.leaf_hashes(40))


def test_backend_registry(engine: Engine, signer: object) -> None:
    log = create_audit_log("sql", engine=engine)
    assert isinstance(log, AuditLog)
    assert log.append(event(0)) == 0
    log.close()
    with pytest.raises(ValueError):
        create_audit_log("kafka")


def test_triggers_refuse_update_and_delete(make_log: LogFactory, engine: Engine) -> None:
    log = make_log()
    log.append(event(0))
    log.checkpoint()
    for stmt in (
        "UPDATE audit_record SET outcome = 'deny'",
        "DELETE FROM audit_record",
        "UPDATE audit_checkpoint SET note = 'x'",
        "DELETE FROM audit_checkpoint",
        "DELETE FROM audit_head",
        "UPDATE audit_head SET size = 0",
        "DELETE FROM audit_key",
    ):
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.exec_driver_sql(stmt)
    if engine.dialect.name == "postgresql":
        for table in ("audit_record", "audit_checkpoint", "audit_head", "audit_key"):
            with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
                conn.exec_driver_sql(f"TRUNCATE {table}")
        # Replication mode skips ordinary triggers, not ENABLE ALWAYS ones.
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            conn.exec_driver_sql("UPDATE audit_record SET outcome = 'deny'")
    assert log.size() == 1
    assert (
        verify_log(engine, verifiers=log.verifiers, external=load_checkpoints(log.checkpoint_dir)).status == Status.OK
    )


def test_postgres_app_role_insert_select_only(postgres_url: str) -> None:
    from audit.schema import POSTGRES_ROLE_SQL, create_schema

    admin = engine_for_url(postgres_url)
    create_schema(admin)
    role = "extgate_app_t"
    owner = "extgate_audit_owner"
    sql = POSTGRES_ROLE_SQL.replace("extgate_app", role)
    with admin.begin() as conn:
        for name in (role, owner, "extgate_auditor"):
            conn.exec_driver_sql(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') "
                f"THEN CREATE ROLE {name} {'LOGIN' if name == role else 'NOLOGIN'}; END IF; END $$"
            )
        for stmt in sql.split(";"):
            stmt = "\n".join(line for line in stmt.splitlines() if not line.strip().startswith("--")).strip()
            if stmt and not stmt.startswith("CREATE ROLE"):
                conn.exec_driver_sql(stmt)
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {role}")
    app_url = sa.engine.make_url(postgres_url).set(username=role).render_as_string(hide_password=False)
    app = engine_for_url(app_url)
    try:
        log = SqlAuditLog(app)
        assert log.append(event(0)) == 0
        from audit.records import blob_digest

        assert log.append(event(1, attachments={blob_digest(b"[]"): b"[]"})) == 1  # INSERT on audit_blob
        log.close(final_checkpoint=False)
        for stmt in (
            "UPDATE audit_record SET outcome = 'x'",
            "DELETE FROM audit_record",
            "TRUNCATE audit_record",
            "ALTER TABLE audit_record DISABLE TRIGGER USER",
        ):
            with pytest.raises(sa.exc.ProgrammingError), app.begin() as conn:
                conn.exec_driver_sql(stmt)
    finally:
        app.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE audit_record OWNER TO {sa.engine.make_url(postgres_url).username}")
            for table in ("audit_head", "audit_checkpoint", "audit_key", "audit_blob"):
                conn.exec_driver_sql(f"ALTER TABLE {table} OWNER TO {sa.engine.make_url(postgres_url).username}")
            conn.exec_driver_sql(f"DROP OWNED BY {role}, extgate_auditor")
            conn.exec_driver_sql(f"DROP ROLE {role}")
            conn.exec_driver_sql("DROP ROLE extgate_auditor")
            conn.exec_driver_sql(f"DROP OWNED BY {owner}")
            conn.exec_driver_sql(f"DROP ROLE {owner}")
        admin.dispose()


def test_alembic_migration_up_and_down(database_url: str) -> None:
    from service.db.migrate import upgrade

    eng = engine_for_url(database_url)
    try:
        upgrade(eng)
        log = SqlAuditLog(eng)
        assert log.append(event(0)) == 0
        log.close(final_checkpoint=False)
        with eng.begin() as conn, pytest.raises(sa.exc.DBAPIError), conn.begin_nested():
            conn.exec_driver_sql("DELETE FROM audit_record")
        from alembic import command

        from service.db.migrate import _config

        cfg = _config(eng)
        with eng.connect() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001_registry")
            conn.commit()
        assert not sa.inspect(eng).has_table("audit_record")
        upgrade(eng)
        assert sa.inspect(eng).has_table("audit_record")
    finally:
        eng.dispose()
