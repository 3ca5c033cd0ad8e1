"""Registry: extensions, versions, bundles, tenant installs, install config and secrets.

Revision ID: 0001_registry
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_registry"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "extension",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("publisher", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("slug", sa.String(401), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("publisher", "name", name="uq_extension_publisher_name"),
    )
    op.create_index("ix_extension_slug", "extension", ["slug"], unique=True)
    op.create_table(
        "extension_version",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("extension_id", sa.String(36), sa.ForeignKey("extension.id"), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("runtime", sa.String(64), nullable=False),
        sa.Column("manifest", sa.JSON, nullable=False),
        sa.Column("api_endpoints", sa.JSON, nullable=False),
        sa.Column("capabilities", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("extension_id", "version", name="uq_version_extension_version"),
    )
    op.create_index("ix_extension_version_extension_id", "extension_version", ["extension_id"])
    op.create_table(
        "bundle",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("version_id", sa.String(36), sa.ForeignKey("extension_version.id"), nullable=False),
        sa.Column("content_hash", sa.String(71), nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("archive_format", sa.String(16), nullable=False),
        sa.Column("signature", sa.String(200)),
        sa.Column("signer_key_id", sa.String(200)),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("version_id", name="uq_bundle_version"),
        sa.CheckConstraint("content_hash LIKE 'sha256:%'", name="ck_bundle_content_hash"),
    )
    op.create_index("ix_bundle_content_hash", "bundle", ["content_hash"])
    op.create_table(
        "tenant_install",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("extension_id", sa.String(36), sa.ForeignKey("extension.id"), nullable=False),
        sa.Column("version_id", sa.String(36), sa.ForeignKey("extension_version.id"), nullable=False),
        sa.Column("granted_capabilities", sa.JSON, nullable=False),
        sa.Column("egress_allowlist", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "extension_id", name="uq_install_tenant_extension"),
        sa.CheckConstraint("status IN ('enabled', 'disabled', 'pending')", name="ck_install_status"),
    )
    op.create_index("ix_install_tenant", "tenant_install", ["tenant_id"])
    op.create_table(
        "tenant_install_config",
        sa.Column("install_id", sa.String(36), sa.ForeignKey("tenant_install.id"), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("values", sa.JSON, nullable=False),
        sa.Column("version", sa.String(36), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_tenant_install_config_tenant_id", "tenant_install_config", ["tenant_id"])
    op.create_table(
        "tenant_install_secrets",
        sa.Column("install_id", sa.String(36), sa.ForeignKey("tenant_install.id"), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("envelope", sa.JSON, nullable=False),
        sa.Column("key_names", sa.JSON, nullable=False),
        sa.Column("version", sa.String(36), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_tenant_install_secrets_tenant_id", "tenant_install_secrets", ["tenant_id"])


def downgrade() -> None:
    for table in (
        "tenant_install_secrets",
        "tenant_install_config",
        "tenant_install",
        "bundle",
        "extension_version",
        "extension",
    ):
        op.drop_table(table)
