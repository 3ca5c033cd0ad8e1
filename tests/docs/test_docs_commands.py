"""Every command block marked runnable in docs/*.md is executed, so the docs cannot rot.

Marking: an HTML comment `<!-- docs-check: run -->` on the line right before a fenced
```sh block (invisible when rendered, keeps the fence's language for highlighting).
The marked blocks of one page run in order, in ONE bash shell (`set -euo pipefail`), so a
later block can use variables an earlier one set. Each page gets a fresh environment:

- cwd: an empty temp directory; `EXTGATE_DATA_DIR`: a fresh data dir inside it
  (SQLite, dev keys), so nothing touches the developer's data directory;
- `PATH` starts with the venv's bin (`extgate`, `python`);
- `BUNDLE`: a ready bundle directory (manifest.json + dist/main.wasm, a tiny component
  compiled from WAT), standing for "your extension's bundle" — building a real guest
  takes too long for this check (the examples' builds are tested in tests/sdk);
- `REPO`: the repository root.

Only self-contained, fast commands may be marked (whole check < 60 s): no servers, no
network, no guest builds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from wasmtime import wat2wasm

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
MARKER = "<!-- docs-check: run -->"
FENCE = re.compile(r"^(```+|~~~+)\s*(\w+)?")

BUNDLE_MANIFEST = {
    "name": "com.example.hello",
    "publisher": "example",
    "version": "0.1.0",
    "runtime": "wasm-py@1",
    "capabilities": ["cap:secrets.get", "cap:storage.kv"],
    "api": {"endpoints": [{"method": "GET", "path": "/hello", "handler": "hello"},
                          {"method": "POST", "path": "/echo", "handler": "echo"}]},
}


def runnable_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of every fenced block preceded by the marker line."""
    lines = text.splitlines()
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARKER:
            j = i + 1
            m = FENCE.match(lines[j]) if j < len(lines) else None
            if m is None:
                raise AssertionError(f"line {i + 1}: {MARKER} must be followed directly by a fenced block")
            if (m.group(2) or "") not in ("sh", "bash", "shell"):
                raise AssertionError(f"line {i + 1}: runnable blocks must be sh/bash, got {m.group(2)!r}")
            fence = m.group(1)
            body: list[str] = []
            j += 1
            while j < len(lines) and not lines[j].startswith(fence):
                body.append(lines[j])
                j += 1
            out.append((i + 2, "\n".join(body)))
            i = j
        i += 1
    return out


PAGES = sorted(p for p in DOCS.glob("*.md") if MARKER in p.read_text())


def test_marker_parser() -> None:
    text = f"x\n{MARKER}\n```sh\necho a\necho b\n```\n```sh\nnot marked\n```\n"
    assert runnable_blocks(text) == [(3, "echo a\necho b")]
    with pytest.raises(AssertionError, match="followed directly"):
        runnable_blocks(f"{MARKER}\n\n```sh\necho\n```\n")


def test_some_pages_have_runnable_blocks() -> None:
    assert {p.name for p in PAGES} >= {"config-and-secrets.md", "extension-guide.md"}


def make_bundle(root: Path) -> Path:
    (root / "dist").mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps(BUNDLE_MANIFEST))
    wat = (ROOT / "tests" / "runner" / "guests" / "echo.wat").read_text()
    (root / "dist" / "main.wasm").write_bytes(bytes(wat2wasm(wat)))
    return root


def start_page(page: Path, tmp: Path, bundle: Path) -> subprocess.Popen[str]:
    blocks = runnable_blocks(page.read_text())
    # Echo a banner before each block so a failure names the block's line in the page.
    script = "set -euo pipefail\n" + "\n".join(f"echo '--- {page.name}:{line}' >&2\n{code}" for line, code in blocks)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXTGATE_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        EXTGATE_DATA_DIR=str(tmp / "data"),
        EXTGATE_POLICY_DIR=str(ROOT / "policies"),  # cwd is a temp dir; the default is relative
        BUNDLE=str(bundle),
        REPO=str(ROOT),
    )
    work = tmp / "work"
    work.mkdir(parents=True)
    return subprocess.Popen(["bash", "-c", script], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def page_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str]]:
    """All pages at once, each in its own data dir: every CLI call pays ~2-4 s of imports,
    so running pages concurrently keeps the whole check well under a minute."""
    root = tmp_path_factory.mktemp("docs")
    bundle = make_bundle(root / "bundle")
    procs = {p.name: start_page(p, root / p.stem, bundle) for p in PAGES}
    results: dict[str, tuple[int, str, str]] = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=300)  # ~15 s idle; far more on a loaded CI box
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results[name] = (proc.returncode, out, err)
    return results


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_runnable_blocks(page: Path, page_results: dict[str, tuple[int, str, str]]) -> None:
    code, out, err = page_results[page.name]
    assert code == 0, f"{page.name}: a runnable block failed (exit {code})\n{err[-4000:]}\n{out[-2000:]}"
