"""Install lifecycle: create, change grant/egress, enable/disable, upgrade, remove.

Each returns the install as stored after the change (a detached row), recorded in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from audit import actions
from service.commands.context import Caller, CommandContext
from service.db.models import Install
from service.registry import installs


def _resource(install_id: str) -> str:
    return f"install:{install_id}"


def create_install(
    ctx: CommandContext,
    caller: Caller,
    tenant_id: str,
    extension_ref: str,
    *,
    version: str | None,
    granted_capabilities: Iterable[str],
    egress_allowlist: Iterable[str] = (),
    enabled: bool = True,
) -> Install:
    with ctx.db.session() as session:
        row = installs.create_install(
            session, tenant_id, extension_ref, version=version, granted_capabilities=granted_capabilities,
            egress_allowlist=egress_allowlist, enabled=enabled,
        )
        session.flush()
        ctx.record_in(session, caller, actions.INSTALL_CREATE, tenant_id=tenant_id, resource=_resource(row.id),
                      details={"extension_id": row.extension_id, "version_id": row.version_id,
                               "granted_capabilities": list(row.granted_capabilities),
                               "egress_allowlist": list(row.egress_allowlist), "enabled": row.enabled})
        return row


def update_install(
    ctx: CommandContext,
    caller: Caller,
    tenant_id: str,
    install_id: str,
    *,
    granted_capabilities: Iterable[str] | None = None,
    egress_allowlist: Iterable[str] | None = None,
) -> Install:
    """Change the grant and/or the egress allowlist."""
    with ctx.db.session() as session:
        row = installs.update_install(
            session, tenant_id, install_id, granted_capabilities=granted_capabilities,
            egress_allowlist=egress_allowlist,
        )
        ctx.record_in(session, caller, actions.INSTALL_UPDATE, tenant_id=tenant_id, resource=_resource(install_id),
                      details={"granted_capabilities": list(row.granted_capabilities),
                               "egress_allowlist": list(row.egress_allowlist)})
        return row


def set_enabled(ctx: CommandContext, caller: Caller, tenant_id: str, install_id: str, enabled: bool) -> Install:
    with ctx.db.session() as session:
        row = installs.set_enabled(session, tenant_id, install_id, enabled)
        ctx.record_in(session, caller, actions.INSTALL_ENABLE if enabled else actions.INSTALL_DISABLE,
                      tenant_id=tenant_id, resource=_resource(install_id))
        return row


def upgrade_install(
    ctx: CommandContext,
    caller: Caller,
    tenant_id: str,
    install_id: str,
    *,
    to_version: str | None,
    approved_capabilities: Iterable[str] | None = None,
) -> Install:
    with ctx.db.session() as session:
        row = installs.upgrade_install(
            session, tenant_id, install_id, to_version=to_version, approved_capabilities=approved_capabilities
        )
        ctx.record_in(session, caller, actions.INSTALL_UPGRADE, tenant_id=tenant_id, resource=_resource(install_id),
                      details={"version_id": row.version_id, "granted_capabilities": list(row.granted_capabilities),
                               "approved": approved_capabilities is not None})
        return row


def remove_install(ctx: CommandContext, caller: Caller, tenant_id: str, install_id: str) -> None:
    """Remove the install with its config, secrets and stored data."""
    with ctx.db.session() as session:
        installs.remove_install(session, tenant_id, install_id)
        ctx.record_in(session, caller, actions.INSTALL_REMOVE, tenant_id=tenant_id, resource=_resource(install_id))
