"""Console fixtures: one real server per test module (uvicorn in a thread, the
demo guest published and installed, the in-process debug stream), Debian's chromium driven
headless by Playwright, and a page per test that fails on CSP violations and script errors.

Chromium: `/usr/bin/chromium` (override with EXTGATE_CHROMIUM). Missing, the browser tests
skip — or fail under EXTGATE_REQUIRE_SERVICES=1 (CI). `make test` installs it.

Screenshots: every view is captured; with EXTGATE_CONSOLE_SCREENSHOTS=1 they are also
written to docs/img/ (that is how the documentation's images are made).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REQUIRE_SERVICES

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("EXTGATE_CHROMIUM", "/usr/bin/chromium")
DOCS_IMG = ROOT / "docs" / "img"
TENANT = "acme"
OTHER = "globex"

# Test-sized debug settings, set while the module's server lives (read from the environment).
DEBUG_ENV = {
    "EXTGATE_DEBUG_KEY_PREFIX": "dbgconsole",
    "EXTGATE_DEBUG_MAX_SESSION_S": "600",
    "EXTGATE_DEBUG_REVALIDATE_S": "1",
    "EXTGATE_DEBUG_HEARTBEAT_S": "1",
    "EXTGATE_DEBUG_READ_BLOCK_MS": "500",
    "EXTGATE_DEBUG_BACKLOG_LINES": "0",
}


def _unavailable(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what}, but EXTGATE_REQUIRE_SERVICES=1 (run `make test`, which installs it)")
    pytest.skip(what)


@dataclass
class ConsoleEnv:
    container: Any
    url: str
    slug: str
    extension_id: str
    install_id: str
    other_install_id: str
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[who]}"}

    def call(self, method: str, path: str, who: str = "viewer", **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}/api/ext/{self.slug}/{path.lstrip('/')}",
                             headers=self.auth(who), timeout=30, **kwargs)

    def flush_audit(self) -> None:
        """Every record submitted so far is durable once this append returns (one FIFO writer)."""
        from audit.records import AuditEvent

        self.container.audit.append(AuditEvent(action="test.flush", outcome="success"))

    def checkpoint(self) -> int:
        self.flush_audit()
        return int(self.container.audit.checkpoint().size)


@pytest.fixture(scope="module")
def console_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleEnv]:
    from service.app import create_app
    from tests.debug.conftest import ServerThread
    from tests.gateway.conftest import guest_manifest, install_for, publish_guest
    from tests.support import make_container, token

    tmp = tmp_path_factory.mktemp("console")
    # The debug settings come from the environment, read when the container is built and when
    # the embedded runner starts (first call): set them for this module only, so nothing leaks
    # into other suites of the same pytest run.
    with pytest.MonkeyPatch.context() as mp:
        for k, v in DEBUG_ENV.items():
            mp.setenv(k, v)
        mp.delenv("EXTGATE_DEBUG_REDIS_URL", raising=False)
        mp.delenv("EXTGATE_REDIS_URL", raising=False)
        container = make_container(tmp, f"sqlite:///{tmp / 'extgate.db'}")
        server: Any = None
        try:
            slug, ext_id, _ = publish_guest(container, tmp, "demo", tmp / "compiled-cache")
            caps = guest_manifest("demo")["capabilities"]
            install_id = install_for(container, TENANT, slug, caps)
            other = install_for(container, OTHER, slug, caps)
            server = ServerThread(create_app(container=container))
            server.start()
            tokens = {
                "operator": token(container, TENANT, "operator", sub="olivia-operator"),
                "viewer": token(container, TENANT, "viewer", sub="victor-viewer"),
                "editor": token(container, TENANT, "editor", sub="edith-editor"),
                "admin": token(container, TENANT, "admin", sub="ada-admin"),
                "platform": token(container, "platform", "platform-admin", sub="root-1"),
            }
            yield ConsoleEnv(container, server.url, slug, ext_id, install_id, other, tokens)
        finally:
            if server is not None:
                server.stop()
            container.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield b
        finally:
            b.close()


class PageProblems:
    """Script errors and CSP / Trusted Types violations seen by a page."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def console(self, msg: Any) -> None:
        text = msg.text
        # 4xx/5xx answers are expected in refusal tests; Chromium logs each as a console error.
        if msg.type == "error" and not text.startswith("Failed to load resource"):
            self.errors.append(text)

    def page_error(self, exc: Any) -> None:
        self.errors.append(f"uncaught: {exc}")


@pytest.fixture
def page(browser: Any, console_env: ConsoleEnv) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=console_env.url)
    context.set_default_timeout(15_000)
    pg = context.new_page()
    problems = PageProblems()
    urls: list[str] = []
    pg.on("console", problems.console)
    pg.on("pageerror", problems.page_error)
    pg.on("request", lambda request: urls.append(request.url))
    try:
        yield pg
    finally:
        context.close()
    assert problems.errors == [], f"the page reported errors: {problems.errors}"
    secrets = list(console_env.tokens.values())
    assert not [u for u in urls if any(t in u for t in secrets)], "a token appeared in a URL"


def sign_in(page: Any, token: str, view: str | None = None) -> None:
    from playwright.sync_api import expect

    page.goto("/console")
    page.fill("#token-input", token)
    page.click("#sign-in")
    expect(page.locator("#identity")).to_be_visible()
    if view:
        page.click(f"#tab-{view}")
        expect(page.locator(f"#view-{view}")).to_be_visible()


def screenshot(page: Any, name: str, tmp_path: Path) -> Path:
    """Capture the page; also into docs/img/ when EXTGATE_CONSOLE_SCREENSHOTS=1."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    if os.environ.get("EXTGATE_CONSOLE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / f"{name}.png")
    return path
