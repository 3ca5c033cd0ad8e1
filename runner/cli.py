"""`extgate runner …` commands (also `python -m runner …`)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The extgate WebAssembly runner.", no_args_is_help=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (EXTGATE_RUNNER_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (EXTGATE_RUNNER_PORT)")] = None,
    processes: Annotated[int | None, typer.Option(help="Worker processes (EXTGATE_RUNNER_PROCESSES)")] = None,
) -> None:
    """Serve POST /v1/execute and GET /healthz."""
    import uvicorn

    from runner.settings import RunnerSettings

    if processes:  # the workers size their default thread pool from it
        os.environ["EXTGATE_RUNNER_PROCESSES"] = str(processes)
    from pydantic import ValidationError

    from runner.settings import DevKeysNotAllowed

    try:
        settings = RunnerSettings()
        settings.service_token()  # create the credential file before workers race for it
        settings.keyring()
    except ValidationError as exc:  # one line naming each setting, never its value
        problems = [{"setting": "EXTGATE_" + ".".join(map(str, e["loc"])).upper(), "message": e["msg"]}
                    for e in exc.errors()]
        typer.echo(json.dumps({"error": "configuration_error", "detail": problems}), err=True)
        raise typer.Exit(2) from None
    except (DevKeysNotAllowed, ValueError) as exc:
        typer.echo(json.dumps({"error": "configuration_error", "detail": str(exc).splitlines()[0]}), err=True)
        raise typer.Exit(2) from None
    uvicorn.run("runner.transport.app:create_app_from_env", factory=True,
                host=host or settings.runner_host, port=port or settings.runner_port,
                workers=processes or settings.runner_processes, log_level="info")


@app.command()
def compile(
    wasm: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="component .wasm")],
    content_hash: Annotated[str | None, typer.Option(help="bundle content hash (default: sha256 of the wasm)")] = None,
) -> None:
    """Validate and precompile a component into the compiled-artifact cache."""
    from runner.compiler import ComponentRejectedError, compile_component
    from runner.engine import EngineOptions
    from runner.settings import RunnerSettings

    settings = RunnerSettings()
    try:
        report = compile_component(wasm, settings.compiled_dir, content_hash=content_hash,
                                   options=EngineOptions(consume_fuel=settings.runner_fuel))
    except ComponentRejectedError as exc:
        typer.echo(f"rejected: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(asdict(report), indent=2))


@app.command()
def recompile() -> None:
    """Rebuild artifacts built by an earlier bulk-body transform (see docs/runner.md)."""
    # Runners also do this in the background at start (EXTGATE_RUNNER_REBUILD_OUTDATED_ARTIFACTS);
    # until then such components serve through the plain `handler`. One compile at a time:
    # each is a ~350 MB subprocess.
    from runner.compiler import rebuild_outdated
    from runner.contract.bundle_store import LocalBundleStore
    from runner.engine import EngineOptions
    from runner.settings import RunnerSettings

    settings = RunnerSettings()
    outcomes = rebuild_outdated(settings.compiled_dir, LocalBundleStore(settings.bundles_dir).component_path,
                                EngineOptions(consume_fuel=settings.runner_fuel))
    typer.echo(json.dumps([{"content_hash": h, "outcome": o} for h, o in outcomes], indent=2))
    if any(o.startswith("failed") for _, o in outcomes):
        raise typer.Exit(1)
