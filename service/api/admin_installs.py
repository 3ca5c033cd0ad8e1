"""Admin API: a tenant's installs, their config and their secrets.

Changes run through `service.commands` (the change and its audit record commit together).
The tenant comes from the path and every call is decided by the Cedar admin policies
against the token (by default: writes by the tenant's own admins only, reads also by
platform admins). Install ids are looked up within that tenant only, so another tenant's
install id answers 404 and nothing is changed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from service.api.deps import Admin
from service.api.schemas import (
    ConfigOut,
    ConfigWrite,
    InstallCreate,
    InstallOut,
    InstallPatch,
    InstallUpgrade,
    SecretsOut,
    SecretsWrite,
    error_responses,
)
from service.auth.tokens import TENANT_ID_RE
from service.authz import AdminAction
from service.commands import install_data
from service.commands import installs as install_commands
from service.registry import install_config, install_secrets, installs

router = APIRouter(prefix="/api/admin/tenants/{tenant_id}/installs", tags=["admin: installs"])

TenantId = Annotated[str, Path(pattern=TENANT_ID_RE.pattern, max_length=64)]
InstallId = Annotated[str, Path(min_length=1, max_length=64)]
_ERR = error_responses(401, 403, 404, 422)


@router.get("", response_model=list[InstallOut], summary="List the tenant's installs", responses=_ERR)
def list_installs(tenant_id: TenantId, admin: Admin) -> list[InstallOut]:
    admin.require(AdminAction.INSTALL_READ, tenant_id)
    with admin.services.db.session() as session:
        return [InstallOut.of(i) for i in installs.list_installs(session, tenant_id)]


@router.post(
    "",
    response_model=InstallOut,
    status_code=201,
    summary="Install an extension for the tenant",
    responses={
        201: {"description": "the new install", "links": {
            # publish → install → call: the new install id addresses the extension in the gateway.
            "CallInstalledExtension": {
                "operationId": "call_extension_get",
                "parameters": {"extension": "$response.body#/id"},
                "description": "call the new install through the gateway",
            },
            "GetInstall": {
                "operationId": "get_install",
                "parameters": {"tenant_id": "$response.body#/tenant_id", "install_id": "$response.body#/id"},
            },
        }},
        **error_responses(401, 403, 404, 409, 422),
    },
)
def create_install(tenant_id: TenantId, body: InstallCreate, admin: Admin) -> InstallOut:
    admin.require(AdminAction.INSTALL_MANAGE, tenant_id)
    row = install_commands.create_install(
        admin.commands, admin.caller, tenant_id, body.extension, version=body.version,
        granted_capabilities=body.granted_capabilities, egress_allowlist=body.egress_allowlist, enabled=body.enabled,
    )
    return InstallOut.of(row)


@router.get("/{install_id}", response_model=InstallOut, summary="One install", responses=_ERR,
            operation_id="get_install")
def get_install(tenant_id: TenantId, install_id: InstallId, admin: Admin) -> InstallOut:
    admin.require(AdminAction.INSTALL_READ, tenant_id)
    with admin.services.db.session() as session:
        return InstallOut.of(installs.get_install(session, tenant_id, install_id))


@router.patch(
    "/{install_id}", response_model=InstallOut, summary="Change the grant or the egress allowlist", responses=_ERR
)
def patch_install(tenant_id: TenantId, install_id: InstallId, body: InstallPatch, admin: Admin) -> InstallOut:
    admin.require(AdminAction.INSTALL_MANAGE, tenant_id)
    row = install_commands.update_install(
        admin.commands, admin.caller, tenant_id, install_id, granted_capabilities=body.granted_capabilities,
        egress_allowlist=body.egress_allowlist,
    )
    return InstallOut.of(row)


@router.delete(
    "/{install_id}", status_code=204, summary="Uninstall (config and secrets are deleted too)", responses=_ERR
)
def remove_install(tenant_id: TenantId, install_id: InstallId, admin: Admin) -> Response:
    admin.require(AdminAction.INSTALL_MANAGE, tenant_id)
    install_commands.remove_install(admin.commands, admin.caller, tenant_id, install_id)
    return Response(status_code=204)


def _set_enabled(tenant_id: str, install_id: str, admin: Admin, enabled: bool) -> InstallOut:
    admin.require(AdminAction.INSTALL_MANAGE, tenant_id)
    return InstallOut.of(install_commands.set_enabled(admin.commands, admin.caller, tenant_id, install_id, enabled))


@router.post("/{install_id}/enable", response_model=InstallOut, summary="Enable", responses=_ERR)
def enable(tenant_id: TenantId, install_id: InstallId, admin: Admin) -> InstallOut:
    return _set_enabled(tenant_id, install_id, admin, True)


@router.post("/{install_id}/disable", response_model=InstallOut, summary="Disable", responses=_ERR)
def disable(tenant_id: TenantId, install_id: InstallId, admin: Admin) -> InstallOut:
    return _set_enabled(tenant_id, install_id, admin, False)


@router.post(
    "/{install_id}/upgrade",
    response_model=InstallOut,
    summary="Move to another version (re-approval when it asks for more capabilities)",
    responses=error_responses(401, 403, 404, 409, 422),
)
def upgrade(tenant_id: TenantId, install_id: InstallId, body: InstallUpgrade, admin: Admin) -> InstallOut:
    admin.require(AdminAction.INSTALL_MANAGE, tenant_id)
    row = install_commands.upgrade_install(
        admin.commands, admin.caller, tenant_id, install_id, to_version=body.version,
        approved_capabilities=body.approved_capabilities,
    )
    return InstallOut.of(row)


@router.get("/{install_id}/config", response_model=ConfigOut, summary="Current config and its version", responses=_ERR)
def get_config(tenant_id: TenantId, install_id: InstallId, admin: Admin) -> ConfigOut:
    admin.require(AdminAction.INSTALL_READ, tenant_id)
    with admin.services.db.session() as session:
        return ConfigOut.of(install_id, install_config.get_config(session, tenant_id, install_id))


@router.put(
    "/{install_id}/config",
    response_model=ConfigOut,
    summary="Replace the config (new version id)",
    responses=error_responses(401, 403, 404, 409, 422),
)
def put_config(tenant_id: TenantId, install_id: InstallId, body: ConfigWrite, admin: Admin) -> ConfigOut:
    admin.require(AdminAction.CONFIG_WRITE, tenant_id)
    row = install_data.set_config(
        admin.commands, admin.caller, tenant_id, install_id, body.values, expected_version=body.expected_version
    )
    return ConfigOut.of(install_id, row)


@router.get(
    "/{install_id}/secrets",
    response_model=SecretsOut,
    summary="Secret key names and version (values are never returned)",
    responses=_ERR,
)
def get_secrets(tenant_id: TenantId, install_id: InstallId, admin: Admin) -> SecretsOut:
    admin.require(AdminAction.INSTALL_READ, tenant_id)
    with admin.services.db.session() as session:
        return SecretsOut.of(install_id, install_secrets.get_secrets_meta(session, tenant_id, install_id))


@router.patch(
    "/{install_id}/secrets",
    response_model=SecretsOut,
    summary="Merge secrets (null deletes a key); sealed, new version id",
    responses=error_responses(401, 403, 404, 409, 422),
)
def patch_secrets(tenant_id: TenantId, install_id: InstallId, body: SecretsWrite, admin: Admin) -> SecretsOut:
    admin.require(AdminAction.SECRETS_WRITE, tenant_id)
    kwargs = {"expires_at": body.expires_at} if "expires_at" in body.model_fields_set else {}
    row = install_data.set_secrets(admin.commands, admin.caller, tenant_id, install_id, body.secrets, **kwargs)
    return SecretsOut.of(install_id, row)


@router.post(
    "/{install_id}/secrets/rotate",
    response_model=SecretsOut,
    summary="Re-seal with the newest key (new version id)",
    responses=_ERR,
)
def rotate_secrets(tenant_id: TenantId, install_id: InstallId, admin: Admin) -> SecretsOut:
    admin.require(AdminAction.SECRETS_WRITE, tenant_id)
    row = install_data.rotate_secrets(admin.commands, admin.caller, tenant_id, install_id)
    return SecretsOut.of(install_id, row)
