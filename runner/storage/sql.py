"""SQL backend for the KV store (SQLAlchemy Core; SQLite and PostgreSQL).

Optimistic concurrency: every write bumps `revision`; a conditional write is an
`UPDATE … WHERE revision = :expected`, so two writers racing on the same revision cannot
both succeed. Creation relies on the primary key (a concurrent insert → conflict).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    String,
    Table,
    and_,
    create_engine,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from runner.storage.base import KVEntry, StorageConflictError, StorageMissingError

metadata = MetaData()

kv_entries = Table(
    "extgate_kv_entries",
    metadata,
    Column("tenant_id", String(255), primary_key=True),
    Column("install_id", String(255), primary_key=True),
    Column("namespace", String(128), primary_key=True),
    Column("key", String(256), primary_key=True),
    Column("value", LargeBinary, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def _scope(tenant_id: str, install_id: str, namespace: str, key: str):
    c = kv_entries.c
    return and_(c.tenant_id == tenant_id, c.install_id == install_id, c.namespace == namespace, c.key == key)


class SqlKVStore:
    def __init__(self, engine: Engine | str, *, create_tables: bool = False) -> None:
        self.engine = create_engine(engine, pool_pre_ping=True) if isinstance(engine, str) else engine
        if create_tables:
            metadata.create_all(self.engine, tables=[kv_entries])

    def get(self, tenant_id: str, install_id: str, namespace: str, key: str) -> KVEntry:
        c = kv_entries.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(c.value, c.revision).where(_scope(tenant_id, install_id, namespace, key))
            ).first()
        if row is None:
            raise StorageMissingError(key)
        return KVEntry(namespace, key, bytes(row.value), int(row.revision))

    def put(
        self,
        tenant_id: str,
        install_id: str,
        namespace: str,
        key: str,
        value: bytes,
        expected_revision: int | None,
    ) -> KVEntry:
        c = kv_entries.c
        now = datetime.now(UTC)
        where = _scope(tenant_id, install_id, namespace, key)
        with self.engine.begin() as conn:
            if expected_revision is not None and expected_revision > 0:
                res = conn.execute(
                    update(kv_entries)
                    .where(where, c.revision == expected_revision)
                    .values(value=value, revision=expected_revision + 1, updated_at=now)
                )
                if res.rowcount != 1:
                    raise StorageConflictError(key)
                return KVEntry(namespace, key, value, expected_revision + 1)
            if expected_revision is None:
                current = conn.execute(select(c.revision).where(where)).scalar()
                if current is not None:
                    res = conn.execute(
                        update(kv_entries)
                        .where(where, c.revision == current)
                        .values(value=value, revision=int(current) + 1, updated_at=now)
                    )
                    if res.rowcount != 1:
                        raise StorageConflictError(key)
                    return KVEntry(namespace, key, value, int(current) + 1)
        # create (expected_revision == 0, or unconditional write of a new key)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(kv_entries).values(
                        tenant_id=tenant_id, install_id=install_id, namespace=namespace, key=key,
                        value=value, revision=1, updated_at=now,
                    )
                )
        except IntegrityError as exc:
            raise StorageConflictError(key) from exc
        return KVEntry(namespace, key, value, 1)

    def delete(self, tenant_id: str, install_id: str, namespace: str, key: str) -> None:
        with self.engine.begin() as conn:
            res = conn.execute(delete(kv_entries).where(_scope(tenant_id, install_id, namespace, key)))
        if res.rowcount == 0:
            raise StorageMissingError(key)

    def list(
        self, tenant_id: str, install_id: str, namespace: str, after: str | None, limit: int
    ) -> list[KVEntry]:
        c = kv_entries.c
        q = select(c.key, c.value, c.revision).where(
            c.tenant_id == tenant_id, c.install_id == install_id, c.namespace == namespace
        )
        if after:
            q = q.where(c.key > after)
        q = q.order_by(c.key).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [KVEntry(namespace, r.key, bytes(r.value), int(r.revision)) for r in rows]
