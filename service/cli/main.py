"""`extgate`: serve, migrate, mint dev tokens, and the per-concern verb groups."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from audit.config import AuditConfigError
from runner.cli import app as runner_app
from runner.settings import DevKeysNotAllowed
from service.cli.audit import app as audit_app
from service.cli.common import EXIT_USAGE, add_json_flags, emit, fail
from service.cli.debug import app as debug_app
from service.cli.dev import dev as dev_loop
from service.cli.policy import app as policy_app
from service.cli.registry import ext_app, install_app
from service.cli.scaffold import new as scaffold_new
from service.settings import Settings

app = typer.Typer(help="extgate: policy-gated WebAssembly extensions.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ext_app, name="ext")
ext_app.command("new")(scaffold_new)  # `extgate ext new` (service/cli/scaffold.py)
app.command("dev")(dev_loop)  # `extgate dev DIR` (service/cli/dev.py)
app.add_typer(install_app, name="install")
app.add_typer(policy_app, name="policy", help="Validate, test, explain, diff, reload and roll back Cedar policies.")
app.add_typer(audit_app, name="audit")
app.add_typer(runner_app, name="runner", help="The WebAssembly runner (serve, compile).")
app.add_typer(debug_app, name="debug")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (EXTGATE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (EXTGATE_PORT)")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the gateway (embedded defaults: SQLite, migrations applied automatically)."""
    import uvicorn
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as exc:  # name the setting and the reason, never echo the value
        fail("configuration_error", settings_problems(Settings, exc), EXIT_USAGE)
        return
    try:
        check_configuration(settings)
    except (DevKeysNotAllowed, AuditConfigError, ValidationError, ValueError) as exc:
        # One line naming the missing or invalid setting, not a traceback from inside uvicorn.
        fail("configuration_error", _config_message(exc), EXIT_USAGE)
        return
    # Client addresses go into audit records: X-Forwarded-For is believed only from the
    # proxies named in EXTGATE_FORWARDED_ALLOW_IPS, never from anyone by default.
    trusted = settings.forwarded_allow_ips  # validated and normalized by Settings
    from runner.contract.data_dir import describe_data_dir

    typer.echo(f"extgate: {describe_data_dir(settings.data_dir)}", err=True)  # which store this server uses
    uvicorn.run(
        "service.asgi:app",
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        log_level="info",
    )


class InvalidSettings(ValueError):
    """Settings that do not validate, as `{setting, message}` items (values never included)."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['setting']}: {p['message']}" for p in problems))
        self.problems = problems


def settings_problems(cls: type[Any], exc: Any) -> list[dict[str, str]]:
    """A settings class's validation errors, each naming its environment variable."""
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    problems = []
    for e in exc.errors():
        field = ".".join(map(str, e["loc"]))
        setting = f"{prefix}{field.upper()}" if field.isidentifier() else field
        problems.append({"setting": setting, "message": e["msg"]})
    return problems


def _config_message(exc: Exception) -> object:
    from pydantic import ValidationError

    if isinstance(exc, InvalidSettings):
        return exc.problems
    if isinstance(exc, ValidationError):
        return [{"setting": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()]
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def check_configuration(settings: Settings) -> None:
    """Load every key the server needs before it starts, so a missing production key is
    reported by `serve` itself (configuration_error naming the setting)."""
    from pydantic import ValidationError

    from audit.config import AuditSettings
    from runner.debug.config import DebugPublisherSettings
    from runner.settings import RunnerSettings
    from service.debug.config import DebugSessionSettings
    from service.gateway.config import GatewaySettings

    # Every settings class the server reads, loaded now: an invalid value anywhere is one
    # configuration_error line here, not a traceback on the first request.
    problems: list[dict[str, str]] = []
    for cls in (GatewaySettings, RunnerSettings, DebugSessionSettings, DebugPublisherSettings, AuditSettings):
        try:
            cls()
        except ValidationError as exc:
            problems += settings_problems(cls, exc)
    if problems:
        raise InvalidSettings(problems)
    _ = settings.keyring, settings.effective_jwt_hs256_secret, settings.effective_runner_token
    audit = AuditSettings()
    audit.verifiers(audit.signer(settings.data_dir, embedded=settings.is_embedded_database))


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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print the token alone: TOKEN=$(extgate token -q ...)")]
    = False,
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
    if quiet:
        typer.echo(value)
        return
    emit({"token": value, "tenant": tenant, "sub": user, "roles": sorted(set(role)), "expires_in": ttl})


openapi_app = typer.Typer(help="The OpenAPI document.", no_args_is_help=True)
app.add_typer(openapi_app, name="openapi")


@openapi_app.command("export")
def openapi_export(
    out: Annotated[str | None, typer.Option(help="file to write (default openapi/openapi.json); - for stdout")] = None,
    check: Annotated[bool, typer.Option(help="exit 1 if the file differs from the generated document")] = False,
) -> None:
    """Write (or --check) the OpenAPI document generated from the app."""
    from pathlib import Path

    from service.openapi_doc import DEFAULT_PATH, generate, render

    text = render(generate())
    if out == "-":
        typer.echo(text, nl=False)
        return
    path = Path(out) if out else DEFAULT_PATH
    if check:
        if not path.exists() or path.read_text() != text:
            fail("openapi_drift", f"{path} is out of date: run `extgate openapi export`", 1)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    emit({"written": str(path), "paths": len(generate()["paths"])})


demo_app = typer.Typer(help="The newcomer demo (make run).", no_args_is_help=True)
app.add_typer(demo_app, name="demo")


@demo_app.command("setup")
def demo_setup() -> None:
    """Publish and install the demo extension for tenant `demo`; prints ids and dev tokens as JSON."""
    from service.cli.common import services
    from service.demo import prepare_demo

    with services() as c:
        emit(prepare_demo(c).__dict__)


@demo_app.command("serve")
def demo_serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Set up the demo, print tokens and example calls, then serve."""
    from service.cli.common import services
    from service.demo import describe, prepare_demo

    settings = Settings()
    with services() as c:
        info = prepare_demo(c)
    from runner.contract.data_dir import describe_data_dir

    base_url = f"http://{host or settings.host}:{port or settings.port}"
    typer.echo(describe(info, base_url, describe_data_dir(settings.data_dir)))
    serve(host=host, port=port, workers=1)


# Every verb takes --json (servers and `dev`, which stream, excepted): service/cli/common.py.
add_json_flags(app, skip=frozenset({"serve", "dev"}))

if __name__ == "__main__":
    app()
