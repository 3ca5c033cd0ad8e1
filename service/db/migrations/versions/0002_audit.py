"""Audit log: records, head, checkpoints, keys, and append-only guards.

Revision ID: 0002_audit
Revises: 0001_registry

The DDL lives in `audit.schema` (one source of truth, shared with `audit.schema.create_schema`
used by tests and tools); this revision calls its frozen v1 functions.

Guards created here:
- PostgreSQL: BEFORE UPDATE OR DELETE row triggers and BEFORE TRUNCATE statement triggers on
  `audit_record`, `audit_checkpoint`, `audit_key` (and no DELETE/TRUNCATE, forward-only
  UPDATE on `audit_head`), all `ENABLE ALWAYS` so `session_replication_role = replica`
  does not skip them.
- SQLite: `RAISE(ABORT)` triggers refusing UPDATE and DELETE.

Triggers stop mistakes, not a superuser or the table owner (who can disable them); the
Merkle tree plus signed checkpoints exported outside the database is what detects that.

Recommended PostgreSQL privileges (run by an operator after upgrading; see docs/audit.md).
The tables belong to a NOLOGIN owner, so the application role cannot ALTER/DISABLE TRIGGER,
DROP or TRUNCATE them, and may only read and append:

    CREATE ROLE extgate_audit_owner NOLOGIN;
    ALTER TABLE audit_record     OWNER TO extgate_audit_owner;
    ALTER TABLE audit_head       OWNER TO extgate_audit_owner;
    ALTER TABLE audit_checkpoint OWNER TO extgate_audit_owner;
    ALTER TABLE audit_key        OWNER TO extgate_audit_owner;
    REVOKE ALL ON audit_record, audit_head, audit_checkpoint, audit_key FROM PUBLIC;
    GRANT SELECT, INSERT ON audit_record, audit_checkpoint, audit_key TO extgate_app;
    GRANT SELECT, UPDATE (size, frontier, updated_at) ON audit_head TO extgate_app;
"""

from alembic import op

from audit.schema import create_audit_schema_v1, drop_audit_schema_v1

revision = "0002_audit"
down_revision = "0001_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_schema_v1(op.get_bind())


def downgrade() -> None:
    drop_audit_schema_v1(op.get_bind())
