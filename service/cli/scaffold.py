"""`extgate ext new NAME --lang python|js`: scaffold a working extension from a template.

The new directory builds on its own: the guest SDK (`sdk/python` or `sdk/js`) and the WIT
files (`runner/wit`) are *vendored* into it, so it does not depend on this checkout
afterwards and an SDK change never silently changes an existing extension's build.
Templates live in `sdk/templates/<lang>/`; `{{name}}`-style placeholders are replaced (no
template engine: JavaScript's `${...}` must pass through untouched). Scaffolding needs a
source checkout of extgate (the SDKs are not part of the installed Python package).
"""

from __future__ import annotations

import json
import re
import shutil
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import EXIT_USAGE, emit, fail
from service.registry.manifest import NAME_RE

REPO = Path(__file__).resolve().parents[2]
SDK = REPO / "sdk"
TEMPLATES = SDK / "templates"
WIT_ROOT = REPO / "runner" / "wit"
JS_LOCK = REPO / "examples" / "js-notes" / "package-lock.json"
TEXT_SUFFIXES = {".py", ".js", ".mjs", ".json", ".md", ""}
SIMPLE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")

app = typer.Typer(help="Scaffold extensions.", no_args_is_help=True)


class Lang(StrEnum):
    python = "python"
    js = "js"


def names(name: str, publisher: str) -> dict[str, str]:
    """NAME is a manifest name (`com.acme.tickets`) or a short one (`tickets` → `com.example.tickets`)."""
    manifest_name = name if "." in name else f"com.example.{name}"
    if not SIMPLE_NAME.fullmatch(name) and not NAME_RE.fullmatch(name):
        raise ValueError(
            f"NAME must be a short name like 'tickets' or a lowercase reverse-domain name like "
            f"'com.acme.tickets', got {name!r}"
        )
    short = manifest_name.rsplit(".", 1)[-1]
    return {"name": short, "manifest_name": manifest_name, "publisher": publisher,
            "slug": f"{publisher}.{manifest_name}".lower(),  # how installs and the gateway name it
            "npm_name": manifest_name.replace(".", "-")}


def _render(src: Path, dst: Path, values: dict[str, str]) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix not in TEXT_SUFFIXES:
        shutil.copyfile(src, dst)
        return
    text = src.read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    dst.write_text(text)


def _vendor_wit(target: Path) -> None:
    # extgate's package as the root, the upstream alga:extension package as its dependency.
    (target / "deps" / "alga-extension").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(WIT_ROOT / "extgate" / "extension.wit", target / "extension.wit")
    shutil.copyfile(WIT_ROOT / "alga" / "extension.wit", target / "deps" / "alga-extension" / "extension.wit")


def scaffold(name: str, lang: Lang, target: Path, publisher: str = "example") -> list[str]:
    """Write the project into `target` (must not exist or be empty); returns the files written."""
    if not TEMPLATES.is_dir():
        raise FileNotFoundError("extgate ext new needs a source checkout of extgate (sdk/templates is missing)")
    values = names(name, publisher)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty")
    template = TEMPLATES / lang.value
    for src in sorted(template.rglob("*")):
        if src.is_file() and "__pycache__" not in src.parts:
            rel = src.relative_to(template)
            # Stored without the dot so the template's own rules do not apply to this repo.
            rel = Path(".gitignore") if rel == Path("gitignore") else rel
            _render(src, target / rel, values)
    _vendor_wit(target / "wit")
    if lang is Lang.python:
        shutil.copytree(SDK / "python" / "extgate_sdk", target / "vendor" / "extgate_sdk",
                        ignore=shutil.ignore_patterns("__pycache__"))
    else:
        sdk_dir = target / "vendor" / "extgate-sdk"
        sdk_dir.mkdir(parents=True)
        for file in ("core.js", "guest.js"):
            shutil.copyfile(SDK / "js" / file, sdk_dir / file)
        # The example's lock file pins the whole componentize-js tree; reuse it so the first
        # `npm ci` is reproducible too (only the root package's name differs).
        lock = json.loads(JS_LOCK.read_text())
        lock["name"] = values["npm_name"]
        lock["packages"][""]["name"] = values["npm_name"]
        lock["packages"][""]["version"] = "0.1.0"
        lock["packages"][""].pop("description", None)
        lock["packages"][""]["devDependencies"] = json.loads((target / "package.json").read_text())["devDependencies"]
        (target / "package-lock.json").write_text(json.dumps(lock, indent=2) + "\n")
    return sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())


@app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="short name (tickets) or manifest name (com.acme.tickets)")],
    lang: Annotated[Lang, typer.Option("--lang", help="guest language")] = Lang.python,
    directory: Annotated[Path | None, typer.Option("--dir", help="target directory (default ./<short name>)")] = None,
    publisher: Annotated[str, typer.Option(help="manifest publisher")] = "example",
) -> None:
    """Scaffold a working extension (SDK, WIT, build script, manifest) in a new directory."""
    try:
        values = names(name, publisher)
        target = directory or Path(values["name"])
        files = scaffold(name, lang, target, publisher)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        fail("invalid_argument", str(exc), EXIT_USAGE)
        return
    emit({"created": str(target), "lang": lang.value, "manifest_name": values["manifest_name"],
          "slug": values["slug"], "files": files, "next": next_steps(lang, target, values["slug"]),
          "server": "the curl needs a running server on the same data directory: `make run` in the extgate "
                    "checkout, or `extgate serve`; `extgate dev .` rebuilds and republishes on every save"})


def next_steps(lang: Lang, target: Path, slug: str, tenant: str = "acme") -> list[str]:
    """Shell commands, run in order from where `ext new` ran: build, publish into the per-user
    store the server uses, install for a tenant, and call the extension through the gateway."""
    import os

    build = "python build.py --bundle" if lang is Lang.python else "npm ci && node build.mjs --bundle"
    base = f"http://{os.environ.get('EXTGATE_HOST', '127.0.0.1')}:{os.environ.get('EXTGATE_PORT', '8000')}"
    return [
        f"cd {target}",
        build,
        "extgate ext publish build/bundle",
        f"extgate install create --tenant {tenant} {slug} --grant-declared",
        f"TOKEN=$(extgate token --tenant {tenant} --user dev --role editor --quiet)",
        f'curl -s -H "authorization: Bearer $TOKEN" {base}/api/ext/{slug}/hello',
    ]
