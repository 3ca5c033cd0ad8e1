"""Fixtures for the SDK examples: both built once (cached by source hash under
examples/<name>/build/) and compiled once per wasmtime version (cached next to the build),
then loaded by one in-process runner per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.compiler import compile_component
from runner.contract.envelope import Keyring
from runner.executor import Runner
from tests.runner.conftest import hash_of, make_runner

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def build_python_notes() -> Path:
    sys.path.insert(0, str(EXAMPLES / "python-notes"))
    try:
        from build import build  # examples/python-notes/build.py
    finally:
        sys.path.pop(0)
    return build()


def build_js_notes() -> Path:
    if not node_available():
        pytest.skip("node/npm not installed: the JavaScript example cannot be built")
    # `make js-notes` runs `npm ci` from the committed lock file only when it changed.
    out = subprocess.run(["make", "-s", "-C", str(EXAMPLES), "js-notes"], check=True, capture_output=True,
                         text=True, timeout=600)
    return Path(out.stdout.strip().splitlines()[-1])


BUILDERS = {"python": build_python_notes, "js": build_js_notes}


def compiled_into(wasm: Path, session_dir: Path, cache: Path | None = None) -> str:
    """Compile into the example's (gitignored) build dir once, then link into the session dir."""
    data = wasm.read_bytes()
    content_hash = hash_of(data)
    persistent = cache or wasm.parent.parent / "compiled"
    report = compile_component(data, persistent, content_hash=content_hash)
    src = Path(report.artifact)
    for s in (src, src.with_suffix(".json")):
        dst = session_dir / s.relative_to(persistent)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            try:
                os.link(s, dst)  # a 35 MB artifact: link, don't copy, when on one filesystem
            except OSError:
                shutil.copyfile(s, dst)
    return content_hash


@pytest.fixture(scope="session")
def sdk_compiled_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sdk-compiled")


@pytest.fixture(scope="session")
def sdk_keyring() -> Keyring:
    return Keyring.generate("sdk1")


@pytest.fixture(scope="session")
def example_hashes(sdk_compiled_dir: Path) -> dict[str, str]:
    """Built lazily per language so a missing node skips only the JS cases."""
    return {}


@pytest.fixture(params=sorted(BUILDERS))
def example(request: pytest.FixtureRequest, example_hashes: dict[str, str], sdk_compiled_dir: Path) -> tuple[str, str]:
    """(language, content hash) of the notes example in each guest language."""
    lang: str = request.param
    if lang not in example_hashes:
        example_hashes[lang] = compiled_into(BUILDERS[lang](), sdk_compiled_dir)
    return lang, example_hashes[lang]


@pytest.fixture(scope="session")
def sdk_runner(tmp_path_factory: pytest.TempPathFactory, sdk_compiled_dir: Path,
               sdk_keyring: Keyring) -> Iterator[Runner]:
    r = make_runner(tmp_path_factory.mktemp("sdk-runner"), sdk_compiled_dir, sdk_keyring)
    yield r
    r.close()


# A per-user store and a server on it, as a developer has them (issue 21) ------------------

SDK_BUILD = Path(__file__).resolve().parent / "build"  # gitignored: caches that survive runs


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed_build_cache(project: Path, key: str) -> None:
    """Put earlier builds of this (deterministic) project back into its build/, so the build
    scripts' own source-hash cache hits; `save_build_cache` keeps them after the test."""
    cached = SDK_BUILD / f"builds-{key}"
    if cached.is_dir():
        shutil.copytree(cached, project / "build", dirs_exist_ok=True)


def save_build_cache(project: Path, key: str) -> None:
    for d in (project / "build").glob("*"):
        if d.is_dir() and (d / "main.wasm").is_file():
            shutil.copytree(d, SDK_BUILD / f"builds-{key}" / d.name, dirs_exist_ok=True)


class DevStore:
    """No EXTGATE_DATA_DIR: the per-user default under a temp XDG_DATA_HOME, `extgate` and the
    venv's `python` first on PATH, and `extgate serve` running on a free port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXTGATE_")}
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            XDG_DATA_HOME=str(root / "xdg"),
            EXTGATE_PORT=str(self.port),
            # Publishing precompiles; the same bundle bytes compile once across runs.
            EXTGATE_RUNNER_COMPILED_DIR=str(SDK_BUILD / "compiled-dev-store"),
        )
        self.env = env
        self.data_dir = root / "xdg" / "extgate"
        self.server: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import httpx

        log = (self.root / "serve.log").open("wb")
        self.server = subprocess.Popen([sys.executable, "-m", "service.cli.main", "serve"], cwd=self.root,
                                       env=self.env, stdout=log, stderr=subprocess.STDOUT)
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("extgate serve did not start: " + (self.root / "serve.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.server.kill()


@pytest.fixture(scope="session")
def dev_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStore]:
    store = DevStore(tmp_path_factory.mktemp("dev-store"))
    store.start()
    yield store
    store.stop()
