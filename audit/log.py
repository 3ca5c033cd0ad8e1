"""The `AuditLog` interface and its backend registry.

Shaped like Cerbos' audit package: one interface for writers (`append`), one for readers
(queries, checkpoints, proofs), and named backends registered beside it. `sql` (SQLite or
PostgreSQL through SQLAlchemy) is the one implemented; a file or Kafka sink would register
another factory under its own name, e.g. a sink that forwards to Kafka after the SQL
append, or a write-only file sink.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from audit.records import AuditEvent, StoredRecord


class AuditError(Exception):
    """Base class of audit log errors."""


class AuditUnavailableError(AuditError):
    """The record could not be made durable (database down, queue full, timeout, closed).

    Callers on the request path must fail closed: a gateway request is not dispatched
    unless its decision record is durable.
    """


class NotFoundError(AuditError):
    pass


class NotCheckpointedError(AuditError):
    """The record exists but no signed checkpoint covers it yet."""


@dataclass(frozen=True)
class RecordFilter:
    tenant_id: str | None = None  # None: every tenant and platform records
    action: str | None = None  # exact, or a prefix ending in "." (e.g. "debug_session.")
    outcome: str | None = None
    actor_id: str | None = None
    resource: str | None = None
    request_id: str | None = None
    since_us: int | None = None  # ts >= since
    until_us: int | None = None  # ts < until


@dataclass(frozen=True)
class CheckpointInfo:
    size: int
    root: bytes
    note: str
    key_id: str
    created_at: int  # UTC microseconds

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "root": self.root.hex(),
            "note": self.note,
            "key_id": self.key_id,
            "created_at_us": self.created_at,
        }


@dataclass(frozen=True)
class InclusionProofBundle:
    """Everything needed to check one record offline: body, path, signed checkpoint."""

    seq: int
    tree_size: int
    body: bytes
    leaf_hash: bytes
    path: tuple[bytes, ...]
    checkpoint: str

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "extgate-audit-inclusion-proof/v1",
            "seq": self.seq,
            "tree_size": self.tree_size,
            "record": self.body.decode("utf-8"),
            "leaf_hash": self.leaf_hash.hex(),
            "path": [h.hex() for h in self.path],
            "checkpoint": self.checkpoint,
        }


@runtime_checkable
class AuditSink(Protocol):
    """Write side. `append` returns the record's sequence number once it is durable."""

    backend: str

    def append(self, event: AuditEvent, *, timeout: float | None = None) -> int: ...
    async def append_async(self, event: AuditEvent) -> int: ...
    def submit(self, event: AuditEvent, *, defer: bool = False) -> Future[int]: ...
    def append_in(self, conn: Any, event: AuditEvent) -> int:
        """Append inside the caller's open transaction on `conn` (a connection to the log's
        database): the record commits with the caller's change, or not at all."""
        ...
    def start(self) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class AuditReader(Protocol):
    """Read side: queries, checkpoints, proofs."""

    def query(
        self,
        flt: RecordFilter,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int = 100,
        descending: bool = False,
    ) -> list[StoredRecord]: ...
    def get(self, seq: int) -> StoredRecord: ...
    def size(self) -> int: ...
    def latest_checkpoint(self) -> CheckpointInfo | None: ...
    def checkpoint(self) -> CheckpointInfo: ...
    def inclusion_proof(self, seq: int) -> InclusionProofBundle: ...


class AuditLog(AuditSink, AuditReader, Protocol):
    """A full audit log: sink + reader."""


BackendFactory = Callable[..., AuditLog]
_BACKENDS: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory) -> None:
    _BACKENDS[name] = factory


def backends() -> Sequence[str]:
    return sorted(_BACKENDS)


def create_audit_log(backend: str = "sql", **kwargs: Any) -> AuditLog:
    """Instantiate a registered backend (`sql` takes an engine; see `SqlAuditLog`)."""
    if backend not in _BACKENDS:
        import audit.sql  # noqa: F401  (registers the built-in backend)
    try:
        factory = _BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown audit backend {backend!r} (known: {', '.join(backends())})") from None
    return factory(**kwargs)
