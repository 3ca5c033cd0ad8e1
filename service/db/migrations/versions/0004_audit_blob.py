"""Audit log: content-addressed blobs referenced by records (`audit_blob`).

Revision ID: 0004_audit_blob
Revises: 0003_runner_kv

A record names a blob by its digest inside its hashed bytes (a policy decision names the
entity snapshot it was decided on), so a blob is verified by hashing it:
sha256(body) == digest. Identical blobs are stored once. The DDL lives in `audit.schema`
(`create_audit_schema_v2`, frozen like v1).

Guards: as for the other audit tables, PostgreSQL row triggers refuse UPDATE/DELETE and a
statement trigger refuses TRUNCATE (all `ENABLE ALWAYS`); SQLite `RAISE(ABORT)` triggers
refuse UPDATE and DELETE. Privileges (see docs/audit.md / `audit.schema.POSTGRES_ROLE_SQL`):

    ALTER TABLE audit_blob OWNER TO extgate_audit_owner;
    REVOKE ALL ON audit_blob FROM PUBLIC;
    GRANT SELECT, INSERT ON audit_blob TO extgate_app;
    GRANT SELECT ON audit_blob TO extgate_auditor;
"""

from alembic import op

from audit.schema import create_audit_schema_v2, drop_audit_schema_v2

revision = "0004_audit_blob"
down_revision = "0003_runner_kv"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_schema_v2(op.get_bind())


def downgrade() -> None:
    drop_audit_schema_v2(op.get_bind())
