"""`SqlAuditLog`: the append-only log in SQLite or PostgreSQL.

Write path (group commit): callers put validated events on a queue and wait on a future.
One writer thread per process takes everything queued (up to `max_batch`) and appends it
in one transaction:

    BEGIN                                   -- SQLite: BEGIN IMMEDIATE
    SELECT size, frontier FROM audit_head WHERE id = 1 FOR UPDATE
    -- seq = size, size+1, ...; body = canonical JSON incl. seq; leaf = SHA-256(0x00||body)
    INSERT INTO audit_record ... (one multi-row insert)
    UPDATE audit_head SET size = ..., frontier = ...
    COMMIT

Records may carry attachments (content-addressed blobs, see `audit.records`): the same
transaction inserts each blob not yet known to this writer into `audit_blob` with
insert-or-ignore, so a blob is durable exactly when the first record naming it is, and
identical blobs are stored once. The writer remembers a bounded set of digests it has
committed, so the hot path does not re-send a blob it already wrote.

Futures resolve with the record's seq only after COMMIT returns, so a caller that got a seq
holds a durable record. While one transaction commits, new appends queue up and share the
next one: a burst is batched without any artificial delay, and a lone append costs one
transaction (about a millisecond). The head row lock serializes writers across replicas,
so seq is gap-free and commit order equals seq order (no bigserial watermarks).

A checkpointer thread (started by `start()`) signs a checkpoint every `checkpoint_every`
records or `checkpoint_interval` seconds (whichever comes first, and only when there are
new records), stores it in `audit_checkpoint` and exports it to the checkpoint directory.
Several replicas may run one each: a checkpoint is made only if the newest one in the
database is old or far enough behind, and the size primary key dedups races.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.pool import PoolProxiedConnection

from audit import metrics as audit_metrics
from audit.anchors import ExportResult, export_checkpoint
from audit.config import AuditSettings
from audit.log import (
    AuditUnavailableError,
    CheckpointInfo,
    InclusionProofBundle,
    NotCheckpointedError,
    NotFoundError,
    RecordFilter,
    register_backend,
)
from audit.merkle import CompactRange, consistency_proof, inclusion_proof
from audit.note import Checkpoint, NoteSigner, NoteVerifier
from audit.records import AuditEvent, PreparedRecord, StoredRecord, now_us
from audit.schema import audit_blob, audit_checkpoint, audit_head, audit_key, audit_record

log = logging.getLogger("extgate.audit")
_sha256 = hashlib.sha256

_STOP = object()
# SQLite WAL checkpoints (see `SqlAuditLog._wal_loop`): after this many batches, or seconds.
WAL_CHECKPOINT_BATCHES = 200
WAL_CHECKPOINT_SECONDS = 5.0


@dataclass(slots=True)
class _Pending:
    """One queued append: resolved through a thread future, or an asyncio future on its loop."""

    record: PreparedRecord
    future: Future[int] | None = None
    afuture: asyncio.Future[int] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    deferred: bool = False  # nobody waits on it: may share a later append's transaction


def _expire(fut: asyncio.Future[int]) -> None:
    if not fut.done():
        fut.set_exception(AuditUnavailableError("timed out waiting for the audit record to commit"))


def _resolve_async(items: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    for fut, outcome in items:
        if fut.done():  # cancelled or timed out meanwhile
            continue
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)


def _settle(settled: list[tuple[_Pending, int | BaseException]]) -> None:
    """Complete callers: thread futures directly, asyncio futures with one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | BaseException]]] = {}
    for pending, outcome in settled:
        if pending.future is not None:
            if pending.future.done():
                continue
            if isinstance(outcome, BaseException):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)
        elif pending.afuture is not None and pending.loop is not None:
            by_loop.setdefault(pending.loop, []).append((pending.afuture, outcome))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting any more
            loop.call_soon_threadsafe(_resolve_async, items)


@dataclass
class WriterStats:
    appended: int = 0
    batches: int = 0
    max_batch_seen: int = 0
    failures: int = 0
    last_error: str | None = None
    last_commit_us: int = 0
    last_failure_us: int = 0
    last_checkpoint_us: int = 0  # creation time of the newest checkpoint this process has seen
    wal_checkpoints: int = 0


_RECORD_COLUMNS = (
    "seq",
    "ts",
    "tenant_id",
    "action",
    "outcome",
    "actor_id",
    "resource",
    "request_id",
    "body",
    "leaf_hash",
)
_COPY_SQL = f"COPY audit_record ({', '.join(_RECORD_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["int8", "int8", "text", "text", "text", "text", "text", "text", "bytea", "bytea"]
_INSERT_SQL = (  # constant column names, values bound
    f"INSERT INTO audit_record ({', '.join(_RECORD_COLUMNS)}) VALUES ({', '.join('?' * len(_RECORD_COLUMNS))})"  # noqa: S608
)
_BLOB_INSERT = "INSERT INTO audit_blob (digest, body, created_at) VALUES ({0}, {0}, {0}) ON CONFLICT DO NOTHING"
_BLOB_INSERT_PG = _BLOB_INSERT.format("%s")
_BLOB_INSERT_SQLITE = _BLOB_INSERT.format("?")
# Digests of blobs this writer has committed (FIFO-bounded): not sent again.
BLOB_MEMORY = 65_536
_HEAD_LOCK_PG = "SELECT size, frontier FROM audit_head WHERE id = 1 FOR UPDATE"
_HEAD_READ = "SELECT size, frontier FROM audit_head WHERE id = 1"
_HEAD_UPDATE_PG = "UPDATE audit_head SET size = %s, frontier = %s, updated_at = %s WHERE id = 1"
_HEAD_UPDATE_SQLITE = "UPDATE audit_head SET size = ?, frontier = ?, updated_at = ? WHERE id = 1"


def _insert_ignore(conn: Connection, table: sa.Table, values: dict[str, Any]) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(pg_dialect.insert(table).values(**values).on_conflict_do_nothing())
    else:
        conn.execute(sqlite_dialect.insert(table).values(**values).on_conflict_do_nothing())


def _checkpoint_from_row(row: Any) -> CheckpointInfo:
    return CheckpointInfo(
        size=int(row.size), root=bytes(row.root), note=row.note, key_id=row.key_id, created_at=int(row.created_at)
    )


class SqlAuditLog:
    backend = "sql"

    def __init__(
        self,
        engine: Engine,
        *,
        origin: str = "extgate.local/audit",
        signer: NoteSigner | None = None,
        verifiers: Sequence[NoteVerifier] = (),
        checkpoint_dir: Path | None = None,
        checkpoint_every: int = 10_000,
        checkpoint_interval: float = 60.0,
        max_batch: int = 500,
        max_queue: int = 50_000,
        append_timeout: float = 30.0,
        max_tail_age: float | None = None,
        defer_seconds: float = 0.05,
    ) -> None:
        if signer is not None and signer.name != origin:
            raise ValueError("the signing key name must equal the checkpoint origin")
        self.engine = engine
        self.origin = origin
        self.signer = signer
        self.verifiers: list[NoteVerifier] = list(verifiers) or ([signer.verifier] if signer else [])
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.append_timeout = append_timeout
        self.defer_seconds = defer_seconds
        self.max_tail_age = max_tail_age if max_tail_age is not None else 2 * checkpoint_interval + 60
        self.stats = WriterStats()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._cp_wake = threading.Event()
        self._closed = False
        self._last_cp_size = 0
        # The writer's DBAPI connection, held across batches (see `_writer_connection`).
        self._wconn: PoolProxiedConnection | None = None
        self._stage = "idle"
        # SQLite: WAL checkpoints run on their own thread, not inside an append's commit.
        self._wal_thread: threading.Thread | None = None
        self._wal_wake = threading.Event()
        self._wal_batches = 0
        # Writer thread only: digests of blobs known to be committed (insertion order = age).
        self._blobs_written: dict[str, None] = {}

    # Construction ---------------------------------------------------------------------
    @classmethod
    def from_settings(
        cls,
        engine: Engine,
        settings: AuditSettings,
        *,
        data_dir: Path,
        embedded: bool,
        require_signer: bool = True,
    ) -> SqlAuditLog:
        """The log as configured by `EXTGATE_AUDIT_*` (dev key only for embedded runs)."""
        signer = settings.signer(data_dir, embedded=embedded) if require_signer else None
        return cls(
            engine,
            origin=settings.origin,
            signer=signer,
            verifiers=settings.verifiers(signer),
            checkpoint_dir=settings.effective_checkpoint_dir(data_dir),
            checkpoint_every=settings.checkpoint_every,
            checkpoint_interval=settings.checkpoint_interval_seconds,
            max_batch=settings.max_batch,
            max_tail_age=settings.effective_max_tail_age(),
            defer_seconds=settings.defer_ms / 1000,
        )

    # Lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer and, if a signer is configured, the background checkpointer."""
        self._ensure_writer()
        audit_metrics.watch_audit_log(self)
        with self._lock:
            if self.signer is not None and self._checkpointer is None and not self._closed:
                self._checkpointer = threading.Thread(
                    target=self._checkpoint_loop, name="audit-checkpointer", daemon=True
                )
                self._checkpointer.start()

    def close(self, *, final_checkpoint: bool = True) -> None:
        """Drain pending appends, stop the threads, and sign a last checkpoint."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            writer, checkpointer = self._writer, self._checkpointer
        if writer is not None:
            self._queue.put(_STOP)
            writer.join()
        self._stopping.set()
        self._cp_wake.set()
        self._wal_wake.set()
        if self._wal_thread is not None:
            self._wal_thread.join()
        if checkpointer is not None:
            checkpointer.join()
        if final_checkpoint and self.signer is not None and checkpointer is not None:
            try:
                self.maybe_checkpoint(force=True)
            except Exception:  # noqa: BLE001 - shutdown must not raise
                log.exception("final audit checkpoint failed")

    def __enter__(self) -> SqlAuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_writer(self) -> None:
        if self._writer is not None:
            return
        with self._lock:
            if self._closed:
                raise AuditUnavailableError("audit log is closed")
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="audit-writer", daemon=True)
                self._writer.start()
                if self.engine.dialect.name == "sqlite":
                    self._wal_thread = threading.Thread(target=self._wal_loop, name="audit-wal", daemon=True)
                    self._wal_thread.start()

    # Append -----------------------------------------------------------------------------
    def _enqueue(self, pending: _Pending) -> None:
        if self._closed:
            raise AuditUnavailableError("audit log is closed")
        self._ensure_writer()
        if self._queue.qsize() >= self.max_queue:
            raise AuditUnavailableError("audit queue is full")
        self._queue.put(pending)

    def submit(self, event: AuditEvent, *, defer: bool = False) -> Future[int]:
        """Queue `event`; the future resolves to its seq once committed.

        `defer`: the caller does not wait for this record (an outcome, a denial), so it may
        wait up to `defer_seconds` for an append someone does wait on and share its
        transaction, instead of costing a commit (an fsync) of its own. Order is kept:
        records commit in the order they were queued.

        Raises `AuditRecordError` at once for an invalid event and `AuditUnavailableError`
        when the log is closed or the queue is full (fail closed).
        """
        record = event.prepare()  # validate, sanitize and encode in the caller's thread
        fut: Future[int] = Future()
        self._enqueue(_Pending(record, future=fut, deferred=defer))
        return fut

    def append(self, event: AuditEvent, *, timeout: float | None = None) -> int:
        """Append and wait until durable; returns the record's seq."""
        fut = self.submit(event)
        try:
            return fut.result(timeout=self.append_timeout if timeout is None else timeout)
        except FutureTimeoutError as exc:
            raise AuditUnavailableError("timed out waiting for the audit record to commit") from exc

    async def append_async(self, event: AuditEvent) -> int:
        """`append` for async code: awaits the commit without blocking the event loop."""
        record = event.prepare()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._enqueue(_Pending(record, afuture=fut, loop=loop))
        # A timer on the future itself rather than `asyncio.wait_for`, which costs an extra
        # future and loop round trip on every gateway call's wait for its decision record.
        timer = loop.call_later(self.append_timeout, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()

    def append_many(self, events: Sequence[AuditEvent], *, timeout: float | None = None) -> list[int]:
        futures = [self.submit(e) for e in events]
        wait = self.append_timeout if timeout is None else timeout
        try:
            return [f.result(timeout=wait) for f in futures]
        except FutureTimeoutError as exc:
            raise AuditUnavailableError("timed out waiting for audit records to commit") from exc

    def append_in(self, conn: Connection, event: AuditEvent) -> int:
        """Append `event` inside the caller's open transaction on `conn` (same database).

        For state changes whose record must commit with the change or not at all: the
        record (and its attachments) become durable exactly when the caller commits, and
        vanish with a rollback. Locks the log's head row until then, so keep it the last
        statement before COMMIT. Bypasses the group-commit writer (admin changes are rare);
        raises `AuditUnavailableError` when the log cannot take the record.
        """
        if self._closed:
            raise AuditUnavailableError("audit log is closed")
        record = event.prepare()
        try:
            head_query = sa.select(audit_head.c.size, audit_head.c.frontier).where(audit_head.c.id == 1)
            if conn.dialect.name == "postgresql":
                head_query = head_query.with_for_update()
            head = conn.execute(head_query).first()
            if head is None:
                raise RuntimeError("the audit head row is missing (schema not initialized?)")
            cr = CompactRange.from_bytes(int(head.size), bytes(head.frontier))
            seq = cr.size
            data = record.at(seq)
            lh = _sha256(b"\x00" + data).digest()
            cr.append(lh)
            for digest, blob in record.attachments:
                _insert_ignore(conn, audit_blob, {"digest": digest, "body": blob, "created_at": now_us()})
            conn.execute(audit_record.insert().values(
                seq=seq, ts=record.ts, tenant_id=record.tenant_id, action=record.action, outcome=record.outcome,
                actor_id=record.actor_id, resource=record.resource, request_id=record.request_id, body=data,
                leaf_hash=lh,
            ))
            conn.execute(audit_head.update().where(audit_head.c.id == 1).values(
                size=cr.size, frontier=cr.to_bytes(), updated_at=now_us()))
        except AuditUnavailableError:
            raise
        except Exception as exc:  # the caller's transaction is rolled back with it
            raise AuditUnavailableError(f"audit record not written: {type(exc).__name__}") from exc
        return seq

    def _write_loop(self) -> None:
        held: list[_Pending] = []  # deferred records waiting for company
        held_until = 0.0
        stop = False
        while not stop:
            if held:
                try:
                    item = self._queue.get(timeout=max(0.0, held_until - time.monotonic()))
                except queue.Empty:  # nobody came: commit them on their own
                    batch, held = held, []
                    self._commit_batch(batch)
                    continue
            else:
                item = self._queue.get()
            if item is _STOP:
                break
            batch = [*held, item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            if not stop and len(batch) < self.max_batch and all(p.deferred for p in batch):
                if not held:
                    held_until = time.monotonic() + self.defer_seconds
                held = batch
                continue
            held = []
            self._commit_batch(batch)
        if held:
            self._commit_batch(held)
        if self._wconn is not None:
            with contextlib.suppress(Exception):
                self._wconn.rollback()
            self._wconn.close()
            self._wconn = None

    def _commit_batch(self, batch: list[_Pending]) -> None:
        began = time.perf_counter()
        for attempt in (1, 2):
            reused = self._wconn is not None
            self._stage = "connect"
            try:
                results, size = self._append_txn(batch)
            except Exception as exc:  # noqa: BLE001 - every failure goes to the callers
                # A kept connection that died since the last batch fails on its first
                # statement; nothing was written, so one retry on a fresh connection is safe.
                if attempt == 1 and reused and self._stage in ("connect", "lock"):
                    log.warning("audit writer connection lost (%s); reconnecting", type(exc).__name__)
                    continue
                self._fail(batch, exc)
                return
            break
        else:  # pragma: no cover - the loop always breaks or returns
            return
        st = self.stats
        st.appended += len(results)
        st.batches += 1
        st.max_batch_seen = max(st.max_batch_seen, len(results))
        st.last_commit_us = now_us()
        audit_metrics.record_commit(len(results), time.perf_counter() - began)
        _settle(results)  # type: ignore[arg-type]
        if self._wal_thread is not None:
            self._wal_batches += 1
            if self._wal_batches >= WAL_CHECKPOINT_BATCHES:
                self._wal_batches = 0
                self._wal_wake.set()
        if size - self._last_cp_size >= self.checkpoint_every:
            self._cp_wake.set()

    def _fail(self, batch: list[_Pending], exc: BaseException) -> None:
        self.stats.failures += 1
        self.stats.last_failure_us = now_us()
        audit_metrics.FAILED_BATCHES.inc()
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
        log.error("audit append failed for %d record(s): %s", len(batch), self.stats.last_error)
        err = AuditUnavailableError(f"audit append failed: {type(exc).__name__}")
        err.__cause__ = exc
        _settle([(pending, err) for pending in batch])

    def _writer_connection(self) -> PoolProxiedConnection:
        """The writer thread's DBAPI connection, kept across batches.

        The write path is one fixed transaction issued directly on the driver connection:
        SQLAlchemy's Connection/transaction layer around it (begin events, transaction
        objects, commit bookkeeping) cost about as much as the statements themselves on
        SQLite, and this sits on every gateway call's path to a durable decision record."""
        conn = self._wconn
        if conn is None or not conn.is_valid:
            if conn is not None:
                conn.close()
            conn = self._wconn = self.engine.raw_connection()  # pool events (pre-ping, PRAGMAs) apply
            if self.engine.dialect.name == "sqlite":
                # Audit commits need fsync on commit (the engine default NORMAL can lose the
                # last transactions on power loss). Must be set outside a transaction.
                conn.driver_connection.execute("PRAGMA synchronous=FULL")  # type: ignore[union-attr]
                # A commit that crosses the WAL size threshold would copy the WAL into the
                # database and fsync it before returning: milliseconds on one append's path.
                # `_wal_loop` does that work beside the writer instead.
                conn.driver_connection.execute("PRAGMA wal_autocheckpoint=0")  # type: ignore[union-attr]
            else:
                conn.rollback()  # leave the checkout's implicit transaction, if any
        return conn

    def _drop_writer_connection(self) -> None:
        conn, self._wconn = self._wconn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception:  # noqa: BLE001 - already broken
                log.debug("closing the audit writer connection failed", exc_info=True)

    def _append_txn(self, batch: list[_Pending]) -> tuple[list[tuple[_Pending, int]], int]:
        dbapi = self._writer_connection()
        postgres = self.engine.dialect.name == "postgresql"
        try:
            cur = dbapi.cursor()
            try:
                self._stage = "lock"
                if not postgres:
                    # The engine's connections run with pysqlite's implicit transactions off;
                    # writers serialize at BEGIN rather than failing a lock upgrade later.
                    cur.execute("BEGIN IMMEDIATE")
                # PostgreSQL: psycopg opens the transaction on the first statement.
                cur.execute(_HEAD_LOCK_PG if postgres else _HEAD_READ)
                head = cur.fetchone()
                if head is None:
                    raise RuntimeError("the audit head row is missing (schema not initialized?)")
                size, frontier = head
                self._stage = "write"
                cr = CompactRange.from_bytes(int(size), bytes(frontier))
                rows: list[tuple[Any, ...]] = []
                results: list[tuple[_Pending, int]] = []
                known = self._blobs_written
                new_blobs: dict[str, bytes] = {}
                for pending in batch:
                    seq = cr.size
                    r = pending.record
                    data = r.prefix + str(seq).encode() + r.suffix
                    lh = _sha256(b"\x00" + data).digest()
                    cr.append(lh)
                    rows.append((seq, r.ts, r.tenant_id, r.action, r.outcome, r.actor_id, r.resource,
                                 r.request_id, data, lh))
                    results.append((pending, seq))
                    if r.attachments:
                        for digest, blob in r.attachments:
                            if digest not in known and digest not in new_blobs:
                                new_blobs[digest] = blob
                if new_blobs:  # same transaction as the records that name them
                    created = now_us()
                    cur.executemany(
                        _BLOB_INSERT_PG if postgres else _BLOB_INSERT_SQLITE,
                        [(digest, blob, created) for digest, blob in new_blobs.items()],
                    )
                if postgres:
                    with cur.copy(_COPY_SQL) as copy:
                        copy.set_types(_COPY_TYPES)
                        for row in rows:
                            copy.write_row(row)
                    cur.execute(_HEAD_UPDATE_PG, (cr.size, cr.to_bytes(), now_us()))
                else:
                    cur.executemany(_INSERT_SQL, rows)
                    cur.execute(_HEAD_UPDATE_SQLITE, (cr.size, cr.to_bytes(), now_us()))
            finally:
                cur.close()
            self._stage = "commit"
            dbapi.commit()
        except BaseException:
            self._drop_writer_connection()
            raise
        if new_blobs:
            for digest in new_blobs:
                known[digest] = None
            while len(known) > BLOB_MEMORY:
                del known[next(iter(known))]
        return results, cr.size

    # Checkpoints ------------------------------------------------------------------------
    def _wal_loop(self) -> None:
        """SQLite: copy committed WAL frames into the database every few hundred batches
        (and every few seconds), PASSIVE so the writer keeps appending meanwhile. Keeps the
        WAL bounded without putting that copy and its fsync inside an append's commit."""
        while not self._stopping.is_set():
            self._wal_wake.wait(WAL_CHECKPOINT_SECONDS)
            self._wal_wake.clear()
            try:
                conn = self.engine.raw_connection()
                try:
                    conn.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
                finally:
                    conn.close()
                self.stats.wal_checkpoints += 1
            except Exception as exc:  # noqa: BLE001 - retried on the next wake
                log.warning("audit WAL checkpoint failed: %s", type(exc).__name__)

    def _checkpoint_loop(self) -> None:
        tick = max(0.05, min(self.checkpoint_interval / 4, 5.0))
        while not self._stopping.is_set():
            self._cp_wake.wait(timeout=tick)
            self._cp_wake.clear()
            if self._stopping.is_set():
                break
            try:
                self.maybe_checkpoint()
            except Exception:  # noqa: BLE001 - keep checkpointing after a transient failure
                log.exception("audit checkpoint failed")

    def maybe_checkpoint(self, *, force: bool = False) -> CheckpointInfo | None:
        """Checkpoint if there are new records and N records or T seconds have passed."""
        size = self.size()
        latest = self.latest_checkpoint()
        latest_size = latest.size if latest else 0
        self._last_cp_size = max(self._last_cp_size, latest_size)
        if size <= latest_size and latest is not None:
            return None
        due = (
            force
            or latest is None
            or size - latest_size >= self.checkpoint_every
            or now_us() - latest.created_at >= self.checkpoint_interval * 1_000_000
        )
        return self.checkpoint() if due else None

    def checkpoint(self) -> CheckpointInfo:
        """Sign a checkpoint of the current tree now (or reuse the one at this size) and export it."""
        if self.signer is None:
            raise AuditUnavailableError("no audit signing key configured")
        signer = self.signer
        with self.engine.begin() as conn:
            head = conn.execute(sa.select(audit_head.c.size, audit_head.c.frontier).where(audit_head.c.id == 1)).one()
            size = int(head.size)
            existing = conn.execute(sa.select(audit_checkpoint).where(audit_checkpoint.c.size == size)).first()
            if existing is None:
                root = CompactRange.from_bytes(size, bytes(head.frontier)).root()
                note = Checkpoint(self.origin, size, root).sign([signer])
                verifier = signer.verifier
                created = now_us()
                _insert_ignore(
                    conn,
                    audit_key,
                    {
                        "vkey": verifier.vkey,
                        "name": verifier.name,
                        "key_id": verifier.key_id.hex(),
                        "created_at": created,
                    },
                )
                _insert_ignore(
                    conn,
                    audit_checkpoint,
                    {"size": size, "root": root, "note": note, "key_id": verifier.key_id.hex(), "created_at": created},
                )
                existing = conn.execute(sa.select(audit_checkpoint).where(audit_checkpoint.c.size == size)).one()
        info = _checkpoint_from_row(existing)
        self.stats.last_checkpoint_us = max(self.stats.last_checkpoint_us, info.created_at)
        self._last_cp_size = max(self._last_cp_size, info.size)
        self.export(info)
        return info

    def export(self, info: CheckpointInfo) -> ExportResult | None:
        if self.checkpoint_dir is None:
            return None
        return export_checkpoint(self.checkpoint_dir, info.size, info.note)

    def latest_checkpoint(self) -> CheckpointInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(audit_checkpoint).order_by(audit_checkpoint.c.size.desc()).limit(1)).first()
        if row is None:
            return None
        info = _checkpoint_from_row(row)
        self.stats.last_checkpoint_us = max(self.stats.last_checkpoint_us, info.created_at)  # made by any replica
        return info

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def writer_healthy(self) -> bool:
        """Open, its writer thread alive (once started), room in its queue, and its last batch
        committed (a failure newer than the last commit means appends are failing now)."""
        writer = self._writer
        return (
            not self._closed
            and (writer is None or writer.is_alive())
            and self._queue.qsize() < self.max_queue
            and self.stats.last_failure_us <= self.stats.last_commit_us
        )

    def checkpoints(self) -> list[CheckpointInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(audit_checkpoint).order_by(audit_checkpoint.c.size)).all()
        return [_checkpoint_from_row(r) for r in rows]

    # Reads ------------------------------------------------------------------------------
    def size(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(audit_head.c.size).where(audit_head.c.id == 1)).scalar_one())

    def root(self) -> tuple[int, bytes]:
        with self.engine.connect() as conn:
            head = conn.execute(sa.select(audit_head.c.size, audit_head.c.frontier).where(audit_head.c.id == 1)).one()
        return int(head.size), CompactRange.from_bytes(int(head.size), bytes(head.frontier)).root()

    def get(self, seq: int) -> StoredRecord:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(audit_record.c.seq, audit_record.c.body, audit_record.c.leaf_hash).where(
                    audit_record.c.seq == seq
                )
            ).first()
        if row is None:
            raise NotFoundError(f"no audit record {seq}")
        return StoredRecord(int(row.seq), bytes(row.body), bytes(row.leaf_hash))

    def get_blob(self, digest: str) -> bytes:
        """The attachment stored under `digest` (raises NotFoundError). Callers that rely on
        it verify it: `audit.records.blob_digest(body) == digest`."""
        with self.engine.connect() as conn:
            body = conn.execute(sa.select(audit_blob.c.body).where(audit_blob.c.digest == digest)).scalar()
        if body is None:
            raise NotFoundError(f"no audit blob {digest}")
        return bytes(body)

    def get_blobs(self, digests: Sequence[str]) -> dict[str, bytes]:
        """The attachments stored under `digests` that exist (unverified), in one query per 500."""
        out: dict[str, bytes] = {}
        wanted = list(dict.fromkeys(digests))
        with self.engine.connect() as conn:
            for i in range(0, len(wanted), 500):
                rows = conn.execute(
                    sa.select(audit_blob.c.digest, audit_blob.c.body).where(audit_blob.c.digest.in_(wanted[i:i + 500]))
                ).all()
                out.update((str(r.digest), bytes(r.body)) for r in rows)
        return out

    def blob_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(audit_blob)).scalar_one())

    @staticmethod
    def _where(flt: RecordFilter) -> list[Any]:
        c = audit_record.c
        conds: list[Any] = []
        if flt.tenant_id is not None:
            conds.append(c.tenant_id == flt.tenant_id)
        if flt.action is not None:
            if flt.action.endswith("."):
                conds.append(c.action.startswith(flt.action, autoescape=True))
            else:
                conds.append(c.action == flt.action)
        for col, value in (
            (c.outcome, flt.outcome),
            (c.actor_id, flt.actor_id),
            (c.resource, flt.resource),
            (c.request_id, flt.request_id),
        ):
            if value is not None:
                conds.append(col == value)
        if flt.since_us is not None:
            conds.append(c.ts >= flt.since_us)
        if flt.until_us is not None:
            conds.append(c.ts < flt.until_us)
        return conds

    def query(
        self,
        flt: RecordFilter,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int = 100,
        descending: bool = False,
    ) -> list[StoredRecord]:
        c = audit_record.c
        conds = self._where(flt)
        if after_seq is not None:
            conds.append(c.seq > after_seq)
        if before_seq is not None:
            conds.append(c.seq < before_seq)
        stmt = (
            sa.select(c.seq, c.body, c.leaf_hash)
            .where(*conds)
            .order_by(c.seq.desc() if descending else c.seq)
            .limit(max(1, min(limit, 10_000)))
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [StoredRecord(int(r.seq), bytes(r.body), bytes(r.leaf_hash)) for r in rows]

    def iter_records(self, flt: RecordFilter, *, chunk: int = 5_000) -> Iterator[StoredRecord]:
        """Every matching record in seq order (keyset pagination; constant memory)."""
        after: int | None = None
        while True:
            page = self.query(flt, after_seq=after, limit=chunk)
            yield from page
            if len(page) < chunk:
                return
            after = page[-1].seq

    def leaf_hashes(self, size: int) -> list[bytes]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(audit_record.c.leaf_hash).where(audit_record.c.seq < size).order_by(audit_record.c.seq)
            ).scalars()
            return [bytes(h) for h in rows]

    def inclusion_proof(self, seq: int, *, tree_size: int | None = None) -> InclusionProofBundle:
        """Proof that record `seq` is in the tree signed by the newest covering checkpoint."""
        record = self.get(seq)
        with self.engine.connect() as conn:
            stmt = sa.select(audit_checkpoint).where(audit_checkpoint.c.size > seq)
            if tree_size is not None:
                stmt = stmt.where(audit_checkpoint.c.size == tree_size)
            row = conn.execute(stmt.order_by(audit_checkpoint.c.size.desc()).limit(1)).first()
        if row is None:
            raise NotCheckpointedError(f"no signed checkpoint covers record {seq} yet")
        cp = _checkpoint_from_row(row)
        leaves = self.leaf_hashes(cp.size)
        if len(leaves) != cp.size:
            raise NotFoundError(f"log has {len(leaves)} records below checkpoint size {cp.size}")
        path = inclusion_proof(leaves, seq, cp.size)
        return InclusionProofBundle(seq, cp.size, record.body, record.leaf_hash, tuple(path), cp.note)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """Proof that the tree of size `old` is a prefix of the tree of size `new` (RFC 6962 §2.1.2)."""
        if not 0 <= old <= new:
            raise ValueError("need 0 <= old <= new")
        leaves = self.leaf_hashes(new)
        if len(leaves) != new:
            raise NotFoundError(f"log has {len(leaves)} records, fewer than {new}")
        return consistency_proof(leaves, old, new)

    def public_keys(self) -> list[NoteVerifier]:
        return list(self.verifiers)

    def health(self) -> dict[str, Any]:
        st = self.stats
        return {
            "backend": self.backend,
            "queued": self._queue.qsize(),
            "appended": st.appended,
            "batches": st.batches,
            "failures": st.failures,
            "wal_checkpoints": st.wal_checkpoints,
            "last_error": st.last_error,
            "closed": self._closed,
        }


def _factory(**kwargs: Any) -> SqlAuditLog:
    return SqlAuditLog(**kwargs)


register_backend("sql", _factory)
