"""`extgate dev DIR`: the inner loop — watch, rebuild, publish a dev version, move a dev install
to it, and stream its log lines.

DIR is a project made by `extgate ext new` (its `build.py` or `build.mjs` decides the language).
On start and on every saved change under `src/`, `vendor/`, `wit/` or `manifest.json`:

1. build with the project's own script (`python build.py --bundle` / `node build.mjs --bundle`);
   a failure is shown inline (the script's `file:line:col: message` lines) and the loop waits
   for the next save — nothing is published;
2. publish `build/bundle` as the next dev version `<manifest version>-dev.<n>` (the manifest on
   disk is not changed) through `service.commands`, like `extgate ext publish`;
3. create the dev install (first cycle) or upgrade it to that version, granting what the flags
   say (`--tenant`, `--grant`), else the manifest's `"dev": {"tenant", "grant"}`, else tenant
   `dev` with every declared capability;
4. the log lines of the install arrive through a debug session on the server, as `extgate
   debug tail` shows them (the session is audited like any other, justification `extgate dev`).

The server is the one at `--server` (default `http://EXTGATE_HOST:EXTGATE_PORT`); when none
answers there, `extgate dev` starts `extgate serve` itself (log in `build/dev-server.log`) and
stops it on exit. Both use the same data directory.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from service.cli.common import EXIT_USAGE, cli_caller, fail, services
from service.settings import Settings

# What triggers a rebuild; `npm ci` rewrites node_modules/.package-lock.json, so installing the
# JavaScript toolchain after a "not installed" build error retries too.
WATCHED = ("src", "vendor", "wit", "manifest.json", "node_modules/.package-lock.json")
DEFAULT_TENANT = "dev"
JUSTIFICATION = "extgate dev: local development session"


class DevError(Exception):
    """A problem worded for the developer: one line naming what to do."""


def say(message: str) -> None:
    typer.echo(f"[dev] {message}", err=True)  # stdout: the extension's log lines, `--once`'s JSON


# Project ---------------------------------------------------------------------------------


def build_command(project: Path) -> list[str]:
    if (project / "build.py").is_file():
        return [sys.executable, "build.py", "--bundle"]
    if (project / "build.mjs").is_file():
        node = shutil.which("node")
        if node is None:
            raise DevError("node is not on PATH: install Node.js 20+ (the project builds with build.mjs)")
        return [node, "build.mjs", "--bundle"]
    raise DevError(f"{project} has neither build.py nor build.mjs: run `extgate dev` on a project made by "
                   "`extgate ext new`")


def read_manifest(project: Path) -> dict[str, Any]:
    try:
        doc = json.loads((project / "manifest.json").read_text())
    except FileNotFoundError:
        raise DevError(f"{project / 'manifest.json'} is missing: run `extgate dev` on a project made by "
                       "`extgate ext new`") from None
    except json.JSONDecodeError as exc:
        raise DevError(f"manifest.json:{exc.lineno}:{exc.colno}: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise DevError("manifest.json must be a JSON object")
    return doc


def dev_target(doc: dict[str, Any], tenant: str | None, grant: list[str] | None) -> tuple[str, list[str]]:
    """The dev install's tenant and grant: flags, else the manifest's `dev` object, else defaults.
    Checked before anything is published."""
    from service.auth.tokens import TENANT_ID_RE

    raw = doc.get("dev")
    dev: dict[str, Any] = raw if isinstance(raw, dict) else {}
    declared = [c for c in doc.get("capabilities", []) if isinstance(c, str)]
    chosen_tenant = tenant or dev.get("tenant") or DEFAULT_TENANT
    if not isinstance(chosen_tenant, str) or not TENANT_ID_RE.fullmatch(chosen_tenant):
        raise DevError(f"tenant {chosen_tenant!r} is not a valid tenant id: pass --tenant with letters, digits, "
                       "'.', '_' or '-'")
    chosen = list(grant) if grant else dev.get("grant", declared)
    if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
        raise DevError('manifest.json "dev.grant" must be a list of capability names')
    undeclared = sorted(set(chosen) - set(declared))
    if undeclared:
        raise DevError(f"cannot grant {', '.join(undeclared)}: not declared in manifest.json \"capabilities\"; "
                       "declare it there or drop the --grant")
    return chosen_tenant, sorted(set(chosen))


def snapshot(project: Path) -> dict[str, float]:
    """mtime and size of every watched file: a change, an added or a removed file all differ."""
    out: dict[str, float] = {}
    for name in WATCHED:
        root = project / name
        paths = [root] if root.is_file() else (p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        for p in paths:
            if "__pycache__" in p.parts:
                continue
            with suppress(OSError):
                st = p.stat()
                out[str(p)] = st.st_mtime_ns + st.st_size
    return out


def build(project: Path, cmd: list[str]) -> Path:
    done = subprocess.run(cmd, cwd=project, capture_output=True, text=True)  # noqa: S603 - the project's script
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()] or [f"exit status {done.returncode}"]
        raise DevError("build failed (the next save retries):\n" + "\n".join(f"  {ln}" for ln in lines[-20:]))
    return Path(done.stdout.strip().splitlines()[-1])


# Registry --------------------------------------------------------------------------------

DEV_SUFFIX = re.compile(r"-dev\.(\d+)$")


def next_dev_version(base: str, existing: list[str]) -> str:
    """`1.2.0` → `1.2.0-dev.<n>`, n one above the highest dev number published for that base."""
    core = base.split("-", 1)[0].split("+", 1)[0]
    numbers = [int(m.group(1)) for v in existing if v.startswith(core + "-dev.") and (m := DEV_SUFFIX.search(v))]
    return f"{core}-dev.{max(numbers, default=0) + 1}"


def dev_bundle(bundle_dir: Path, version: str) -> Path:
    """A copy of the built bundle whose manifest carries the dev version."""
    target = bundle_dir.parent / "dev-bundle"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(bundle_dir, target)
    doc = json.loads((target / "manifest.json").read_text())
    doc["version"] = version
    (target / "manifest.json").write_text(json.dumps(doc, indent=2) + "\n")
    return target


def publish_and_move(bundle_dir: Path, tenant: str, grant: list[str]) -> dict[str, str]:
    """Publish the next dev version and create or upgrade the tenant's install of it, through
    `service.commands` (each change commits with its audit record)."""
    from service.commands import CommandContext, extensions
    from service.commands import installs as install_commands
    from service.errors import DomainError
    from service.registry import installs, publishing
    from service.registry.bundles import BundleError, BundleLimits, load_bundle_path

    doc = json.loads((bundle_dir / "manifest.json").read_text())
    slug = f"{doc.get('publisher', '')}.{doc.get('name', '')}".lower()
    with services() as c:
        ctx, caller = CommandContext(c), cli_caller()
        existing: list[str] = []
        install_id: str | None = None
        with c.db.session() as session:
            for ext, versions in publishing.list_extensions(session):
                if ext.slug == slug:
                    existing = [v.version for v in versions]
                    install_id = next((i.id for i in installs.list_installs(session, tenant)
                                       if i.extension_id == ext.id), None)
        version = next_dev_version(str(doc.get("version", "0.0.0")), existing)
        try:
            bundle = load_bundle_path(dev_bundle(bundle_dir, version),
                                      limits=BundleLimits(max_archive_bytes=c.settings.max_bundle_bytes))
        except BundleError as exc:
            raise DevError(f"bundle refused: {exc.code}: {exc}") from None
        try:
            published = extensions.publish(ctx, caller, bundle, signature=None)
            if install_id is None:
                row = install_commands.create_install(ctx, caller, tenant, published.extension_id, version=version,
                                                      granted_capabilities=grant)
            else:
                row = install_commands.upgrade_install(ctx, caller, tenant, install_id, to_version=version,
                                                       approved_capabilities=grant)
        except DomainError as exc:
            detail = exc.detail.get("message", exc.detail) if isinstance(exc.detail, dict) else exc.detail
            raise DevError(f"{exc.code}: {detail}") from None
        return {"slug": published.slug, "version": version, "install_id": row.id,
                "data_dir": str(c.settings.data_dir)}


# Server and log stream ------------------------------------------------------------------


def server_up(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def ensure_server(base_url: str, project: Path, start: bool) -> Iterator[None]:
    if server_up(base_url):
        say(f"using the server at {base_url}")
        yield
        return
    if not start:
        raise DevError(f"no server answers at {base_url}: start `extgate serve` (or `make run`), or drop --no-serve")
    host, _, port = base_url.removeprefix("http://").partition(":")
    log_path = project / "build" / "dev-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, fixed argv
            [sys.executable, "-m", "service.cli.main", "serve", "--host", host, "--port", port or "8000"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not server_up(base_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise DevError(f"`extgate serve` did not start on {base_url}: see {log_path}")
            time.sleep(0.2)
        say(f"started `extgate serve` on {base_url} (log: {log_path})")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def stream_logs(base_url: str, token: str, slug: str, stop: threading.Event, ready: threading.Event) -> None:
    """Follow the extension's debug stream until `stop`; reopens ended or dropped sessions."""
    from rich.console import Console

    from service.cli.debug import parse_sse, render

    console = Console(highlight=False)
    body = {"extension": slug, "justification": JUSTIFICATION}
    headers = {"Authorization": f"Bearer {token}"}
    last_id: str | None = None
    with httpx.Client(base_url=base_url, timeout=httpx.Timeout(10.0, read=60.0)) as client:
        while not stop.is_set():
            try:
                opened = client.post("/api/ext-debug/sessions", json=body, headers=headers)
                if opened.status_code != 201:
                    say(f"log stream refused ({opened.status_code}): {opened.text[:300]}")
                    stop.wait(5)
                    continue
                sse_headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
                with client.stream("GET", opened.json()["stream_url"], headers=sse_headers) as resp:
                    ready.set()
                    for event, entry_id, data in parse_sse(resp.iter_lines()):
                        if entry_id:
                            last_id = entry_id
                        if event in ("log", "gap", "warning"):
                            console.print(render(event, json.loads(data)))
                        if stop.is_set() or event == "end":
                            break
            except (httpx.TransportError, json.JSONDecodeError):
                if not stop.is_set():
                    stop.wait(0.5)


# The command -----------------------------------------------------------------------------


def dev(
    directory: Annotated[Path, typer.Argument(help="project directory (made by `extgate ext new`)")] = Path("."),
    tenant: Annotated[str | None, typer.Option(help="tenant of the dev install (default: manifest dev.tenant, "
                                                    "else 'dev')")] = None,
    grant: Annotated[list[str] | None, typer.Option("--grant", help="capability to grant (repeat; default: "
                                                                     "manifest dev.grant, else all declared)")] = None,
    server: Annotated[str | None, typer.Option(help="server base URL (default http://EXTGATE_HOST:EXTGATE_PORT)")]
    = None,
    serve: Annotated[bool, typer.Option(help="start `extgate serve` when no server answers")] = True,
    once: Annotated[bool, typer.Option(help="build, publish and move the install once, then exit")] = False,
    interval: Annotated[float, typer.Option(help="seconds between checks for saved changes")] = 0.2,
) -> None:
    """Watch DIR, rebuild on save, publish a dev version, move a dev install to it, stream its logs."""
    project = directory.resolve()
    try:
        cmd = build_command(project)
        tenant_id, caps = dev_target(read_manifest(project), tenant, grant)
    except DevError as exc:
        fail("invalid_argument", str(exc), EXIT_USAGE)
        return
    settings = Settings()
    base_url = (server or f"http://{settings.host}:{settings.port}").rstrip("/")

    def cycle() -> dict[str, str] | None:
        started = time.monotonic()
        try:
            doc = read_manifest(project)
            dev_target(doc, tenant, grant)  # the manifest may have changed: check before publishing
            bundle_dir = build(project, cmd)
            built = time.monotonic()
            moved = publish_and_move(bundle_dir, tenant_id, caps)
        except DevError as exc:
            say(str(exc))
            return None
        except (Exception, typer.Exit) as exc:  # noqa: BLE001 - e.g. a locked database: report, keep watching
            say(f"publish failed ({type(exc).__name__}: {exc}); the previous version keeps serving, "
                "save again to retry")
            return None
        say(f"{moved['slug']}@{moved['version']} installed for tenant {tenant_id} (install {moved['install_id']}; "
            f"build {built - started:.1f} s, publish {time.monotonic() - built:.1f} s)")
        return moved

    if once:
        moved = cycle()
        if moved is None:
            raise typer.Exit(1)
        typer.echo(json.dumps(moved, indent=2, sort_keys=True))
        return

    import signal

    from runner.contract.data_dir import describe_data_dir
    from service.auth.tokens import mint_dev_token

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM/SIGINT: stop the server this session started, then exit

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    say(describe_data_dir(settings.data_dir))
    try:
        with ensure_server(base_url, project, serve):
            say(f"building {project.name} ({' '.join(Path(c).name for c in cmd[:2])})")
            moved = cycle()
            while moved is None:  # nothing to stream before the first good build
                seen = snapshot(project)
                while snapshot(project) == seen:
                    time.sleep(interval)
                moved = cycle()
            slug = moved["slug"]
            operator = mint_dev_token(settings, tenant=tenant_id, subject="extgate-dev", roles=["operator"])
            editor = mint_dev_token(settings, tenant=tenant_id, subject="extgate-dev", roles=["editor"])
            stop, ready = threading.Event(), threading.Event()
            streamer = threading.Thread(target=stream_logs, args=(base_url, operator, slug, stop, ready), daemon=True)
            streamer.start()
            ready.wait(10)
            say(f'call it: curl -s -H "authorization: Bearer {editor}" {base_url}/api/ext/{slug}/<path>')
            say("watching src/, vendor/, wit/, manifest.json (Ctrl-C to stop)")
            seen = snapshot(project)
            try:
                while True:
                    time.sleep(interval)
                    now = snapshot(project)
                    if now != seen:
                        seen = now
                        say("change seen: rebuilding")
                        cycle()  # a save during the build differs from `seen`: rebuilt next round
            finally:
                stop.set()
    except DevError as exc:
        fail("dev_failed", str(exc), 1)
    except KeyboardInterrupt:
        say("stopped")
    finally:
        sys.stdout.flush()
