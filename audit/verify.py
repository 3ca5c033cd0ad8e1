"""Verification: recompute every leaf and root, check signatures, contiguity, checkpoints.

Checks, in one streaming pass over the records in seq order:
- `seq` is contiguous from 0 (a gap is a **deleted** record);
- the stored `leaf_hash` equals SHA-256(0x00 || body) and the filter columns agree with
  the body (otherwise **edited**);
- `body.seq` equals the row's seq (otherwise **reordered**: a row was moved, e.g. two rows
  swapped, even with recomputed hashes);
- the Merkle root recomputed from the bodies equals the root of every signed checkpoint,
  from the database and from exported files (otherwise **edited**: a record below that
  size was changed, inserted or removed, even with recomputed hashes; the report gives
  the range between the last matching checkpoint and this one);
- every checkpoint agrees with its row and no trusted key's signature on it fails
  (otherwise **bad_signature**); two valid checkpoints of one size with different roots
  are a **forked** (split) view. A checkpoint signed only by keys that are not trusted is
  no evidence either way: it is not used as an anchor, and the result names the key to add
  to EXTGATE_AUDIT_TRUSTED_KEYS (typically the key before a rotation);
- no valid checkpoint is larger than the log (otherwise **truncated**); the head row
  agrees with the records;
- every stored attachment (a decision's entity snapshot, named by digest inside its
  record's hashed bytes) hashes to its digest (otherwise the result lists it as edited).

Result: `ok` (exit 0), `tampered` (exit 1), `unverifiable` (exit 2: records not covered by
any signed checkpoint are older than the allowed tail age, no trusted key, a checkpoint
signed by an untrusted key, or, in strict
mode, any unanchored record or no exported checkpoint).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from hashlib import sha256
from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from audit.anchors import LoadedCheckpoint
from audit.merkle import EMPTY_ROOT, CompactRange, node_hash
from audit.note import NoteError, NoteVerifier, ParsedNote, SignatureStatus, check_signatures, parse_checkpoint
from audit.records import blob_digest

MAX_FINDINGS = 100


class Kind(StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    BAD_SIGNATURE = "bad_signature"
    FORKED = "forked"


class Status(StrEnum):
    OK = "ok"
    TAMPERED = "tampered"
    UNVERIFIABLE = "unverifiable"


EXIT_CODES = {Status.OK: 0, Status.TAMPERED: 1, Status.UNVERIFIABLE: 2}
EXIT_USAGE = 3


@dataclass(frozen=True)
class Finding:
    kind: Kind
    seq: int  # first bad sequence number (lower bound when only a root disagrees)
    detail: str
    seq_end: int | None = None  # last seq of the range the problem lies in, when known as a range

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": str(self.kind), "seq": self.seq, "detail": self.detail}
        if self.seq_end is not None:
            out["seq_end"] = self.seq_end
        return out


@dataclass
class VerifyResult:
    status: Status
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    records: int = 0  # records read
    head_size: int | None = None
    checkpoints_valid: int = 0
    checkpoints_total: int = 0
    external_valid: int = 0
    external_total: int = 0
    signed_size: int = 0  # largest size covered by a valid checkpoint matching the data
    anchored_size: int = 0  # largest size covered by a valid *exported* checkpoint
    unanchored: int = 0  # records beyond signed_size
    tail_oldest_us: int | None = None
    elapsed: float = 0.0
    # Checkpoints signed only by keys we do not trust: a configuration gap, not tampering.
    untrusted_keys: dict[str, list[int]] = field(default_factory=dict)  # "name (key id hex)" -> sizes
    # Attachments (entity snapshots) whose stored bytes do not hash to their digest.
    bad_attachments: list[str] = field(default_factory=list)
    attachments: int = 0

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def first(self) -> Finding | None:
        return min(self.findings, key=lambda f: f.seq) if self.findings else None

    def to_json(self) -> dict[str, Any]:
        first = self.first
        return {
            "status": str(self.status),
            "exit_code": self.exit_code,
            "first_bad_seq": first.seq if first else None,
            "first_bad_kind": str(first.kind) if first else None,
            "findings": [f.to_json() for f in self.findings],
            "warnings": self.warnings,
            "records": self.records,
            "head_size": self.head_size,
            "checkpoints": {"valid": self.checkpoints_valid, "total": self.checkpoints_total},
            "exported_checkpoints": {"valid": self.external_valid, "total": self.external_total},
            "signed_size": self.signed_size,
            "anchored_size": self.anchored_size,
            "unanchored_records": self.unanchored,
            "tail_oldest_us": self.tail_oldest_us,
            "attachments": {"checked": self.attachments, "bad": self.bad_attachments[:MAX_FINDINGS]},
            "untrusted_keys": [{"key": k, "checkpoint_sizes": v[:20]} for k, v in sorted(self.untrusted_keys.items())],
            "elapsed_seconds": round(self.elapsed, 3),
            "records_per_second": int(self.records / self.elapsed) if self.elapsed > 0 else None,
        }


@dataclass(frozen=True)
class _Anchor:
    size: int
    root: bytes
    source: str
    external: bool


UNTRUSTED_HINT = (
    "signed by a key that is not trusted ({keys}): if it is one of your audit signing keys "
    "(for example the key before a rotation), add its public key to EXTGATE_AUDIT_TRUSTED_KEYS"
)


class _Findings:
    def __init__(self) -> None:
        self.items: list[Finding] = []
        self.dropped = 0
        self.last_precise = -1  # highest seq with a row-level finding
        self.untrusted: dict[str, list[int]] = {}

    def add(self, kind: Kind, seq: int, detail: str, seq_end: int | None = None, *, row: bool = False) -> None:
        if row:
            self.last_precise = max(self.last_precise, seq)
        if len(self.items) < MAX_FINDINGS:
            self.items.append(Finding(kind, seq, detail, seq_end))
        else:
            self.dropped += 1


def _check_note(
    note: ParsedNote, verifiers: Sequence[NoteVerifier], origin: str | None, source: str, out: _Findings
) -> bool:
    cp = note.checkpoint
    if origin is not None and cp.origin != origin:
        out.add(Kind.BAD_SIGNATURE, cp.size, f"{source}: origin {cp.origin!r} is not {origin!r}")
        return False
    status = check_signatures(note, verifiers)
    if status == SignatureStatus.BAD:
        out.add(Kind.BAD_SIGNATURE, cp.size, f"{source}: signature by a trusted key does not verify")
        return False
    if status == SignatureStatus.UNTRUSTED:
        # Unusable as an anchor, but not evidence of tampering: typically a rotated-out key
        # missing from the trusted list. Reported as unverifiable with the key to add.
        for sig in note.signatures:
            out.untrusted.setdefault(f"{sig.name} (key id {sig.key_id.hex()})", []).append(cp.size)
        return False
    return True


# Each scan row: seq, the filter columns, the record bytes and the stored leaf hash.
_SCAN_SQL = (
    "SELECT seq, ts, tenant_id, action, outcome, actor_id, resource, request_id, body, leaf_hash "
    "FROM audit_record WHERE seq >= {ph} AND seq < {ph} ORDER BY seq"
)
_ROW_SQL = "SELECT ts, tenant_id, action, outcome, actor_id, resource, request_id FROM audit_record WHERE seq = {ph}"


def _enc(value: str | None) -> bytes:
    """JSON encoding of a string column exactly as the canonical record has it."""
    if value is None:
        return b"null"
    if value.isprintable() and '"' not in value and "\\" not in value:
        return ('"' + value + '"').encode("utf-8")  # nothing json would escape
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _columns_match(
    body: bytes,
    seq: int,
    ts: int,
    tenant: str | None,
    action: str,
    outcome: str,
    actor_id: str | None,
    resource: str | None,
    request_id: str | None,
) -> bool:
    """Fast check (no JSON parse) that the row's seq and filter columns agree with its bytes.

    Records are canonical JSON with sorted keys: `{"action":..,"actor":..,"details":..,
    "outcome":..,"policy_ids":..,"policy_revision":..,"request_id":..,"resource":..,"seq":..,
    "tenant":..,"ts":..,"v":1}`. Everything from `request_id` on is a fixed-shape suffix and
    the start a fixed-shape prefix; inside JSON strings quotes are escaped, so the
    structural fragments checked here cannot come from string contents. False only means
    "look closer": `_row_check` parses the record and decides.
    """
    suffix = b',"request_id":%b,"resource":%b,"seq":%d,"tenant":%b,"ts":%d,"v":1}' % (
        _enc(request_id),
        _enc(resource),
        seq,
        _enc(tenant),
        ts,
    )
    if not body.endswith(suffix):
        return False
    prefix = b'{"action":' + _enc(action) + b',"actor":'
    if not body.startswith(prefix):
        return False
    start = len(prefix)
    if actor_id is None:
        if not body.startswith(b"null,", start):
            return False
    else:
        # Actor keys sort as auth?, id, ...; `auth` is a string, so the first `"id":` is the key.
        pos = body.find(b'"id":', start)
        ident = b'"id":' + _enc(actor_id)
        if pos < 0 or not (body.startswith(ident + b",", pos) or body.startswith(ident + b"}", pos)):
            return False
    # The top-level outcome is the last `,"outcome":` before the suffix: nested details come
    # earlier, and policy ids / revision after it are strings.
    pos = body.rfind(b',"outcome":', 0, len(body) - len(suffix))
    return pos >= 0 and body.startswith(b',"outcome":' + _enc(outcome) + b',"policy_ids":', pos)


def _row_check(body: bytes, seq: int, columns: tuple[Any, ...]) -> tuple[Kind, str] | None:
    """Python check of one record against its row (slow path): None if consistent."""
    try:
        d = json.loads(body.decode("utf-8"))
        actor = d.get("actor") or {}
        if d.get("seq") != seq:
            return Kind.REORDERED, f"record at position {seq} says it is record {d.get('seq')}"
        fields = (
            d.get("ts"),
            d.get("tenant"),
            d.get("action"),
            d.get("outcome"),
            actor.get("id"),
            d.get("resource"),
            d.get("request_id"),
        )
    except (ValueError, AttributeError, UnicodeDecodeError):
        return Kind.EDITED, "record bytes are not a JSON object"
    if tuple(columns) != fields:
        return Kind.EDITED, "columns do not match the hashed record"
    return None


class _Snapshot:
    """Raw driver reads inside one consistent snapshot, without taking write locks.

    PostgreSQL: a REPEATABLE READ read-only transaction and a server-side cursor for the
    scan. SQLite: a deferred `BEGIN` on the raw connection (the engine would otherwise begin
    IMMEDIATE and block writers for the whole verification).
    """

    def __init__(self, conn: Connection) -> None:
        self.postgres = conn.dialect.name == "postgresql"
        if self.postgres:
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        self.conn = conn
        self.url = conn.engine.url
        self.dbapi: Any = None
        self._tx: Any = None

    def __enter__(self) -> _Snapshot:
        if self.postgres:
            self._tx = self.conn.begin()
            self.dbapi = self.conn.connection.dbapi_connection
        else:
            self.dbapi = self.conn.connection.dbapi_connection
            self.dbapi.execute("BEGIN")  # deferred: a read snapshot, no write lock
            self.dbapi.execute("SELECT 1 FROM audit_head LIMIT 1").fetchall()  # pin the snapshot now
        return self

    def __exit__(self, *exc: object) -> None:
        if self.postgres:
            self._tx.rollback()
        else:
            self.dbapi.execute("ROLLBACK")

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = self.dbapi.cursor()
        try:
            cur.execute(sql, params)
            return list(cur.fetchall())
        finally:
            cur.close()

    def scan(self, lo: int, hi: int, chunk: int) -> Iterator[tuple[Any, ...]]:
        return _fetch(self.dbapi, self.postgres, lo, hi, chunk)


def _fetch(dbapi: Any, postgres: bool, lo: int, hi: int, chunk: int) -> Iterator[tuple[Any, ...]]:
    """Rows with lo <= seq < hi in seq order (PostgreSQL: server-side binary cursor)."""
    cur = dbapi.cursor(name="extgate_audit_verify", binary=True) if postgres else dbapi.cursor()
    try:
        if postgres:
            cur.itersize = chunk
        cur.execute(_SCAN_SQL.format(ph="%s" if postgres else "?"), (lo, hi))
        while True:
            rows = cur.fetchmany(chunk)
            if not rows:
                return
            yield from rows
    finally:
        cur.close()


_RANGE = 1 << 17  # records per parallel range (a power of two: ranges are perfect subtrees)


@dataclass
class _RangeResult:
    rows: int = 0
    end: int = 0  # one past the last seq seen
    first_gap: int | None = None
    findings: list[Finding] = field(default_factory=list)
    snapshots: dict[int, tuple[bytes, ...]] = field(default_factory=dict)  # size -> frontier of [lo, size)
    final: tuple[bytes, ...] = ()


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Root of a compact range given its perfect-subtree hashes, largest first."""
    if not hashes:
        return EMPTY_ROOT
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def _scan_rows(rows: Iterable[tuple[Any, ...]], lo: int, sizes: set[int]) -> _RangeResult:
    """Row-level checks and the Merkle frontier of one range of records starting at `lo`."""
    rr = _RangeResult(end=lo)
    cr = CompactRange()
    expected = lo
    findings = rr.findings
    for seq, ts, tenant, action, outcome, actor_id, resource, request_id, body, stored_leaf in rows:
        body = bytes(body)
        if seq != expected:
            findings.append(Finding(Kind.DELETED, expected, f"records {expected}..{seq - 1} are missing"))
            if rr.first_gap is None:
                rr.first_gap = expected
            expected = seq
        leaf = sha256(b"\x00" + body).digest()
        if leaf != stored_leaf:
            findings.append(Finding(Kind.EDITED, seq, "stored leaf hash does not match the record bytes"))
        if not _columns_match(body, seq, ts, tenant, action, outcome, actor_id, resource, request_id):
            problem = _row_check(body, seq, (ts, tenant, action, outcome, actor_id, resource, request_id))
            if problem is not None:
                findings.append(Finding(problem[0], seq, problem[1]))
        cr.append(leaf)
        expected = seq + 1
        rr.rows += 1
        if expected in sizes:
            rr.snapshots[expected] = cr.hashes
        if len(findings) > MAX_FINDINGS:
            del findings[MAX_FINDINGS:]
    rr.end = expected
    rr.final = cr.hashes
    return rr


def _plan_ranges(limit: int, url: URL, workers: int) -> list[tuple[int, int]]:
    in_memory = url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
    if workers < 2 or limit < 2 * _RANGE or in_memory:
        return [(0, limit)]
    return [(lo, min(lo + _RANGE, limit)) for lo in range(0, limit, _RANGE)]


def _scan_range_worker(url: str, lo: int, hi: int, sizes: set[int], chunk: int) -> _RangeResult:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            dbapi = conn.connection.dbapi_connection
            return _scan_rows(_fetch(dbapi, conn.dialect.name == "postgresql", lo, hi, chunk), lo, sizes)
    finally:
        engine.dispose()


def _scan_parallel(
    url: URL, ranges: list[tuple[int, int]], sizes: set[int], chunk: int, workers: int
) -> Iterator[_RangeResult]:
    target = url.render_as_string(hide_password=False)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(ranges)), mp_context=ctx) as pool:
        futures = [
            pool.submit(_scan_range_worker, target, lo, hi, {s for s in sizes if lo < s <= hi}, chunk)
            for lo, hi in ranges
        ]
        for fut in futures:
            yield fut.result()


def verify_log(
    engine: Engine,
    *,
    verifiers: Sequence[NoteVerifier],
    origin: str | None = None,
    external: Iterable[LoadedCheckpoint] = (),
    max_tail_age: float | None = None,
    strict: bool = False,
    now_us: int | None = None,
    chunk: int = 10_000,
    workers: int | None = None,
) -> VerifyResult:
    """Verify the whole log in `engine` against DB and exported checkpoints.

    Checkpoints, head and the record count are read in one snapshot. Logs of more than
    `2 * 2**17` records are scanned in aligned ranges by `workers` processes (default: CPU
    count); each range's subtree root is folded into the tree here.
    """
    started = time.perf_counter()
    out = _Findings()
    res = VerifyResult(Status.OK)
    if not verifiers:
        res.warnings.append("no trusted public key: checkpoint signatures cannot be checked")
    with engine.connect() as conn, _Snapshot(conn) as snap:
        return _verify(
            snap,
            res,
            out,
            verifiers,
            origin,
            list(external),
            max_tail_age,
            strict,
            now_us,
            chunk,
            started,
            workers if workers is not None else (os.cpu_count() or 1),
        )


def _verify(
    snap: _Snapshot,
    res: VerifyResult,
    out: _Findings,
    verifiers: Sequence[NoteVerifier],
    origin: str | None,
    external: Iterable[LoadedCheckpoint],
    max_tail_age: float | None,
    strict: bool,
    now_us: int | None,
    chunk: int,
    started: float,
    workers: int,
) -> VerifyResult:
    have_keys = bool(verifiers)
    anchors: list[_Anchor] = []
    cp_rows = snap.all("SELECT size, root, note FROM audit_checkpoint ORDER BY size")
    heads = snap.all("SELECT size, frontier FROM audit_head WHERE id = 1")
    head = heads[0] if heads else None
    res.checkpoints_total = len(cp_rows)
    for size, root, note_text in cp_rows:
        source = f"db checkpoint {size}"
        try:
            note = parse_checkpoint(note_text)
        except NoteError as exc:
            out.add(Kind.BAD_SIGNATURE, int(size), f"{source}: unreadable note ({exc})")
            continue
        if note.checkpoint.size != int(size) or note.checkpoint.root != bytes(root):
            out.add(Kind.BAD_SIGNATURE, int(size), f"{source}: row does not match its signed note")
            continue
        if have_keys and not _check_note(note, verifiers, origin, source, out):
            continue
        res.checkpoints_valid += 1
        anchors.append(_Anchor(note.checkpoint.size, note.checkpoint.root, source, external=False))
    for loaded in external:
        res.external_total += 1
        if loaded.note is None:
            out.add(Kind.BAD_SIGNATURE, 0, f"{loaded.source}: unreadable checkpoint ({loaded.error})")
            continue
        if have_keys and not _check_note(loaded.note, verifiers, origin, loaded.source, out):
            continue
        res.external_valid += 1
        cp = loaded.note.checkpoint
        anchors.append(_Anchor(cp.size, cp.root, loaded.source, external=True))

    by_size: dict[int, list[_Anchor]] = {}
    for a in anchors:
        by_size.setdefault(a.size, []).append(a)
    for size, group in by_size.items():
        if len({a.root for a in group}) > 1:
            out.add(
                Kind.FORKED, size, f"valid checkpoints of size {size} disagree: " + ", ".join(a.source for a in group)
            )

    # 2. Records -----------------------------------------------------------------------
    sizes = set(by_size)
    top = snap.all("SELECT max(seq) FROM audit_record")[0][0]
    limit = int(top) + 1 if top is not None else 0
    ranges = _plan_ranges(limit, snap.url, workers)
    if len(ranges) > 1:
        results: Iterable[_RangeResult] = _scan_parallel(snap.url, ranges, sizes, chunk, workers)
    else:
        results = [_scan_rows(snap.scan(0, limit, chunk), 0, sizes)]
    chunks = CompactRange()  # roots of the complete aligned ranges, as leaves of a tree of ranges
    broken = False  # after a gap, roots are meaningless
    last_good = 0  # largest size whose root matched a checkpoint
    matched_sizes: set[int] = set()
    n = 0
    cr_hashes: tuple[bytes, ...] = ()
    for (lo, hi), rr in zip(ranges, results, strict=True):
        res.records += rr.rows
        pending = sorted(rr.findings, key=lambda f: f.seq)
        for size in sorted(rr.snapshots):
            while pending and pending[0].seq < size:
                f = pending.pop(0)
                out.add(f.kind, f.seq, f.detail, f.seq_end, row=True)
            if broken or (rr.first_gap is not None and rr.first_gap < size):
                broken = True
                continue
            root = _fold(chunks.hashes + rr.snapshots[size])
            for a in by_size[size]:
                if a.root != root:
                    broken = True
                    if out.last_precise >= last_good:
                        continue  # already explained by a row-level finding in this range
                    out.add(
                        Kind.EDITED,
                        last_good,
                        f"Merkle root at size {size} differs from {a.source}: a record in "
                        f"{last_good}..{size - 1} was changed, inserted or removed",
                        size - 1,
                    )
            if not broken:
                last_good = size
                matched_sizes.add(size)
        for f in pending:
            out.add(f.kind, f.seq, f.detail, f.seq_end, row=True)
        if rr.first_gap is not None:
            broken = True
        n = rr.end if rr.rows else n
        cr_hashes = chunks.hashes + rr.final
        if hi - lo == _RANGE and rr.end == hi and len(rr.final) == 1:
            chunks.append(rr.final[0])
        elif (lo, hi) != ranges[-1]:
            if rr.end < hi:  # rows missing at the end of this range
                out.add(Kind.DELETED, rr.end, f"records from {rr.end} up to {hi - 1} are missing", row=True)
            broken = True
    if 0 in sizes and not broken:
        matched_sizes.add(0)
    root_now = _fold(cr_hashes)

    # 3. Tail, truncation and head --------------------------------------------------------
    max_signed = max(sizes, default=0)
    if max_signed > n:
        src = ", ".join(a.source for a in by_size[max_signed])
        out.add(
            Kind.TRUNCATED, n, f"log ends at {n} but a signed checkpoint covers {max_signed} ({src})", max_signed - 1
        )
    if head is None:
        out.add(Kind.TRUNCATED, 0, "the audit head row is missing")
    else:
        res.head_size = int(head[0])
        if res.head_size > n:
            out.add(Kind.TRUNCATED, n, f"head says {res.head_size} records but the log ends at {n}", res.head_size - 1)
        elif res.head_size < n:
            out.add(Kind.EDITED, res.head_size, f"records {res.head_size}..{n - 1} are beyond the head", n - 1)
        elif not broken:
            try:
                head_root = CompactRange.from_bytes(res.head_size, bytes(head[1])).root()
            except ValueError:
                head_root = b""
            if head_root != root_now and out.last_precise < last_good:
                out.add(
                    Kind.EDITED,
                    last_good,
                    f"recomputed root differs from the head frontier: a record in {last_good}..{n - 1} changed",
                    n - 1,
                )

    res.signed_size = max(matched_sizes, default=0)
    res.anchored_size = max((a.size for a in anchors if a.external and a.size in matched_sizes), default=0)
    res.unanchored = max(0, n - res.signed_size)
    if res.unanchored:
        ph = "%s" if snap.postgres else "?"
        rows = snap.all(f"SELECT ts FROM audit_record WHERE seq = {ph}", (res.signed_size,))  # noqa: S608
        ts0 = rows[0][0] if rows else None
        res.tail_oldest_us = int(ts0) if ts0 is not None else None

    _check_attachments(snap, res)
    res.findings = sorted(out.items, key=lambda f: (f.seq, f.kind))
    res.untrusted_keys = out.untrusted
    if out.untrusted:
        res.warnings.append(
            f"{sum(len(v) for v in out.untrusted.values())} checkpoint(s) "
            + UNTRUSTED_HINT.format(keys=", ".join(sorted(out.untrusted)))
        )
    if out.dropped:
        res.warnings.append(f"{out.dropped} further findings not listed")
    if res.findings or res.bad_attachments:
        res.status = Status.TAMPERED
    else:
        now = now_us if now_us is not None else time.time_ns() // 1000
        stale = (
            res.tail_oldest_us is not None
            and max_tail_age is not None
            and now - res.tail_oldest_us > max_tail_age * 1_000_000
        )
        if res.unanchored:
            res.warnings.append(
                f"{res.unanchored} record(s) after the last signed checkpoint are protected only by the database"
            )
        if n > 0 and res.anchored_size == 0:
            res.warnings.append("no exported checkpoint was checked: a truncated tail cannot be ruled out")
        if (not have_keys or stale or out.untrusted
                or (strict and (res.unanchored or (n > 0 and res.anchored_size < n)))):
            res.status = Status.UNVERIFIABLE
    res.elapsed = time.perf_counter() - started
    return res


_BLOB_PAGE = 2_000


def _check_attachments(snap: _Snapshot, res: VerifyResult) -> None:
    """Every stored attachment (record-referenced entity snapshot) hashes to its digest.
    Records name attachments by digest inside their hashed bytes, so an edited attachment
    is caught here even though its bytes are outside the Merkle tree."""
    exists = (snap.all("SELECT to_regclass('audit_blob') IS NOT NULL")[0][0] if snap.postgres else
              bool(snap.all("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_blob'")[0][0]))
    if not exists:  # a log from before attachments existed
        return
    ph = "%s" if snap.postgres else "?"
    last = ""
    while True:
        rows = snap.all(f"SELECT digest, body FROM audit_blob WHERE digest > {ph} ORDER BY digest LIMIT {_BLOB_PAGE}",  # noqa: S608
                        (last,))
        for digest, body in rows:
            res.attachments += 1
            if blob_digest(bytes(body)) != digest:
                res.bad_attachments.append(str(digest))
        if len(rows) < _BLOB_PAGE:
            return
        last = str(rows[-1][0])


def verify_inclusion_bundle(bundle: dict[str, Any], verifiers: Sequence[NoteVerifier]) -> tuple[bool, str]:
    """Check an exported inclusion proof offline (no database): signature, leaf, path."""
    from audit.merkle import leaf_hash, verify_inclusion

    try:
        note = parse_checkpoint(bundle["checkpoint"])
        record = bundle["record"].encode("utf-8")
        path = [bytes.fromhex(h) for h in bundle["path"]]
        seq = int(bundle["seq"])
        size = int(bundle["tree_size"])
    except (KeyError, TypeError, ValueError, NoteError) as exc:
        return False, f"malformed proof: {exc}"
    status = check_signatures(note, verifiers)
    if status != SignatureStatus.VALID:
        return False, f"checkpoint signature: {status}"
    if note.checkpoint.size != size:
        return False, "proof tree size differs from the checkpoint"
    try:
        if json.loads(record).get("seq") != seq:
            return False, "record seq differs from the proof's seq"
    except (ValueError, AttributeError):
        return False, "record is not a JSON object"
    leaf = leaf_hash(record)
    if bundle.get("leaf_hash") not in (None, leaf.hex()):
        return False, "leaf hash does not match the record"
    if not verify_inclusion(leaf, seq, size, path, note.checkpoint.root):
        return False, "inclusion path does not lead to the signed root"
    return True, f"record {seq} is included in the signed tree of size {size} ({note.checkpoint.origin})"
