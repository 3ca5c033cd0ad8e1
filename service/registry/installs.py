"""Tenant installs: create, enable/disable, upgrade, remove, and resolve the active one.

Every function takes the tenant explicitly and filters by it, so an install id from
another tenant is simply "not found" — never "forbidden", which would confirm it exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from runner.contract.capabilities import ALWAYS_GRANTED, UnknownCapabilityError, normalize_capabilities
from runner.storage.sql import kv_entries
from service.db.models import (
    Bundle,
    Extension,
    ExtensionVersion,
    Install,
    InstallConfig,
    InstallSecrets,
    utcnow,
)
from service.errors import Conflict, InvalidInput, NotFound
from service.registry.publishing import get_extension, get_version

_HOST_RE = re.compile(
    r"^(\*\.)?(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
MAX_EGRESS_HOSTS = 64


def _normalize_caps(values: Iterable[str], field: str) -> list[str]:
    try:
        return normalize_capabilities(values)
    except UnknownCapabilityError as exc:
        raise InvalidInput(
            {"field": field, "unknown": exc.unknown, "message": str(exc)}, code="unknown_capabilities"
        ) from exc


def normalize_egress(hosts: Iterable[str]) -> list[str]:
    """Exact hostnames or `*.domain` (subdomains of domain); no schemes, ports, paths or IP literals."""
    cleaned: set[str] = set()
    bad: list[str] = []
    for host in hosts:
        h = str(host).strip().lower().rstrip(".")
        if not _HOST_RE.fullmatch(h) or h.replace(".", "").isdigit():
            bad.append(str(host))
        else:
            cleaned.add(h)
    if bad:
        raise InvalidInput(
            {"field": "egress_allowlist", "invalid": bad, "message": "entries must be hostnames or *.domain"},
            code="invalid_egress_host",
        )
    if len(cleaned) > MAX_EGRESS_HOSTS:
        raise InvalidInput(f"at most {MAX_EGRESS_HOSTS} egress hosts", code="invalid_egress_host")
    return sorted(cleaned)


def _check_grant_subset(granted: list[str], declared: Iterable[str]) -> None:
    extra = sorted(set(granted) - set(declared) - ALWAYS_GRANTED)
    if extra:
        raise InvalidInput(
            {
                "field": "granted_capabilities",
                "not_declared": extra,
                "message": "granted capabilities must be declared by the version: " + ", ".join(extra),
            },
            code="capabilities_not_declared",
        )


def get_install(session: Session, tenant_id: str, install_id: str) -> Install:
    install = session.exec(select(Install).where(Install.id == install_id, Install.tenant_id == tenant_id)).first()
    if install is None:
        raise NotFound("no such install for this tenant", code="install_not_found")
    return install


def list_installs(session: Session, tenant_id: str) -> list[Install]:
    return list(session.exec(select(Install).where(Install.tenant_id == tenant_id).order_by(Install.created_at)))  # type: ignore[arg-type]


def create_install(
    session: Session,
    tenant_id: str,
    extension_ref: str,
    *,
    version: str | None,
    granted_capabilities: Iterable[str],
    egress_allowlist: Iterable[str] = (),
    enabled: bool = True,
) -> Install:
    ext = get_extension(session, extension_ref)
    ver = get_version(session, ext, version)
    granted = _normalize_caps(granted_capabilities, "granted_capabilities")
    _check_grant_subset(granted, ver.capabilities)
    egress = normalize_egress(egress_allowlist)
    existing = session.exec(
        select(Install).where(Install.tenant_id == tenant_id, Install.extension_id == ext.id)
    ).first()
    if existing is not None:
        raise Conflict(
            {"message": f"{ext.slug} is already installed for this tenant", "install_id": existing.id},
            code="already_installed",
        )
    install = Install(
        tenant_id=tenant_id,
        extension_id=ext.id,
        version_id=ver.id,
        granted_capabilities=granted,
        egress_allowlist=egress,
        enabled=enabled,
        status="enabled" if enabled else "disabled",
    )
    session.add(install)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"{ext.slug} is already installed for this tenant", code="already_installed") from exc
    return install


def set_enabled(session: Session, tenant_id: str, install_id: str, enabled: bool) -> Install:
    install = get_install(session, tenant_id, install_id)
    install.enabled = enabled
    install.status = "enabled" if enabled else "disabled"
    install.updated_at = utcnow()
    session.add(install)
    return install


def update_install(
    session: Session,
    tenant_id: str,
    install_id: str,
    *,
    granted_capabilities: Iterable[str] | None = None,
    egress_allowlist: Iterable[str] | None = None,
) -> Install:
    install = get_install(session, tenant_id, install_id)
    if granted_capabilities is not None:
        granted = _normalize_caps(granted_capabilities, "granted_capabilities")
        ver = session.get(ExtensionVersion, install.version_id)
        assert ver is not None
        _check_grant_subset(granted, ver.capabilities)
        install.granted_capabilities = granted
    if egress_allowlist is not None:
        install.egress_allowlist = normalize_egress(egress_allowlist)
    install.updated_at = utcnow()
    session.add(install)
    return install


def upgrade_install(
    session: Session,
    tenant_id: str,
    install_id: str,
    *,
    to_version: str | None,
    approved_capabilities: Iterable[str] | None = None,
) -> Install:
    """Move an install to another version of its extension.

    If the target declares capabilities outside the current grant, the caller must pass
    `approved_capabilities` (the complete new grant): a version cannot widen itself.
    """
    install = get_install(session, tenant_id, install_id)
    ext = session.get(Extension, install.extension_id)
    assert ext is not None
    target = get_version(session, ext, to_version)
    if approved_capabilities is None:
        beyond = sorted(set(target.capabilities) - set(install.granted_capabilities) - ALWAYS_GRANTED)
        if beyond:
            raise Conflict(
                {
                    "message": "the target version requests capabilities beyond the current grant; "
                    "approve the new set explicitly",
                    "requested": beyond,
                    "current_grant": sorted(install.granted_capabilities),
                    "to_version": target.version,
                },
                code="capabilities_approval_required",
            )
        granted = sorted(set(install.granted_capabilities) & set(target.capabilities))
    else:
        granted = _normalize_caps(approved_capabilities, "approved_capabilities")
        _check_grant_subset(granted, target.capabilities)
    install.version_id = target.id
    install.granted_capabilities = granted
    install.updated_at = utcnow()
    session.add(install)
    return install


def remove_install(session: Session, tenant_id: str, install_id: str) -> None:
    install = get_install(session, tenant_id, install_id)
    session.execute(delete(InstallConfig).where(InstallConfig.install_id == install.id))  # type: ignore[arg-type]
    session.execute(delete(InstallSecrets).where(InstallSecrets.install_id == install.id))  # type: ignore[arg-type]
    # The extension's stored data belongs to this install alone (a reinstall gets a new id,
    # so it could never be read again): it goes with the install, in the same transaction.
    session.execute(delete(kv_entries).where(kv_entries.c.tenant_id == tenant_id,
                                             kv_entries.c.install_id == install.id))
    session.delete(install)


@dataclass(frozen=True)
class ActiveInstall:
    """Everything the gateway needs about one tenant's active install (no secret values)."""

    install: Install
    extension: Extension
    version: ExtensionVersion
    bundle: Bundle
    config: InstallConfig | None
    secrets: InstallSecrets | None


def resolve_active_install(session: Session, tenant_id: str, ref: str) -> ActiveInstall | None:
    """By install id, extension id or slug (case-insensitive), for this tenant, enabled only."""
    needle = ref.strip().lower()
    if not needle:
        return None
    row = session.exec(
        select(Install, Extension)
        .join(Extension, Extension.id == Install.extension_id)  # type: ignore[arg-type]
        .where(
            Install.tenant_id == tenant_id,
            Install.enabled == True,  # noqa: E712 - SQL expression
            Install.status == "enabled",
            (func.lower(Install.id) == needle) | (func.lower(Extension.id) == needle) | (Extension.slug == needle),
        )
    ).first()
    if row is None:
        return None
    install, ext = row
    version = session.get(ExtensionVersion, install.version_id)
    bundle = session.exec(select(Bundle).where(Bundle.version_id == install.version_id)).first()
    if version is None or bundle is None:
        return None
    return ActiveInstall(
        install=install,
        extension=ext,
        version=version,
        bundle=bundle,
        config=session.get(InstallConfig, install.id),
        secrets=session.get(InstallSecrets, install.id),
    )
