"""`extgate`: serve, migrate, mint dev tokens, and the per-concern verb groups."""

from __future__ import annotations

from typing import Annotated

import typer

from service.cli.common import EXIT_USAGE, emit, fail
from service.cli.registry import ext_app, install_app
from service.settings import Settings

app = typer.Typer(help="extgate: policy-gated WebAssembly extensions.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ext_app, name="ext")
app.add_typer(install_app, name="install")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (EXTGATE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (EXTGATE_PORT)")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the gateway (embedded defaults: SQLite, migrations applied automatically)."""
    import uvicorn

    settings = Settings()
    uvicorn.run(
        "service.asgi:app",
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        proxy_headers=False,
        log_level="info",
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default head)."""
    from service.db import create_database
    from service.db.migrate import current_revision, upgrade

    db = create_database(Settings().effective_database_url)
    try:
        upgrade(db.engine, revision)
        emit({"revision": current_revision(db.engine), "backend": db.dialect})
    finally:
        db.dispose()


@db_app.command("current")
def db_current() -> None:
    """Show the applied and the latest migration."""
    from service.db import create_database
    from service.db.migrate import current_revision, head_revision

    db = create_database(Settings().effective_database_url)
    try:
        emit({"current": current_revision(db.engine), "head": head_revision(db.engine), "backend": db.dialect})
    finally:
        db.dispose()


@app.command()
def token(
    tenant: Annotated[str, typer.Option(help="tenant id")],
    user: Annotated[str, typer.Option(help="subject (user id)")],
    role: Annotated[
        list[str], typer.Option("--role", help="role (repeat): viewer, editor, admin, operator, platform-admin")
    ],
    ttl: Annotated[int, typer.Option(help="lifetime in seconds")] = 12 * 3600,
    name: Annotated[str | None, typer.Option()] = None,
    email: Annotated[str | None, typer.Option()] = None,
    user_type: Annotated[str, typer.Option()] = "internal",
) -> None:
    """Mint a development token (HS256 with the embedded secret)."""
    from service.auth.tokens import mint_dev_token

    try:
        value = mint_dev_token(
            Settings(),
            tenant=tenant,
            subject=user,
            roles=role,
            ttl_seconds=ttl,
            name=name,
            email=email,
            user_type=user_type,
        )
    except ValueError as exc:
        fail("invalid_argument", str(exc), EXIT_USAGE)
        return
    emit({"token": value, "tenant": tenant, "sub": user, "roles": sorted(set(role)), "expires_in": ttl})


if __name__ == "__main__":
    app()
