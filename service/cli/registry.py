"""`extgate ext ...` and `extgate install ...`: the registry from the command line.

Changes go through the same commands (`service.commands`) as the admin API, directly
against the database: each change commits together with its audit record (actor
`cli:<os account>`), or not at all. They are an operator's tool, run where the service's
configuration lives.
"""

from __future__ import annotations

import base64
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runner.contract.bundle_store import content_hash_of
from service.api.schemas import ConfigOut, InstallOut, SecretsOut
from service.cli.common import EXIT_USAGE, cli_caller, emit, fail, read_json_arg, services
from service.commands import CommandContext, extensions, install_data
from service.commands import installs as install_commands
from service.registry import install_config, install_secrets, installs, publishing
from service.registry.bundles import BundleError, BundleLimits, load_bundle_path, pack_directory
from service.registry.signing import generate_keypair, sign_content_hash

ext_app = typer.Typer(help="Publish and inspect extensions.", no_args_is_help=True)
install_app = typer.Typer(help="Manage tenant installs.", no_args_is_help=True)
config_app = typer.Typer(help="Install config (string map, full replace).", no_args_is_help=True)
secrets_app = typer.Typer(help="Install secrets (sealed; values never printed).", no_args_is_help=True)
install_app.add_typer(config_app, name="config")
install_app.add_typer(secrets_app, name="secrets")

Tenant = Annotated[str, typer.Option("--tenant", "-t", help="tenant id")]


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            fail("invalid_argument", f"{what} must look like KEY=VALUE (got {key!r})", EXIT_USAGE)
        out[key] = value
    return out


# ext -------------------------------------------------------------------------------------


@ext_app.command("publish")
def ext_publish(
    path: Annotated[Path, typer.Argument(help="bundle directory, .tar.zst or .tar.gz")],
    signature: Annotated[str | None, typer.Option(help="base64 Ed25519 signature of the content hash")] = None,
    signature_file: Annotated[Path | None, typer.Option(help="file holding the base64 signature")] = None,
) -> None:
    """Validate, precompile and publish a bundle; prints ids, version and content hash."""
    if signature_file is not None:
        signature = signature_file.read_text().strip()
    with services(mutating=True) as c:
        try:
            bundle = load_bundle_path(path, limits=BundleLimits(max_archive_bytes=c.settings.max_bundle_bytes))
        except BundleError as exc:
            fail(exc.code, {k: v for k, v in exc.to_dict().items() if k != "error"})
        result = extensions.publish(CommandContext(c), cli_caller(), bundle, signature=signature)
        emit(result.as_dict())


@ext_app.command("list")
def ext_list() -> None:
    """All published extensions and their versions."""
    with services(validate_component=None) as c, c.db.session() as session:
        emit(
            [
                {"id": e.id, "slug": e.slug, "versions": [v.version for v in versions]}
                for e, versions in publishing.list_extensions(session)
            ]
        )


@ext_app.command("keygen")
def ext_keygen(
    out: Annotated[Path, typer.Option(help="where to write the private key (0600)")],
) -> None:
    """Create an Ed25519 publisher key pair; prints the public key to configure as trusted."""
    private_b64, public_b64 = generate_keypair()
    out.write_text(private_b64 + "\n")
    out.chmod(0o600)
    emit({"private_key_file": str(out), "public_key": public_b64})


@ext_app.command("sign")
def ext_sign(
    archive: Annotated[Path, typer.Argument(help="the bundle directory or .tar.zst/.tar.gz archive to be published")],
    key: Annotated[Path, typer.Option(help="private key file from `extgate ext keygen`")],
) -> None:
    """Sign an archive's content hash; prints the signature for `ext publish --signature`."""
    # A directory is published as its deterministic .tar.zst, so sign that archive's hash.
    data = pack_directory(archive) if archive.is_dir() else archive.read_bytes()
    content_hash = content_hash_of(data)
    private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(key.read_text().strip()))
    emit({"content_hash": content_hash, "signature": sign_content_hash(content_hash, private)})


# install ---------------------------------------------------------------------------------


@install_app.command("create")
def install_create(
    tenant: Tenant,
    extension: Annotated[str, typer.Argument(help="extension id or slug publisher.name")],
    version: Annotated[str | None, typer.Option(help="SemVer (default: latest)")] = None,
    grant: Annotated[list[str] | None, typer.Option("--grant", help="capability to grant (repeat)")] = None,
    grant_declared: Annotated[bool, typer.Option(help="grant everything the version declares")] = False,
    egress: Annotated[list[str] | None, typer.Option("--egress", help="host or *.domain http.fetch may reach")] = None,
    disabled: Annotated[bool, typer.Option(help="create disabled")] = False,
) -> None:
    """Install an extension for a tenant with an explicit capability grant."""
    with services(mutating=True, validate_component=None) as c:
        caps = list(grant or [])
        if grant_declared:
            with c.db.session() as session:
                ext = publishing.get_extension(session, extension)
                caps += publishing.get_version(session, ext, version).capabilities
        row = install_commands.create_install(
            CommandContext(c), cli_caller(), tenant, extension, version=version, granted_capabilities=caps,
            egress_allowlist=egress or [], enabled=not disabled,
        )
        emit(InstallOut.of(row).model_dump(mode="json"))


@install_app.command("list")
def install_list(tenant: Tenant) -> None:
    """The tenant's installs."""
    with services(validate_component=None) as c, c.db.session() as session:
        emit([InstallOut.of(i).model_dump(mode="json") for i in installs.list_installs(session, tenant)])


def _toggle(tenant: str, install_id: str, enabled: bool) -> None:
    with services(mutating=True, validate_component=None) as c:
        row = install_commands.set_enabled(CommandContext(c), cli_caller(), tenant, install_id, enabled)
        emit(InstallOut.of(row).model_dump(mode="json"))


@install_app.command("enable")
def install_enable(tenant: Tenant, install_id: str) -> None:
    """Enable an install."""
    _toggle(tenant, install_id, True)


@install_app.command("disable")
def install_disable(tenant: Tenant, install_id: str) -> None:
    """Disable an install (calls answer extension_not_available)."""
    _toggle(tenant, install_id, False)


@install_app.command("upgrade")
def install_upgrade(
    tenant: Tenant,
    install_id: str,
    version: Annotated[str | None, typer.Option(help="target SemVer (default: latest)")] = None,
    approve: Annotated[list[str] | None, typer.Option("--approve", help="the complete new grant (repeat)")] = None,
    approve_declared: Annotated[bool, typer.Option(help="approve everything the target declares")] = False,
) -> None:
    """Move an install to another version; more capabilities need explicit approval."""
    with services(mutating=True, validate_component=None) as c:
        approved: list[str] | None = list(approve) if approve else None
        if approve_declared:
            with c.db.session() as session:
                install = installs.get_install(session, tenant, install_id)
                ext = publishing.get_extension(session, install.extension_id)
                approved = list(publishing.get_version(session, ext, version).capabilities)
        row = install_commands.upgrade_install(CommandContext(c), cli_caller(), tenant, install_id,
                                               to_version=version, approved_capabilities=approved)
        emit(InstallOut.of(row).model_dump(mode="json"))


@install_app.command("remove")
def install_remove(tenant: Tenant, install_id: str) -> None:
    """Uninstall; the install's config and secrets are deleted."""
    with services(mutating=True, validate_component=None) as c:
        install_commands.remove_install(CommandContext(c), cli_caller(), tenant, install_id)
        emit({"removed": install_id})


@config_app.command("set")
def config_set(
    tenant: Tenant,
    install_id: str,
    pairs: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE ...")] = None,
    from_json: Annotated[str | None, typer.Option(help="JSON object file, or - for stdin")] = None,
    expected_version: Annotated[str | None, typer.Option(help="refuse if the current version differs")] = None,
) -> None:
    """Replace the install's config with the given map (new version id)."""
    values: Any = read_json_arg(from_json) if from_json else {}
    if pairs:
        if not isinstance(values, dict):
            fail("invalid_config", "the JSON must be an object", EXIT_USAGE)
        values = {**values, **_pairs(pairs, "config")}
    with services(mutating=True, validate_component=None) as c:
        row = install_data.set_config(CommandContext(c), cli_caller(), tenant, install_id, values,
                                      expected_version=expected_version)
        emit(ConfigOut.of(install_id, row).model_dump(mode="json"))


@config_app.command("get")
def config_get(tenant: Tenant, install_id: str) -> None:
    """The install's config and its version."""
    with services(validate_component=None) as c, c.db.session() as session:
        emit(ConfigOut.of(install_id, install_config.get_config(session, tenant, install_id)).model_dump(mode="json"))


@secrets_app.command("set")
def secrets_set(
    tenant: Tenant,
    install_id: str,
    pairs: Annotated[
        list[str] | None,
        typer.Argument(help="KEY=VALUE ... (prefer --from-json - to keep values out of shell history)"),
    ] = None,
    from_json: Annotated[str | None, typer.Option(help="JSON object file, or - for stdin; null deletes")] = None,
    delete: Annotated[list[str] | None, typer.Option("--delete", help="key to delete (repeat)")] = None,
    expires_at: Annotated[datetime | None, typer.Option(help="ISO 8601 expiry of the envelope")] = None,
) -> None:
    """Merge secrets into the install's sealed envelope; prints key names and version only."""
    changes: Any = read_json_arg(from_json) if from_json else {}
    if not isinstance(changes, dict):
        fail("invalid_secrets", "the JSON must be an object", EXIT_USAGE)
    changes = {**changes, **_pairs(pairs or [], "secret"), **dict.fromkeys(delete or [])}
    kwargs = {"expires_at": expires_at} if expires_at is not None else {}
    with services(mutating=True, validate_component=None) as c:
        row = install_data.set_secrets(CommandContext(c), cli_caller(), tenant, install_id, changes, **kwargs)
        emit(SecretsOut.of(install_id, row).model_dump(mode="json"))


@secrets_app.command("show")
def secrets_show(tenant: Tenant, install_id: str) -> None:
    """Key names, version, key id and expiry (never values)."""
    with services(validate_component=None) as c, c.db.session() as session:
        row = install_secrets.get_secrets_meta(session, tenant, install_id)
        emit(SecretsOut.of(install_id, row).model_dump(mode="json"))


@secrets_app.command("rotate")
def secrets_rotate(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    install_id: Annotated[str | None, typer.Argument()] = None,
    all_installs: Annotated[bool, typer.Option("--all", help="every install not sealed with the active key")] = False,
) -> None:
    """Re-seal with the keyring's active (first) key."""
    with services(mutating=True, validate_component=None) as c:
        if all_installs:
            rotated = install_data.rotate_all(CommandContext(c), cli_caller())
            emit({"rotated": [{"tenant_id": t, "install_id": i} for t, i in rotated],
                  "key_id": c.keyring.active_key_id})
            return
        if not tenant or not install_id:
            fail("invalid_argument", "give --tenant and INSTALL_ID, or --all", EXIT_USAGE)
            return
        row = install_data.rotate_secrets(CommandContext(c), cli_caller(), tenant, install_id)
        emit(SecretsOut.of(install_id, row).model_dump(mode="json"))
