"""`extgate dev DIR` (issue 21, part 4): watch → rebuild → publish a dev version → move the dev
install → stream its log lines; bad input is one line and publishes nothing."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from service.cli.dev import next_dev_version
from service.cli.main import app
from service.cli.scaffold import Lang, scaffold
from tests.sdk.conftest import DevStore, save_build_cache, seed_build_cache


def test_next_dev_version() -> None:
    assert next_dev_version("0.1.0", []) == "0.1.0-dev.1"
    assert next_dev_version("0.1.0", ["0.1.0", "0.1.0-dev.1", "0.1.0-dev.9", "0.2.0-dev.30"]) == "0.1.0-dev.10"
    assert next_dev_version("1.0.0-beta.1", ["1.0.0-dev.2"]) == "1.0.0-dev.3"


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(tmp_path / "data"))
    project = tmp_path / "p"
    scaffold("com.acme.devbad", Lang.python, project, publisher="acme")
    return project


@pytest.mark.parametrize(("args", "expected"), [
    (["--tenant", "no spaces"], "is not a valid tenant id: pass --tenant"),
    (["--grant", "cap:http.fetch"], "cannot grant cap:http.fetch: not declared in manifest.json"),
])
def test_dev_install_that_cannot_be_created_publishes_nothing(isolated: Path, args: list[str], expected: str) -> None:
    res = CliRunner().invoke(app, ["dev", str(isolated), "--once", *args])
    assert res.exit_code == 2
    assert len(res.stderr.strip().splitlines()) == 1 and expected in res.stderr
    assert not (isolated / "build").exists()  # refused before building, let alone publishing
    listed = CliRunner().invoke(app, ["ext", "list"])
    assert json.loads(listed.stdout) == []


def test_dev_needs_a_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(tmp_path / "data"))
    res = CliRunner().invoke(app, ["dev", str(tmp_path), "--once"])
    assert res.exit_code == 2 and "neither build.py nor build.mjs" in res.stderr


def follow(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for(lines: queue.Queue[str], needle: str, seen: list[str], timeout: float,
             poke: object = None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(poke):
            poke()
        try:
            line = lines.get(timeout=0.3)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not seen in {timeout} s:\n" + "\n".join(seen[-40:]))


@pytest.mark.slow
def test_dev_end_to_end(dev_store: DevStore, tmp_path: Path) -> None:
    project = tmp_path / "watched"
    scaffold("com.acme.watched", Lang.python, project, publisher="acme")
    seed_build_cache(project, "dev-watched")
    proc = subprocess.Popen(["extgate", "dev", str(project), "--tenant", "devt", "--server", dev_store.base_url],
                            cwd=tmp_path, env=dev_store.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen: list[str] = []
    try:
        lines = follow(proc)
        wait_for(lines, "acme.com.acme.watched@0.1.0-dev.1 installed for tenant devt", seen, 300)
        call = wait_for(lines, "call it: curl", seen, 30)
        token = call.split("Bearer ")[1].split('"')[0]
        url = f"{dev_store.base_url}/api/ext/acme.com.acme.watched/hello"

        def get() -> None:
            r = httpx.get(url, headers={"authorization": f"Bearer {token}"}, timeout=10)
            assert r.status_code == 200, r.text

        wait_for(lines, "watching", seen, 30)
        wait_for(lines, "hello called by tenant devt", seen, 30, poke=get)  # v1's log line, streamed

        app_py = project / "src" / "app.py"
        app_py.write_text(app_py.read_text().replace("hello called by tenant", "v2 hello called by tenant"))
        wait_for(lines, "acme.com.acme.watched@0.1.0-dev.2 installed", seen, 300)
        wait_for(lines, "v2 hello called by tenant devt", seen, 30, poke=get)  # the new version answers

        app_py.write_text(app_py.read_text() + "\ndef broken(:\n")  # a build error, shown inline
        wait_for(lines, "build failed", seen, 60)
        error = wait_for(lines, "SyntaxError", seen, 10)
        assert "src/app.py:" in error
        assert httpx.get(url, headers={"authorization": f"Bearer {token}"}).status_code == 200  # v2 still serves
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        save_build_cache(project, "dev-watched")
    versions = json.loads(subprocess.run(["extgate", "ext", "list"], env=dev_store.env, cwd=tmp_path,
                                         capture_output=True, text=True).stdout)
    assert set(next(e["versions"] for e in versions if e["slug"] == "acme.com.acme.watched")) == {
        "0.1.0-dev.1", "0.1.0-dev.2"}
