"""Audit tables (SQLAlchemy Core), append-only guards, and the DDL entry points.

This module is the single source of truth for the audit DDL: the alembic revision
`0002_audit` calls `create_audit_schema_v1(conn)` and `drop_audit_schema_v1(conn)`, and
tests/embedded tools call `create_schema(engine)`, which runs the same function. The v1
functions are frozen: a later schema change gets a new function and a new revision.

Tables
- `audit_record`: one row per record. `body` holds the canonical JSON bytes exactly as
  hashed; `leaf_hash` = SHA-256(0x00 || body). The other columns are projections of the
  body for filtering (the verifier checks they agree with it).
- `audit_head`: a single row (`id = 1`) with the tree size and its compact-range frontier.
  Every append transaction locks it (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite
  transactions begin IMMEDIATE), which makes `seq` gap-free and commit order = seq order.
- `audit_checkpoint`: signed checkpoint notes, one per tree size.
- `audit_key`: public keys that have signed checkpoints (published; never trusted by
  `verify` on their own, since the database is what we do not trust).
- `audit_blob` (v2, revision `0004_audit_blob`): content-addressed attachments of records,
  `digest` = "sha256:<hex>" of `body`. A record names the digest inside its hashed bytes
  (e.g. a decision's entity snapshot), so the blob is as verifiable as the record:
  sha256(body) == digest. Identical blobs are stored once (insert-or-ignore), written in
  the same transaction as the first record that references them.

Guards (they stop mistakes, not a superuser; the Merkle tree and the exported signed
checkpoints are what detect a DBA):
- PostgreSQL: row triggers refuse UPDATE/DELETE, a statement trigger refuses TRUNCATE
  (TRUNCATE does not fire DELETE triggers), all `ENABLE ALWAYS` so that
  `session_replication_role = replica` does not skip them. `audit_head` may only be
  updated forward (size never decreases) and never deleted.
- SQLite: `RAISE(ABORT)` triggers refuse UPDATE/DELETE (SQLite has no TRUNCATE).

Recommended PostgreSQL privileges: see `POSTGRES_ROLE_SQL` (also in docs/audit.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

metadata = sa.MetaData()

# INTEGER PRIMARY KEY on SQLite is the rowid: appends stay in rowid order, no extra index.
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

audit_record = sa.Table(
    "audit_record",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.BigInteger, nullable=False),  # event time, UTC microseconds
    sa.Column("tenant_id", sa.String(512), nullable=True),
    sa.Column("action", sa.String(512), nullable=False),
    sa.Column("outcome", sa.String(512), nullable=False),
    sa.Column("actor_id", sa.String(512), nullable=True),
    sa.Column("resource", sa.String(512), nullable=True),
    sa.Column("request_id", sa.String(512), nullable=True),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    sa.Index("ix_audit_record_tenant_seq", "tenant_id", "seq"),
    sa.Index("ix_audit_record_request_id", "request_id"),
    sa.Index("ix_audit_record_ts", "ts"),
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("frontier", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.CheckConstraint("id = 1", name="ck_audit_head_single_row"),
)

audit_checkpoint = sa.Table(
    "audit_checkpoint",
    metadata,
    sa.Column("size", _SEQ, primary_key=True, autoincrement=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),  # UTC microseconds
)

audit_key = sa.Table(
    "audit_key",
    metadata,
    sa.Column("vkey", sa.String(600), primary_key=True),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

audit_blob = sa.Table(
    "audit_blob",
    metadata,
    sa.Column("digest", sa.String(80), primary_key=True),  # "sha256:<64 hex>"
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),  # UTC microseconds
)

APPEND_ONLY_TABLES = ("audit_record", "audit_checkpoint", "audit_key")
# v2 tables (created by `create_audit_schema_v2`), append-only as well.
APPEND_ONLY_TABLES_V2 = ("audit_blob",)
_V1_TABLES = (audit_record, audit_head, audit_checkpoint, audit_key)

_PG_FUNCTIONS = [
    """
    CREATE OR REPLACE FUNCTION extgate_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'extgate audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    """
    CREATE OR REPLACE FUNCTION extgate_audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.id <> OLD.id OR NEW.size < OLD.size THEN
        RAISE EXCEPTION 'extgate audit head may only move forward'
          USING ERRCODE = 'insufficient_privilege';
      END IF;
      RETURN NEW;
    END
    $$
    """,
]


def _pg_table_guards(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION extgate_audit_refuse()",
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_append_only",
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION extgate_audit_refuse()",
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate",
    ]


def _sqlite_table_guards(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'extgate audit table {table} is append-only: {op} refused'); END"
        for op in ("UPDATE", "DELETE")
    ]


def _pg_guard_statements() -> list[str]:
    stmts = list(_PG_FUNCTIONS)
    for table in APPEND_ONLY_TABLES:
        stmts += [
            f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION extgate_audit_refuse()",
            f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_append_only",
        ]
    for table in (*APPEND_ONLY_TABLES, "audit_head"):
        stmts += [
            f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION extgate_audit_refuse()",
            f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate",
        ]
    stmts += [
        "DROP TRIGGER IF EXISTS audit_head_no_delete ON audit_head",
        "CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head "
        "FOR EACH ROW EXECUTE FUNCTION extgate_audit_refuse()",
        "ALTER TABLE audit_head ENABLE ALWAYS TRIGGER audit_head_no_delete",
        "DROP TRIGGER IF EXISTS audit_head_forward ON audit_head",
        "CREATE TRIGGER audit_head_forward BEFORE UPDATE ON audit_head "
        "FOR EACH ROW EXECUTE FUNCTION extgate_audit_head_forward()",
        "ALTER TABLE audit_head ENABLE ALWAYS TRIGGER audit_head_forward",
    ]
    return stmts


def _sqlite_guard_statements() -> list[str]:
    stmts: list[str] = []
    for table in APPEND_ONLY_TABLES:
        for op in ("UPDATE", "DELETE"):
            stmts.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'extgate audit table {table} is append-only: {op} refused'); END"
            )
    stmts += [
        "CREATE TRIGGER IF NOT EXISTS audit_head_no_delete BEFORE DELETE ON audit_head "
        "BEGIN SELECT RAISE(ABORT, 'extgate audit head cannot be deleted'); END",
        "CREATE TRIGGER IF NOT EXISTS audit_head_forward BEFORE UPDATE ON audit_head "
        "WHEN NEW.size < OLD.size OR NEW.id <> OLD.id "
        "BEGIN SELECT RAISE(ABORT, 'extgate audit head may only move forward'); END",
    ]
    return stmts


def guard_statements(dialect: str) -> list[str]:
    """The v1 guards (`audit_record`, `audit_head`, `audit_checkpoint`, `audit_key`)."""
    if dialect == "postgresql":
        return _pg_guard_statements()
    if dialect == "sqlite":
        return _sqlite_guard_statements()
    raise ValueError(f"unsupported dialect {dialect!r}")


def guard_statements_v2(dialect: str) -> list[str]:
    """The guards of the v2 tables (`audit_blob`): no UPDATE, DELETE or TRUNCATE."""
    if dialect == "postgresql":
        return [*_PG_FUNCTIONS[:1], *(s for t in APPEND_ONLY_TABLES_V2 for s in _pg_table_guards(t))]
    if dialect == "sqlite":
        return [s for t in APPEND_ONLY_TABLES_V2 for s in _sqlite_table_guards(t)]
    raise ValueError(f"unsupported dialect {dialect!r}")


def create_audit_schema_v1(conn: Connection) -> None:
    """Create the audit tables, guards and head row on `conn` (inside the caller's transaction).

    Idempotent. Called by alembic revision `0002_audit`; do not change its effect, add a
    `..._v2` step for later schema changes.
    """
    metadata.create_all(conn, tables=list(_V1_TABLES), checkfirst=True)
    for stmt in guard_statements(conn.dialect.name):
        conn.execute(sa.text(stmt))  # text(): "%" in PL/pgSQL is not a driver placeholder
    exists = conn.execute(sa.select(audit_head.c.id).where(audit_head.c.id == 1)).first()
    if exists is None:
        conn.execute(audit_head.insert().values(id=1, size=0, frontier=b"", updated_at=0))


def drop_audit_schema_v1(conn: Connection) -> None:
    """Drop the audit tables and guard functions (alembic downgrade of `0002_audit`)."""
    metadata.drop_all(conn, tables=list(_V1_TABLES), checkfirst=True)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("DROP FUNCTION IF EXISTS extgate_audit_refuse()")
        conn.exec_driver_sql("DROP FUNCTION IF EXISTS extgate_audit_head_forward()")


def create_audit_schema_v2(conn: Connection) -> None:
    """Add `audit_blob` (content-addressed record attachments) and its append-only guards.

    Idempotent. Called by alembic revision `0004_audit_blob`; frozen like v1."""
    metadata.create_all(conn, tables=[audit_blob], checkfirst=True)
    for stmt in guard_statements_v2(conn.dialect.name):
        conn.execute(sa.text(stmt))


def drop_audit_schema_v2(conn: Connection) -> None:
    """Drop `audit_blob` (alembic downgrade of `0004_audit_blob`)."""
    metadata.drop_all(conn, tables=[audit_blob], checkfirst=True)


def create_schema(engine: Engine) -> None:
    """Create the audit schema outside alembic (tests, tools); same DDL as the migrations."""
    with engine.begin() as conn:
        create_audit_schema_v1(conn)
        create_audit_schema_v2(conn)


# Least privilege for the application role on PostgreSQL (documented; run by an operator).
# The tables are owned by a NOLOGIN role so the application cannot ALTER/DISABLE TRIGGER or
# DROP them; the application can only read and append, and move the head forward.
POSTGRES_ROLE_SQL = """\
-- run as a superuser after `extgate db upgrade`
CREATE ROLE extgate_audit_owner NOLOGIN;
ALTER TABLE audit_record     OWNER TO extgate_audit_owner;
ALTER TABLE audit_head       OWNER TO extgate_audit_owner;
ALTER TABLE audit_checkpoint OWNER TO extgate_audit_owner;
ALTER TABLE audit_key        OWNER TO extgate_audit_owner;
ALTER TABLE audit_blob       OWNER TO extgate_audit_owner;
REVOKE ALL ON audit_record, audit_head, audit_checkpoint, audit_key, audit_blob FROM PUBLIC;
-- the gateway's login role (here: extgate_app) may only read and append
GRANT SELECT, INSERT ON audit_record, audit_checkpoint, audit_key, audit_blob TO extgate_app;
GRANT SELECT, UPDATE (size, frontier, updated_at) ON audit_head TO extgate_app;
-- auditors: read only
CREATE ROLE extgate_auditor NOLOGIN;
GRANT SELECT ON audit_record, audit_head, audit_checkpoint, audit_key, audit_blob TO extgate_auditor;
"""
