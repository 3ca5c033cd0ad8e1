"""Registry tables: extensions, versions, bundles, tenant installs, config and secrets.

Every tenant-owned row carries `tenant_id`, and every query on them filters by it
(see `service.registry.installs`). Ids are random UUID strings so they reveal nothing
about volume or order.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend: SQLite drops the offset, so restore it on load."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, **kw)


class Extension(SQLModel, table=True):
    __tablename__ = "extension"
    __table_args__ = (UniqueConstraint("publisher", "name", name="uq_extension_publisher_name"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    publisher: str = Field(max_length=200)
    name: str = Field(max_length=200)
    slug: str = Field(max_length=401, unique=True, index=True)
    created_at: datetime = _ts()


class ExtensionVersion(SQLModel, table=True):
    __tablename__ = "extension_version"
    __table_args__ = (UniqueConstraint("extension_id", "version", name="uq_version_extension_version"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    extension_id: str = Field(foreign_key="extension.id", index=True, max_length=36)
    version: str = Field(max_length=128)
    runtime: str = Field(max_length=64)
    manifest: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    api_endpoints: list[dict[str, str]] = Field(sa_column=Column(JSON, nullable=False))
    capabilities: list[str] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts()


class Bundle(SQLModel, table=True):
    __tablename__ = "bundle"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    # One bundle per version: republishing a version with another hash is refused.
    version_id: str = Field(foreign_key="extension_version.id", unique=True, max_length=36)
    content_hash: str = Field(max_length=71, index=True)
    size_bytes: int
    archive_format: str = Field(max_length=16)
    signature: str | None = Field(default=None, max_length=200)
    signer_key_id: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts()


class Install(SQLModel, table=True):
    __tablename__ = "tenant_install"
    __table_args__ = (
        UniqueConstraint("tenant_id", "extension_id", name="uq_install_tenant_extension"),
        Index("ix_install_tenant", "tenant_id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    tenant_id: str = Field(max_length=64)
    extension_id: str = Field(foreign_key="extension.id", max_length=36)
    version_id: str = Field(foreign_key="extension_version.id", max_length=36)
    granted_capabilities: list[str] = Field(sa_column=Column(JSON, nullable=False))
    egress_allowlist: list[str] = Field(sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    status: str = Field(default="enabled", max_length=16)  # enabled | disabled | pending
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class InstallConfig(SQLModel, table=True):
    __tablename__ = "tenant_install_config"

    install_id: str = Field(foreign_key="tenant_install.id", primary_key=True, max_length=36)
    tenant_id: str = Field(max_length=64, index=True)
    values: dict[str, str] = Field(sa_column=Column(JSON, nullable=False))
    version: str = Field(default_factory=new_id, max_length=36)
    # Monotonic counter for compare-and-set writes (no lost updates across replicas).
    revision: int = 1
    updated_at: datetime = _ts()


class InstallSecrets(SQLModel, table=True):
    __tablename__ = "tenant_install_secrets"

    install_id: str = Field(foreign_key="tenant_install.id", primary_key=True, max_length=36)
    tenant_id: str = Field(max_length=64, index=True)
    envelope: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    key_names: list[str] = Field(sa_column=Column(JSON, nullable=False))
    version: str = Field(default_factory=new_id, max_length=36)
    key_id: str = Field(max_length=64)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revision: int = 1
    updated_at: datetime = _ts()
