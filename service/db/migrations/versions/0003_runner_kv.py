"""Runner key-value storage (the `storage` host interface), install-scoped with revisions.

Revision ID: 0003_runner_kv
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_runner_kv"
down_revision = "0002_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A runner that shares an embedded SQLite file may have created the table already
    # (runner.storage.sql creates it there when it starts first): same definition, keep it.
    if sa.inspect(op.get_bind()).has_table("extgate_kv_entries"):
        return
    # Mirrors runner.storage.sql.kv_entries; the drift test compares the two.
    op.create_table(
        "extgate_kv_entries",
        sa.Column("tenant_id", sa.String(255), primary_key=True),
        sa.Column("install_id", sa.String(255), primary_key=True),
        sa.Column("namespace", sa.String(128), primary_key=True),
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("extgate_kv_entries")
