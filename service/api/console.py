"""The web console: `/console` (one page) and `/console/assets/<file>` (ES modules, CSS, icon).

Everything is package data of `service.console` (no CDN, no build step), served with a
strict Content-Security-Policy: scripts, styles and fetches from this origin only, no
inline script or style, Trusted Types required (so `innerHTML` with a string throws), no
framing. The console authenticates every API call with the bearer token the user pasted;
the token lives in the tab's sessionStorage only and never appears in a URL.

The console calls only the public API (`/api/...`); none of these routes is part of the
OpenAPI document.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from service.api.errors import error_response
from service.console import STATIC_DIR

router = APIRouter(include_in_schema=False)

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
_MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
# Flat names only: nothing with a slash, a dot-dot or an unexpected suffix reaches the disk.
_ASSET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\.(js|css|svg)$")


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


@functools.lru_cache(maxsize=64)
def load_asset(name: str) -> Asset | None:
    """A file of the console's static directory, read once per process."""
    path = STATIC_DIR / name
    if not path.is_file():
        return None
    body = path.read_bytes()
    suffix = name.rsplit(".", 1)[-1]
    return Asset(body, _MEDIA_TYPES[suffix], '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def _serve(request: Request, asset: Asset) -> Response:
    headers = {**SECURITY_HEADERS, "etag": asset.etag, "cache-control": "no-cache"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def _not_found() -> JSONResponse:
    response = error_response(404, "not_found")
    response.headers.update(SECURITY_HEADERS)
    return response


@router.api_route("/console", methods=["GET", "HEAD"])
def console_page(request: Request) -> Response:
    asset = load_asset("index.html")
    return _serve(request, asset) if asset is not None else _not_found()


@router.get("/console/")
def console_slash() -> Response:
    return RedirectResponse("/console", status_code=308)


@router.api_route("/console/assets/{name}", methods=["GET", "HEAD"])
def console_asset(name: str, request: Request) -> Response:
    asset = load_asset(name) if _ASSET_RE.match(name) else None
    return _serve(request, asset) if asset is not None else _not_found()
