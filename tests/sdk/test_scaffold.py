"""`extgate ext new`: the scaffolded project builds on its own, is a valid bundle, and its
routes answer through the runner — in both guest languages."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from runner.executor import Runner
from service.cli.main import app as cli
from service.cli.scaffold import Lang, names, scaffold
from service.registry.bundles import load_bundle_path
from tests.runner.conftest import body_of, make_request
from tests.sdk.conftest import EXAMPLES, compiled_into, node_available

# Persistent (gitignored: `build/`) copies of the scaffolds, so their cached builds survive runs.
CACHE = Path(__file__).resolve().parent / "build"


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()
                     and not {"build", "node_modules", "__pycache__"} & set(p.relative_to(b).parts))
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def scaffolded(lang: Lang, tmp_path: Path) -> Path:
    """Scaffold into tmp; reuse the cached project (and its build) when the output is identical."""
    fresh = tmp_path / f"scaffold-{lang.value}"
    scaffold("com.acme.greeter", lang, fresh, publisher="Acme")
    cached = CACHE / f"scaffold-{lang.value}"
    if not (cached.is_dir() and same_tree(fresh, cached)):
        shutil.rmtree(cached, ignore_errors=True)
        shutil.copytree(fresh, cached)
    return cached


def build(lang: Lang, project: Path) -> Path:
    if lang is Lang.python:
        cmd = [sys.executable, "build.py", "--bundle"]
    else:
        if not node_available():
            pytest.skip("node/npm not installed")
        # Same lock file contents as examples/js-notes (only the root name differs), so its
        # `npm ci`-installed tree serves here too instead of a second install.
        subprocess.run(["make", "-s", "-C", str(EXAMPLES), "js-deps"], check=True, capture_output=True, timeout=600)
        modules = project / "node_modules"
        if not modules.exists():
            os.symlink(EXAMPLES / "js-notes" / "node_modules", modules)
        cmd = ["node", "build.mjs", "--bundle"]
    out = subprocess.run(cmd, cwd=project, check=True, capture_output=True, text=True, timeout=600)
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("lang", list(Lang))
def test_scaffold_builds_and_runs(lang: Lang, tmp_path: Path, sdk_runner: Runner, sdk_compiled_dir: Path) -> None:
    project = scaffolded(lang, tmp_path)
    bundle_dir = build(lang, project)
    bundle = load_bundle_path(bundle_dir)  # what `extgate ext publish` validates first
    assert bundle.manifest.name == "com.acme.greeter"
    content_hash = compiled_into(bundle_dir / "dist" / "main.wasm", sdk_compiled_dir, project / "build" / "compiled")

    def call(path: str, method: str = "GET", body: bytes | None = None, **kw: Any) -> tuple[int, Any]:
        resp = sdk_runner.execute(make_request(content_hash, path, method=method, body=body, **kw))
        assert resp.error is None, resp.error
        return resp.status, json.loads(body_of(resp))

    assert call("/hello", config={"greeting": "Hi"}) == (200, {"message": "Hi", "tenant": "t1"})
    assert call("/hello/ada") == (200, {"message": "Hello, ada"})
    assert call("/echo", "POST", b'{"text": "x"}') == (200, {"echo": "x"})
    assert call("/echo", "POST", b"{}")[1]["error"] == "text_required"
    assert call("/status") == (200, {"api_key": "secret_denied"})  # not granted in this call
    # every route in code is declared in the manifest (the gateway only admits declared ones)
    assert {(e.method, e.path) for e in bundle.manifest.endpoints} == {
        ("GET", "/hello"), ("GET", "/hello/:name"), ("POST", "/echo"), ("GET", "/status")}


def test_cli_new_and_its_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["ext", "new", "tickets", "--lang", "js", "--dir", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["manifest_name"] == "com.example.tickets" and "vendor/extgate-sdk/guest.js" in out["files"]
    lock = json.loads((tmp_path / "t" / "package-lock.json").read_text())
    assert lock["name"] == "com-example-tickets"
    manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert manifest["name"] == "com.example.tickets"
    # the README's install command names the extension the way installs do: publisher.name
    readme = (tmp_path / "t" / "README.md").read_text()
    assert f"install create --tenant acme {manifest['publisher']}.{manifest['name']} " in readme
    again = runner.invoke(cli, ["ext", "new", "tickets", "--dir", str(tmp_path / "t")])
    assert again.exit_code == 2 and "not empty" in again.output
    bad = runner.invoke(cli, ["ext", "new", "Bad_Name", "--dir", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "reverse-domain" in bad.output


def test_names() -> None:
    assert names("tickets", "x")["manifest_name"] == "com.example.tickets"
    assert names("io.acme.t-1", "x") == {"name": "t-1", "manifest_name": "io.acme.t-1", "publisher": "x",
                                         "slug": "x.io.acme.t-1", "npm_name": "io-acme-t-1"}
    with pytest.raises(ValueError):
        names("com..x", "x")
