"""Publishing an extension version to the (global) registry."""

from __future__ import annotations

from sqlmodel import Session

from audit import actions
from service.commands.context import Caller, CommandContext
from service.registry import publishing
from service.registry.bundles import LoadedBundle


def publish(
    ctx: CommandContext, caller: Caller, bundle: LoadedBundle, *, signature: str | None
) -> publishing.PublishResult:
    """Validate, precompile, store and register a bundle; `created` is False when these exact
    bytes were published before (nothing changes and nothing is recorded then)."""
    c = ctx.container

    def record(session: Session, result: publishing.PublishResult) -> None:
        ctx.record_in(session, caller, actions.EXTENSION_PUBLISH, tenant_id=None,
                      resource=f"extension:{result.slug}@{result.version}",
                      details={"content_hash": result.content_hash, "signer_key_id": result.signer_key_id,
                               "size_bytes": result.size_bytes})

    return publishing.publish_bundle(
        ctx.db, c.bundle_store, bundle, signature=signature, signature_policy=c.signature_policy,
        validate_component=c.validate_component, on_created=record,
    )
