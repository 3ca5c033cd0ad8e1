"""Install lookups for the gateway, split around the audit record.

`find_install` returns only what authorization needs (no config, no secrets).
`load_material` runs after the decision is durably audited and returns the config map
and the sealed secret envelope, re-checking in the same query that the install is still
active on the version that was authorized. Both are single Core queries: the gateway
runs them on every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.engine import Engine

from service.db.models import Bundle, Extension, ExtensionVersion, Install, InstallConfig, InstallSecrets

_I = Install.__table__.c  # type: ignore[attr-defined]
_E = Extension.__table__.c  # type: ignore[attr-defined]
_V = ExtensionVersion.__table__.c  # type: ignore[attr-defined]
_B = Bundle.__table__.c  # type: ignore[attr-defined]
_C = InstallConfig.__table__.c  # type: ignore[attr-defined]
_S = InstallSecrets.__table__.c  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class InstallInfo:
    install_id: str
    tenant_id: str
    extension_id: str
    slug: str
    version_id: str
    content_hash: str
    api_endpoints: Any
    declared_capabilities: tuple[str, ...]
    granted_capabilities: tuple[str, ...]
    egress_allowlist: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InstallMaterial:
    config: dict[str, str]
    config_version: str | None
    envelope: dict[str, Any] | None
    secrets_version: str | None


_FIND = (
    select(
        _I.id, _I.tenant_id, _I.extension_id, _E.slug, _I.version_id, _B.content_hash,
        _V.api_endpoints, _V.capabilities, _I.granted_capabilities, _I.egress_allowlist,
    )
    .select_from(Install.__table__)  # type: ignore[attr-defined]
    .join(Extension.__table__, _E.id == _I.extension_id)  # type: ignore[attr-defined]
    .join(ExtensionVersion.__table__, _V.id == _I.version_id)  # type: ignore[attr-defined]
    .join(Bundle.__table__, _B.version_id == _I.version_id)  # type: ignore[attr-defined]
)


# Built once with bind parameters: SQLAlchemy then reuses the compiled form (building the
# statement per call cost ~4x the query itself on SQLite).
_FIND_BY_REF = _FIND.where(
    _I.tenant_id == bindparam("tenant_id"),
    _I.enabled == True,  # noqa: E712 - SQL expression
    _I.status == "enabled",
    (func.lower(_I.id) == bindparam("needle")) | (func.lower(_E.id) == bindparam("needle"))
    | (_E.slug == bindparam("needle")),
).limit(1)


def find_install(engine: Engine, tenant_id: str, ref: str) -> InstallInfo | None:
    """The tenant's active install by install id, extension id or slug (case-insensitive)."""
    needle = ref.strip().lower()
    if not needle or len(needle) > 401:
        return None
    with engine.connect() as conn:
        row = conn.execute(_FIND_BY_REF, {"tenant_id": tenant_id, "needle": needle}).first()
    if row is None:
        return None
    return InstallInfo(
        install_id=row[0], tenant_id=row[1], extension_id=row[2], slug=row[3], version_id=row[4],
        content_hash=row[5], api_endpoints=row[6], declared_capabilities=tuple(row[7] or ()),
        granted_capabilities=tuple(row[8] or ()), egress_allowlist=tuple(row[9] or ()),
    )


_MATERIAL = (
    select(_I.version_id, _C["values"], _C.version, _S.envelope, _S.version)
    .select_from(Install.__table__)  # type: ignore[attr-defined]
    .outerjoin(InstallConfig.__table__, and_(_C.install_id == _I.id, _C.tenant_id == _I.tenant_id))  # type: ignore[attr-defined]
    .outerjoin(InstallSecrets.__table__, and_(_S.install_id == _I.id, _S.tenant_id == _I.tenant_id))  # type: ignore[attr-defined]
)


class InstallChanged(Exception):
    """The install was disabled, removed or moved to another version since authorization."""


_MATERIAL_BY_ID = _MATERIAL.where(
    _I.id == bindparam("install_id"),
    _I.tenant_id == bindparam("tenant_id"),
    _I.enabled == True,  # noqa: E712
    _I.status == "enabled",
)


def load_material(engine: Engine, info: InstallInfo) -> InstallMaterial:
    with engine.connect() as conn:
        row = conn.execute(_MATERIAL_BY_ID, {"install_id": info.install_id, "tenant_id": info.tenant_id}).first()
    if row is None or row[0] != info.version_id:
        raise InstallChanged(info.install_id)
    values = row[1] if isinstance(row[1], dict) else {}
    return InstallMaterial(
        config={str(k): str(v) for k, v in values.items()},
        config_version=row[2],
        envelope=row[3] if isinstance(row[3], dict) else None,
        secrets_version=row[4],
    )
