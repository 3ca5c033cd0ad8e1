"""Install lookups for the gateway, split around the audit record.

`find_install` returns only what authorization needs (no config, no secrets).
`load_material` runs after the decision is durably audited and returns the config map
and the sealed secret envelope, re-checking in the same query that the install is still
active on the version that was authorized. Both are single statements the gateway runs on
every request, so they are compiled once per dialect and executed on a pooled DBAPI
connection (`_Lookup`): the Core execution layer around them cost ~5x the query on SQLite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, select
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


class _Lookup:
    """One prebuilt single-row SELECT, compiled once per dialect and run on a pooled DBAPI
    connection (pool events such as PostgreSQL's pre-ping still apply; the pool rolls the
    connection back on return). Only bind parameters vary per call."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}

    def _sql_for(self, engine: Engine) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        key = engine.dialect.name
        hit = self._compiled.get(key)
        if hit is None:
            compiled = self.statement.compile(dialect=engine.dialect)
            order = tuple(compiled.positiontup) if compiled.positiontup is not None else None
            hit = self._compiled[key] = (str(compiled), order, dict(compiled.params))
        return hit

    def first(self, engine: Engine, params: dict[str, Any]) -> tuple[Any, ...] | None:
        sql, order, constants = self._sql_for(engine)
        values = {**constants, **params}
        bound: Any = tuple(values[name] for name in order) if order is not None else values
        dbapi = engine.raw_connection()
        try:
            cursor = dbapi.cursor()
            try:
                cursor.execute(sql, bound)
                row = cursor.fetchone()
            finally:
                cursor.close()
        finally:
            dbapi.close()  # back to the pool
        return tuple(row) if row is not None else None


def _json(value: Any) -> Any:
    """A JSON column as the driver returns it: text on SQLite, decoded on PostgreSQL."""
    return json.loads(value) if isinstance(value, str | bytes) else value


# Built once with bind parameters.
_FIND_BY_REF = _FIND.where(
    _I.tenant_id == bindparam("tenant_id"),
    _I.enabled == True,  # noqa: E712 - SQL expression
    _I.status == "enabled",
    (func.lower(_I.id) == bindparam("needle")) | (func.lower(_E.id) == bindparam("needle"))
    | (_E.slug == bindparam("needle")),
).limit(1)
_FIND_LOOKUP = _Lookup(_FIND_BY_REF)


def find_install(engine: Engine, tenant_id: str, ref: str) -> InstallInfo | None:
    """The tenant's active install by install id, extension id or slug (case-insensitive)."""
    needle = ref.strip().lower()
    if not needle or len(needle) > 401:
        return None
    row = _FIND_LOOKUP.first(engine, {"tenant_id": tenant_id, "needle": needle})
    if row is None:
        return None
    return InstallInfo(
        install_id=row[0], tenant_id=row[1], extension_id=row[2], slug=row[3], version_id=row[4],
        content_hash=row[5], api_endpoints=_json(row[6]), declared_capabilities=tuple(_json(row[7]) or ()),
        granted_capabilities=tuple(_json(row[8]) or ()), egress_allowlist=tuple(_json(row[9]) or ()),
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
_MATERIAL_LOOKUP = _Lookup(_MATERIAL_BY_ID)


def load_material(engine: Engine, info: InstallInfo) -> InstallMaterial:
    row = _MATERIAL_LOOKUP.first(engine, {"install_id": info.install_id, "tenant_id": info.tenant_id})
    if row is None or row[0] != info.version_id:
        raise InstallChanged(info.install_id)
    values = _json(row[1])
    values = values if isinstance(values, dict) else {}
    envelope = _json(row[3])
    return InstallMaterial(
        config={str(k): str(v) for k, v in values.items()},
        config_version=row[2],
        envelope=envelope if isinstance(envelope, dict) else None,
        secrets_version=row[4],
    )
