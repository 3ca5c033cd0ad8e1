"""The console's routes without a browser: assets, security headers, what the JS may not do,
and the server-side verification route (authorization, redaction, one at a time)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service import audit_verification as console_verify
from service.api.console import CSP
from service.app import create_app
from service.console import STATIC_DIR
from tests.support import make_container, token

ASSETS = sorted(p.name for p in STATIC_DIR.iterdir() if p.suffix in (".js", ".css", ".svg"))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    container = make_container(tmp_path, f"sqlite:///{tmp_path / 'extgate.db'}")
    with TestClient(create_app(container=container)) as c:
        yield c, container
    container.close()


def test_page_is_served_with_strict_headers(client: tuple[TestClient, Any]) -> None:
    c, _ = client
    resp = c.get("/console")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert resp.headers["content-security-policy"] == CSP
    for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'",
                      "require-trusted-types-for 'script'", "object-src 'none'"):
        assert directive in CSP
    assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["referrer-policy"] == "no-referrer"
    html = resp.text
    # Only external same-origin scripts; no inline script, handler or style attribute; no CDN.
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert 'src="/console/assets/' in tag
    assert re.search(r"<script\b[^>]*>\s*[^<\s]", html) is None
    assert re.search(r"\son[a-z]+\s*=", html) is None
    assert " style=" not in html
    assert re.search(r"(src|href)=\"(https?:)?//", html) is None
    assert c.get("/console/", follow_redirects=False).headers["location"] == "/console"
    head = c.head("/console")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-security-policy"] == CSP


@pytest.mark.parametrize("name", ASSETS)
def test_every_asset_is_served(client: tuple[TestClient, Any], name: str) -> None:
    c, _ = client
    resp = c.get(f"/console/assets/{name}")
    assert resp.status_code == 200
    expected = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}[Path(name).suffix]
    assert resp.headers["content-type"].startswith(expected)
    assert resp.headers["content-security-policy"] == CSP
    again = c.get(f"/console/assets/{name}", headers={"if-none-match": resp.headers["etag"]})
    assert again.status_code == 304


def test_referenced_assets_exist() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    referenced = set(re.findall(r"/console/assets/([a-z0-9.-]+)", html))
    for js in STATIC_DIR.glob("*.js"):
        referenced |= set(re.findall(r"from '\./([a-z0-9-]+\.js)'", js.read_text()))
    assert referenced <= set(ASSETS)


@pytest.mark.parametrize("path", [
    "/console/assets/nope.js", "/console/assets/..%2F__init__.py", "/console/assets/%2e%2e%2fverify.py",
    "/console/assets/index.html", "/console/assets/App.js", "/console/assets/.hidden.js",
    "/console/assets/../api/console.py",
])
def test_nothing_else_is_served(client: tuple[TestClient, Any], path: str) -> None:
    c, _ = client
    resp = c.get(path)
    assert resp.status_code == 404
    assert "import" not in resp.text


@pytest.mark.parametrize("name", [n for n in ASSETS if n.endswith(".js")])
def test_scripts_never_parse_data_as_html_or_keep_tokens(name: str) -> None:
    # Code only: comments may name what the code avoids.
    code = re.sub(r"/\*.*?\*/", "", (STATIC_DIR / name).read_text(), flags=re.S)
    code = re.sub(r"(?m)^\s*//.*$|\s//\s.*$", "", code)
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                   "localStorage", "document.cookie", "setAttribute('style'", "http://", "https://"):
        assert banned not in code, f"{name} uses {banned}"
    if name != "auth.js":
        assert "sessionStorage" not in code, "only auth.js touches the token store"


def test_console_routes_are_not_in_the_openapi_document(client: tuple[TestClient, Any]) -> None:
    c, _ = client
    paths = c.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]


def test_verify_route_is_authorized_and_redacted_for_tenants(client: tuple[TestClient, Any]) -> None:
    c, container = client
    from audit.records import AuditEvent

    container.audit.append(AuditEvent(action="test.event", outcome="success", tenant_id="acme"))
    container.audit.checkpoint()
    assert c.post("/api/audit/verify").status_code == 401
    viewer = {"authorization": f"Bearer {token(container, 'acme', 'viewer')}"}
    refused = c.post("/api/audit/verify", headers=viewer)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert refused.json()["detail"]["action"] == "audit.read"

    admin = {"authorization": f"Bearer {token(container, 'acme', 'admin')}"}
    tenant_view = c.post("/api/audit/verify", headers=admin)
    assert tenant_view.status_code == 200, tenant_view.text
    body = tenant_view.json()
    assert body["status"] == "ok" and body["records"] >= 1 and body["redacted"] is True
    assert tenant_view.headers["cache-control"] == "no-store"

    platform = {"authorization": f"Bearer {token(container, 'platform', 'platform-admin')}"}
    full = c.post("/api/audit/verify", headers=platform).json()
    assert full["status"] == "ok" and "redacted" not in full


def test_redaction_keeps_positions_not_wording() -> None:
    report = {"status": "tampered", "findings": [
        {"kind": "bad_signature", "seq": 7, "detail": "/srv/extgate/checkpoints/checkpoint-7.txt: not signed"},
        {"kind": "edited", "seq": 3, "seq_end": 9, "detail": "root mismatch"},
    ], "warnings": ["1 record(s) after the last signed checkpoint are protected only by the database"]}
    out = console_verify.redact_for_tenant(report)
    assert out["findings"] == [{"kind": "bad_signature", "seq": 7}, {"kind": "edited", "seq": 3, "seq_end": 9}]
    assert out["warnings"] == report["warnings"] and out["redacted"] is True
    assert "/srv" not in str(out)


def test_one_verification_at_a_time(client: tuple[TestClient, Any]) -> None:
    c, container = client
    admin = {"authorization": f"Bearer {token(container, 'acme', 'admin')}"}
    assert console_verify._RUNNING.acquire(blocking=False)
    try:
        busy = c.post("/api/audit/verify", headers=admin)
    finally:
        console_verify._RUNNING.release()
    assert busy.status_code == 429 and busy.json()["error"] == "verification_in_progress"
    assert busy.headers["retry-after"] == "2"
    assert c.post("/api/audit/verify", headers=admin).status_code == 200


def test_static_files_ship_as_package_data() -> None:
    import tomllib

    from tests.console.conftest import ROOT

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    suffixes = {p.removeprefix("*") for p in patterns}
    assert {p.suffix for p in STATIC_DIR.iterdir() if p.is_file()} <= suffixes


def test_docs_show_a_screenshot_of_every_view() -> None:
    from tests.console.conftest import ROOT

    text = (ROOT / "docs" / "console.md").read_text()
    images = set(re.findall(r"\]\((img/[a-z-]+\.png)\)", text))
    assert images >= {"img/console-debug.png", "img/console-debug-events.png", "img/console-decisions.png",
                      "img/console-audit.png", "img/console-refusal.png"}
    for image in images:
        assert (ROOT / "docs" / image).stat().st_size > 10_000, image
