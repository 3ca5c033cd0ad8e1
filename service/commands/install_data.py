"""An install's config and secrets: replace the config, merge or rotate the secrets.

Records carry key names and versions only: values (config can be sensitive too) never
reach the audit log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from audit import actions
from service.commands.context import Caller, CommandContext
from service.db.models import InstallConfig, InstallSecrets
from service.registry import install_config, install_secrets


def set_config(
    ctx: CommandContext,
    caller: Caller,
    tenant_id: str,
    install_id: str,
    values: Any,
    *,
    expected_version: str | None = None,
) -> InstallConfig:
    def record(session: Session, row: InstallConfig | None) -> None:
        ctx.record_in(session, caller, actions.CONFIG_WRITE, tenant_id=tenant_id, resource=f"install:{install_id}",
                      details={"config_version": row.version if row else None,
                               "keys": sorted(row.values) if row else []})

    return install_config.set_config(ctx.db, tenant_id, install_id, values, expected_version=expected_version,
                                     on_write=record)


def set_secrets(
    ctx: CommandContext,
    caller: Caller,
    tenant_id: str,
    install_id: str,
    changes: Any,
    *,
    expires_at: datetime | None = install_secrets.UNSET,
) -> InstallSecrets | None:
    """Merge `changes` (None deletes a key); None when no secret is left."""
    keys = changes if isinstance(changes, dict) else {}

    def record(session: Session, row: InstallSecrets | None) -> None:
        ctx.record_in(session, caller, actions.SECRETS_WRITE, tenant_id=tenant_id, resource=f"install:{install_id}",
                      details={"secrets_version": row.version if row else None,
                               "set": sorted(str(k) for k, v in keys.items() if v is not None),
                               "deleted": sorted(str(k) for k, v in keys.items() if v is None)})

    return install_secrets.set_secrets(ctx.db, ctx.container.keyring, tenant_id, install_id, changes,
                                       expires_at=expires_at, on_write=record)


def rotate_secrets(ctx: CommandContext, caller: Caller, tenant_id: str, install_id: str) -> InstallSecrets | None:
    """Re-seal under the keyring's active key (new version id); None when there are none."""

    def record(session: Session, row: InstallSecrets | None) -> None:
        ctx.record_in(session, caller, actions.SECRETS_ROTATE, tenant_id=tenant_id, resource=f"install:{install_id}",
                      details={"secrets_version": row.version if row else None,
                               "key_id": row.key_id if row else None})

    return install_secrets.rotate_secrets(ctx.db, ctx.container.keyring, tenant_id, install_id, on_write=record)


def rotate_all(ctx: CommandContext, caller: Caller) -> list[tuple[str, str]]:
    """Re-seal every install not sealed with the active key, each in its own recorded
    transaction. Returns the (tenant, install) pairs rotated."""
    rotated = []
    for tenant_id, install_id in install_secrets.stale_installs(ctx.db, ctx.container.keyring):
        if rotate_secrets(ctx, caller, tenant_id, install_id) is not None:
            rotated.append((tenant_id, install_id))
    return rotated
