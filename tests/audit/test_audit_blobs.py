"""Content-addressed blobs referenced by records (`audit_blob`): dedup, same transaction
as the record, verifiable, append-only — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from audit.log import AuditUnavailableError, NotFoundError
from audit.records import AuditEvent, AuditRecordError, blob_digest
from audit.sql import SqlAuditLog
from tests.audit.conftest import event

LogFactory = Callable[..., SqlAuditLog]


def _with_blob(i: int, blob: bytes) -> AuditEvent:
    digest = blob_digest(blob)
    return event(i, details={"decision": {"entities": digest}}, attachments={digest: blob})


def _blob_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM audit_blob").scalar_one())


def test_blobs_are_deduplicated_and_verifiable(make_log: LogFactory, engine: Engine) -> None:
    log = make_log()
    a, b = b'[{"uid":{"type":"T","id":"a"}}]', b'[{"uid":{"type":"T","id":"b"}}]'
    seqs = log.append_many([_with_blob(0, a), _with_blob(1, a), _with_blob(2, b)])
    log.append(_with_blob(3, a))  # a later batch: the writer remembers it wrote `a`
    assert seqs == [0, 1, 2]
    assert _blob_rows(engine) == 2
    for blob in (a, b):
        assert log.get_blob(blob_digest(blob)) == blob
    assert log.get_blobs([blob_digest(a), blob_digest(b), "sha256:" + "0" * 64]) == {
        blob_digest(a): a, blob_digest(b): b}
    # the digest is inside the hashed record bytes
    assert json.loads(log.get(3).body)["details"]["decision"]["entities"] == blob_digest(a)
    with pytest.raises(NotFoundError):
        log.get_blob("sha256:" + "0" * 64)
    # another writer (a replica, a restart) that does not know the blob inserts it idempotently
    other = make_log()
    other.append(_with_blob(4, a))
    assert _blob_rows(engine) == 2 and log.size() == 5


def test_attachment_must_match_its_digest(make_log: LogFactory) -> None:
    log = make_log()
    with pytest.raises(AuditRecordError):
        log.append(event(0, attachments={blob_digest(b"x"): b"y"}))
    with pytest.raises(AuditRecordError):
        log.append(event(0, attachments={"md5:abc": b"y"}))
    assert log.size() == 0


def test_blob_is_written_in_the_records_transaction(make_log: LogFactory, engine: Engine) -> None:
    """A record insert that fails leaves no blob behind (and the blob is written once it succeeds)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION t_refuse_insert() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused'; END $$")
            conn.exec_driver_sql("CREATE TRIGGER t_refuse BEFORE INSERT ON audit_record "
                                 "FOR EACH ROW EXECUTE FUNCTION t_refuse_insert()")
        else:
            conn.exec_driver_sql("CREATE TRIGGER t_refuse BEFORE INSERT ON audit_record "
                                 "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    log = make_log()
    blob = b'[{"uid":{"type":"T","id":"tx"}}]'
    with pytest.raises(AuditUnavailableError):
        log.append(_with_blob(0, blob))
    assert _blob_rows(engine) == 0 and log.size() == 0
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER t_refuse" + (" ON audit_record" if conn.dialect.name == "postgresql"
                                                        else ""))
    # the failed batch did not mark the blob as written: the next record writes it
    assert log.append(_with_blob(1, blob)) == 0
    assert _blob_rows(engine) == 1 and log.get_blob(blob_digest(blob)) == blob


def test_blobs_are_append_only(make_log: LogFactory, engine: Engine) -> None:
    log = make_log()
    blob = b"[]"
    log.append(_with_blob(0, blob))
    statements = ["UPDATE audit_blob SET body = 'x'", "DELETE FROM audit_blob"]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_blob")
    for stmt in statements:
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.exec_driver_sql(stmt)
    assert log.get_blob(blob_digest(blob)) == blob


def test_migrations_create_the_blob_table(sqlite_url: str) -> None:
    from service.db.backends import engine_for_url
    from service.db.migrate import upgrade

    eng = engine_for_url(sqlite_url)
    try:
        upgrade(eng)
        assert sa.inspect(eng).has_table("audit_blob")
        log = SqlAuditLog(eng)
        log.append(_with_blob(0, b"[1]"))
        assert log.get_blob(blob_digest(b"[1]")) == b"[1]"
        log.close()
        with pytest.raises(sa.exc.DBAPIError), eng.begin() as conn:
            conn.exec_driver_sql("DELETE FROM audit_blob")
    finally:
        eng.dispose()


def test_verify_catches_an_edited_snapshot(make_log: LogFactory, engine: Engine) -> None:
    """Snapshots live outside the Merkle tree, but records name them by digest: `verify`
    checks every stored snapshot against its digest."""
    from audit.verify import Status, verify_log

    log = make_log()
    a = b'[{"uid":{"type":"T","id":"a"}}]'
    log.append_many([_with_blob(i, a) for i in range(3)])
    log.checkpoint()
    clean = verify_log(engine, verifiers=log.verifiers, origin=log.origin)
    assert clean.attachments == 1 and clean.bad_attachments == [] and clean.status != Status.TAMPERED
    with engine.begin() as conn:  # a DBA edits the snapshot (guards off)
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_blob DISABLE TRIGGER USER")
        else:
            for name in [r[0] for r in conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='audit_blob'")]:
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
        conn.execute(sa.text("UPDATE audit_blob SET body = :b"), {"b": b'[{"uid":{"type":"T","id":"admin"}}]'})
    res = verify_log(engine, verifiers=log.verifiers, origin=log.origin)
    assert res.status == Status.TAMPERED and res.bad_attachments == [blob_digest(a)]
    assert res.findings == []  # the records themselves are intact
